// Package app wires the host together with fx: config -> logger -> store, bus,
// directory, auth -> hub -> plugins -> websocket server -> HTTP server.
//
// Start order is that order; stop runs in reverse, so on SIGTERM the listener
// stops first; the plugins refuse new events ("unavailable: retry shortly")
// and the events they already took are answered, their emits included (at
// most eventDrainTimeout); then sockets are told to reconnect elsewhere (their
// disconnects still reach the live plugins), then the plugins drain and stop,
// then the bus and the store close.
package app

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/bus"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/host/directory"
	"github.com/clowdr/realtime/host/httpapi"
	"github.com/clowdr/realtime/host/hub"
	"github.com/clowdr/realtime/host/pluginhost"
	"github.com/clowdr/realtime/host/socketio"
	"github.com/clowdr/realtime/host/store"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Instance identifies this process among the instances sharing a Redis.
type Instance struct {
	// ID is 8 random alphanumerics; every socket id starts with it.
	ID string
	// Name is a human name (config instance / DYNO / hostname).
	Name string
}

// NewInstanceID makes a fresh random instance id.
func NewInstanceID() string { return randomAlnum(8) }

func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Options builds the fx options of a host for cfg. Listener, when non-nil, is
// used instead of listening on cfg.Port (tests).
func Options(cfg *config.Config, logger *slog.Logger, listener net.Listener) fx.Option {
	inst := Instance{ID: NewInstanceID(), Name: cfg.Instance}
	if inst.Name == "" {
		h, _ := os.Hostname()
		inst.Name = h + "-" + strconv.Itoa(os.Getpid())
	}
	return fx.Options(
		fx.Supply(cfg, inst),
		fx.Supply(logger),
		fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
			sl := &fxevent.SlogLogger{Logger: l}
			sl.UseLogLevel(slog.LevelDebug)
			return sl
		}),
		fx.StartTimeout(30*time.Second),
		fx.StopTimeout(cfg.Shutdown.Timeout+5*time.Second),
		fx.Provide(
			newRegistry,
			newStore,
			newBus,
			newDirectory,
			newVerifier,
			newHub,
			newPlugins,
			newSocketServer,
		),
		supplyListener(listener),
		fx.Invoke(startHeartbeat, startHTTP),
	)
}

func supplyListener(l net.Listener) fx.Option {
	if l == nil {
		return fx.Options()
	}
	return fx.Supply(fx.Annotate(l, fx.As(new(net.Listener))))
}

func newRegistry() (*prometheus.Registry, prometheus.Registerer) {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r, r
}

func newStore(lc fx.Lifecycle, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*store.Store, error) {
	s, err := store.New(context.Background(), cfg.Redis, log.With("component", "store"))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.RegisterMetrics(reg); err != nil {
		return nil, fmt.Errorf("store metrics: %w", err)
	}
	lc.Append(fx.StopHook(func() error { return s.Close() }))
	return s, nil
}

func newBus(lc fx.Lifecycle, cfg *config.Config, inst Instance, log *slog.Logger, reg prometheus.Registerer) (bus.Bus, error) {
	b, err := bus.New(context.Background(), cfg.Bus, inst.ID, log.With("component", "bus"))
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	if m, ok := b.(bus.MetricsRegisterer); ok {
		if err := m.RegisterMetrics(reg); err != nil {
			return nil, fmt.Errorf("bus metrics: %w", err)
		}
	}
	lc.Append(fx.StopHook(func() error { return b.Close() }))
	return b, nil
}

func newDirectory(cfg *config.Config, s *store.Store, log *slog.Logger, reg prometheus.Registerer) (sdk.Directory, error) {
	d, err := directory.New(cfg.Directory, s, log.With("component", "directory"))
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if m, ok := d.(directory.MetricsRegisterer); ok {
		if err := m.RegisterMetrics(reg); err != nil {
			return nil, fmt.Errorf("directory metrics: %w", err)
		}
	}
	return d, nil
}

func newVerifier(lc fx.Lifecycle, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*auth.Verifier, error) {
	v, err := auth.New(cfg.Auth, log, reg)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	lc.Append(fx.StopHook(func() error { return v.Close() }))
	return v, nil
}

func newHub(lc fx.Lifecycle, inst Instance, s *store.Store, log *slog.Logger, reg prometheus.Registerer) (*hub.Hub, error) {
	h := hub.New(inst.ID, socketio.EncodeEventRaw, nil, log.With("component", "hub"))
	if err := h.RegisterMetrics(reg); err != nil {
		return nil, fmt.Errorf("hub metrics: %w", err)
	}
	if !s.Embedded() {
		// Several instances can share this Redis: deliver across them.
		r, err := hub.NewRedisRemote(context.Background(), s.Client(), h, log.With("component", "hub"))
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		h.SetRemote(r)
		lc.Append(fx.StopHook(func() error { return r.Close() }))
	}
	return h, nil
}

func newPlugins(lc fx.Lifecycle, cfg *config.Config, inst Instance, h *hub.Hub, s *store.Store, b bus.Bus, d sdk.Directory, log *slog.Logger, reg prometheus.Registerer) (*pluginhost.Manager, error) {
	svc := &services{hub: h, store: s, bus: b, dir: d, log: log, instance: inst.ID}
	m, err := pluginhost.New(cfg.Plugins, pluginConfigJSON(cfg), svc, log.With("component", "plugins"), reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error { return m.Start(ctx) },
		OnStop:  func(ctx context.Context) error { return m.Stop(ctx) },
	})
	return m, nil
}

func newSocketServer(cfg *config.Config, v *auth.Verifier, d sdk.Directory, h *hub.Hub, p *pluginhost.Manager, log *slog.Logger, reg prometheus.Registerer) *socketio.Server {
	g := newGateway(v, d, h, p, log.With("component", "gateway"), cfg.SocketIO.EventsPerSecond, cfg.SocketIO.EventBurst, reg)
	inst := h.InstanceID()
	return socketio.NewServer(g, socketio.Options{
		PingInterval:   cfg.SocketIO.PingInterval,
		PingTimeout:    cfg.SocketIO.PingTimeout,
		ConnectTimeout: cfg.SocketIO.ConnectTimeout,
		MaxPayload:     cfg.SocketIO.MaxPayload,
		AllowedOrigins: splitList(cfg.SocketIO.CORSOrigin),
		OutboundQueue:  cfg.SocketIO.OutboundQueue,
		BatchDelay:     batchDelay(cfg.SocketIO.BatchDelay),
		NewID:          func() string { return inst + randomAlnum(12) },
		Logger:         log.With("component", "socketio"),
		Registerer:     reg,
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pluginSummary is what the heartbeat publishes about each plugin (the admin
// page shows it).
type pluginSummary struct {
	Name      string `json:"name"`
	Mode      string `json:"mode"`
	State     string `json:"state"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
}

func pluginsJSON(p *pluginhost.Manager) string {
	var out []pluginSummary
	for _, st := range p.Status() {
		out = append(out, pluginSummary{Name: st.Name, Mode: st.Mode, State: st.State, Restarts: st.Restarts, LastError: st.LastError})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "[]"
	}
	return string(b)
}

func startHeartbeat(lc fx.Lifecycle, cfg *config.Config, inst Instance, s *store.Store, h *hub.Hub, p *pluginhost.Manager, log *slog.Logger) {
	started := strconv.FormatInt(time.Now().Unix(), 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				s.RunHeartbeat(ctx, inst.ID, func() map[string]string {
					return map[string]string{
						"name":    inst.Name,
						"sockets": strconv.Itoa(h.Count()),
						"started": started,
						"plugins": pluginsJSON(p),
					}
				}, cfg.Redis.HeartbeatInterval, cfg.Redis.InstanceTTL)
			}()
			return nil
		},
		OnStop: func(context.Context) error { cancel(); <-done; return nil },
	})
}

type httpParams struct {
	fx.In
	Lifecycle fx.Lifecycle
	Config    *config.Config
	Log       *slog.Logger
	Registry  *prometheus.Registry
	Server    *socketio.Server
	Plugins   *pluginhost.Manager
	Store     *store.Store
	Bus       bus.Bus
	Directory sdk.Directory
	Verifier  *auth.Verifier
	Listener  net.Listener `optional:"true"`
	Shutdown  fx.Shutdowner
}

func startHTTP(p httpParams) error {
	cfg := p.Config
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(p.Log.Handler(), slog.LevelWarn),
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			// The plugins have started (their hook runs first), so their routes are known.
			srv.Handler = buildHandler(p)
			ln := p.Listener
			if ln == nil {
				var err error
				ln, err = net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
				if err != nil {
					return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
				}
			}
			p.Log.Info("realtime listening", "addr", ln.Addr().String(), "plugins", cfg.EnabledPlugins(),
				"store", storeKind(p.Store), "bus", p.Bus.Kind(), "auth", p.Verifier.Mode())
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					p.Log.Error("http server failed", "err", err)
					_ = p.Shutdown.Shutdown(fx.ExitCode(1))
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.Shutdown.Timeout)
			defer cancel()
			p.Log.Info("draining: closing the listener and answering in-flight events", "sockets", p.Server.Count())
			// Shutdown closes the listener at once (no new connections) and waits
			// for plain HTTP requests; the websockets are hijacked, so the
			// socketio server drains them below.
			httpDone := make(chan error, 1)
			go func() { httpDone <- srv.Shutdown(ctx) }()
			// A socket closed while its event is in a plugin never learns the
			// outcome (a chat send may be delivered unacked): answer those
			// first. New events are refused meanwhile (the client resends them
			// after its reconnect); a hung handler only costs the bound.
			dctx, dcancel := context.WithTimeout(ctx, eventDrainTimeout(cfg.Shutdown.Timeout))
			if err := p.Plugins.DrainEvents(dctx); err != nil {
				p.Log.Warn("draining: closing sockets with events still in flight", "err", err)
			}
			dcancel()
			// Clients are told to reconnect, and reach another instance.
			p.Log.Info("draining: asking clients to reconnect", "sockets", p.Server.Count())
			if err := p.Server.Shutdown(ctx); err != nil {
				p.Log.Warn("drain incomplete", "err", err, "sockets", p.Server.Count())
			}
			return <-httpDone
		},
	})
	return nil
}

// eventDrainTimeout bounds the wait for in-flight events at shutdown: half
// the budget, at most 5 s, so closing the sockets and stopping the plugins
// keep the rest.
func eventDrainTimeout(budget time.Duration) time.Duration {
	return min(5*time.Second, budget/2)
}

func buildHandler(p httpParams) http.Handler {
	cfg := p.Config
	var routes []httpapi.Route
	for _, r := range p.Plugins.Routes() {
		name := r.Plugin
		routes = append(routes, httpapi.Route{
			Method: r.Method, Path: r.Path, Owner: name,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { p.Plugins.ServeHTTP(name, w, req) }),
		})
	}
	if r, ok := testJWTRoute(p.Verifier); ok {
		routes = append(routes, r)
	}
	// Hasura event triggers (and operators) drop stale directory entries.
	routes = append(routes, httpapi.Route{
		Method: http.MethodPost, Path: directory.InvalidatePath, Owner: "host",
		Handler: directory.InvalidateHandler(p.Directory, cfg.Secrets.Event, p.Log.With("component", "directory")),
	})
	checks := []httpapi.Check{
		{Name: "store", Required: true, Check: p.Store.Ready},
		{Name: "bus", Required: true, Check: func(context.Context) error { return p.Bus.Ready() }},
		{Name: "plugins", Required: true, Check: func(context.Context) error { return p.Plugins.Ready() }},
		{Name: "auth", Required: true, Check: func(context.Context) error { return p.Verifier.Ready() }},
	}
	// Listed whichever the backend (static is always ok). Reported only:
	// cached answers keep serving while Hasura is down.
	dirCheck := func(context.Context) error { return nil }
	if d, ok := p.Directory.(interface{ Ready(context.Context) error }); ok {
		dirCheck = d.Ready
	}
	checks = append(checks, httpapi.Check{Name: "directory", Check: dirCheck})
	return httpapi.New(httpapi.Options{
		SocketIO:       p.Server,
		Routes:         routes,
		Checks:         checks,
		Gatherer:       p.Registry,
		AllowedOrigins: splitList(cfg.SocketIO.CORSOrigin),
	})
}

func storeKind(s *store.Store) string {
	if s.Embedded() {
		return "embedded"
	}
	return "redis"
}

// services is what the plugin host gets from the host.
type services struct {
	hub      *hub.Hub
	store    *store.Store
	bus      bus.Bus
	dir      sdk.Directory
	log      *slog.Logger
	instance string
}

var _ pluginhost.Services = (*services)(nil)

func (s *services) Emit(ctx context.Context, _ string, to sdk.Target, event string, args []json.RawMessage) error {
	return s.hub.Emit(ctx, to, event, args)
}
func (s *services) Join(ctx context.Context, socketID, room string) error {
	return s.hub.Join(ctx, socketID, room)
}
func (s *services) Leave(ctx context.Context, socketID, room string) error {
	return s.hub.Leave(ctx, socketID, room)
}
func (s *services) Disconnect(ctx context.Context, socketID string) error {
	return s.hub.Disconnect(ctx, socketID)
}
func (s *services) Store() sdk.Store { return s.store }
func (s *services) Publish(ctx context.Context, exchange, key string, body []byte) error {
	return s.bus.Publish(ctx, exchange, key, body)
}
func (s *services) DeclareExchange(ctx context.Context, ex sdk.Exchange) error {
	return s.bus.DeclareExchange(ctx, ex)
}
func (s *services) Consume(ctx context.Context, q sdk.Queue, h func(context.Context, sdk.Delivery) error) (func(), error) {
	return s.bus.Consume(ctx, q, h)
}

func (s *services) ConsumeAsync(ctx context.Context, q sdk.Queue, h func(context.Context, sdk.Delivery, func(error))) (func(), error) {
	return s.bus.ConsumeAsync(ctx, q, h)
}
func (s *services) Directory() sdk.Directory  { return s.dir }
func (s *services) Logger() *slog.Logger      { return s.log }
func (s *services) InstanceID() string        { return s.instance }
func (s *services) LiveSockets() []sdk.Socket { return s.hub.Sockets() }

// batchDelay maps socketio.batch_delay (0 = off) to socketio.Options (where 0
// means the default and a negative value means off).
func batchDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
