package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/fileowner"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Route is an HTTP route a plugin serves.
type Route struct {
	Plugin string
	sdk.Route
}

// Status is one plugin's state, for health checks and `realtime plugins`.
type Status struct {
	Name      string
	Mode      string
	State     string // starting, running, restarting, stopped, failed
	Restarts  int
	PID       int // 0 in-process or when not running
	LastError string
	Events    []string
	Routes    []sdk.Route
}

// Manager starts, supervises and stops the enabled plugins, and routes
// sockets, events, HTTP requests and bus deliveries to them.
type Manager struct {
	svc     Services
	logger  *slog.Logger
	metrics *metrics
	all     map[string]config.PluginConfig // every configured plugin, enabled or not

	instances []*instance // enabled, sorted by name
	byName    map[string]*instance

	mu        sync.Mutex
	started   bool
	stopped   bool
	events    map[string]*instance // read-only once started
	routes    []Route
	consumers []func()
	stop      chan struct{}
	wg        sync.WaitGroup // supervisors
	socketDir string         // 0700, holds every plugin process's sockets; "" until Start, after Stop

	// Events handed to a plugin whose done has not returned yet, and whether
	// new events are refused (DrainEvents). Both are read on every event.
	eventsInFlight atomic.Int64
	draining       atomic.Bool
}

// errDraining is what done gets for an event refused by DrainEvents: the
// same as while the plugin is down, so the client is told to retry (after
// its reconnect, on another instance).
var errDraining = fmt.Errorf("the host is shutting down: %w", sdk.ErrPluginUnavailable)

// New checks the plugin configuration and prepares a Manager; nothing is
// started. Every enabled plugin must be a registered built-in or have a path;
// configJSON returns a plugin's config subtree as JSON.
func New(plugins map[string]config.PluginConfig, configJSON func(name string) (json.RawMessage, error),
	svc Services, logger *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if svc == nil {
		return nil, errors.New("pluginhost: nil Services")
	}
	if logger == nil {
		logger = slog.Default()
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("pluginhost: metrics: %w", err)
	}
	m := &Manager{
		svc: svc, logger: logger, metrics: met, all: plugins,
		byName: map[string]*instance{}, events: map[string]*instance{}, stop: make(chan struct{}),
	}
	names := make([]string, 0, len(plugins))
	for name, pc := range plugins {
		if pc.Enabled {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		in, err := m.newInstance(name, plugins[name])
		if err != nil {
			return nil, err
		}
		if configJSON != nil {
			raw, err := configJSON(name)
			if err != nil {
				return nil, fmt.Errorf("plugin %q: config: %w", name, err)
			}
			if len(raw) > 0 {
				in.config = raw
			}
		}
		m.instances = append(m.instances, in)
		m.byName[name] = in
	}
	return m, nil
}

func (m *Manager) newInstance(name string, pc config.PluginConfig) (*instance, error) {
	mode := pc.Mode
	if mode == "" {
		mode = ModeSubprocess
	}
	if mode != ModeSubprocess && mode != ModeInProcess {
		return nil, fmt.Errorf("plugin %q: mode %q: want %q or %q", name, pc.Mode, ModeSubprocess, ModeInProcess)
	}
	if pc.TLS && mode == ModeInProcess {
		// config.Validate refuses this too; a hand-built map must not get
		// a silently ignored TLS.
		return nil, fmt.Errorf("plugin %q: tls is only for mode %q, not %q", name, ModeSubprocess, ModeInProcess)
	}
	in := &instance{name: name, mode: mode, tls: pc.TLS, m: m, state: StateStopped, config: json.RawMessage("{}")}
	in.logger = m.logger.With("plugin", name)
	// The plugin's own logs (Host.Logger in-process; hclog lines on a
	// subprocess's stderr) go to the host app's logger.
	pl := m.svc.Logger()
	if pl == nil {
		pl = m.logger
	}
	in.host = &pluginServices{name: name, svc: m.svc, logger: pl.With("plugin", name)}
	in.met = m.metrics.forPlugin(name)
	in.met.up.Set(0)
	if pc.Path != "" {
		if mode == ModeInProcess {
			return nil, fmt.Errorf("plugin %q: a plugin with a path runs as a subprocess, not %q", name, ModeInProcess)
		}
		in.path = pc.Path
		return in, nil
	}
	factory, ok := sdk.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("plugin %q: not a built-in plugin (built-ins: %s) and no path configured",
			name, strings.Join(sdk.Registered(), ", "))
	}
	in.factory, in.builtin = factory, name
	return in, nil
}

// Start starts every enabled plugin: launch (process or in-process) and
// Describe all, check that no event or route is claimed twice, declare the
// exchanges, Start each plugin, start consumers for the declared queues and
// the supervisors. On error everything started is stopped again.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("pluginhost: already started")
	}
	m.started = true
	if !m.stopped && slices.ContainsFunc(m.instances, func(in *instance) bool { return in.mode == ModeSubprocess }) {
		// Private to this user (0700, whatever the umask), so the plugins'
		// sockets need no TLS: see the package doc.
		removeStaleSocketDirs(os.TempDir(), m.logger)
		dir, err := os.MkdirTemp("", socketDirPrefix+strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			m.mu.Unlock()
			return fmt.Errorf("pluginhost: socket directory: %w", err)
		}
		m.socketDir = dir
	}
	m.mu.Unlock()

	launchedAll := make([]*launched, len(m.instances))
	errs := make([]error, len(m.instances))
	var wg sync.WaitGroup
	for i, in := range m.instances {
		in.mu.Lock()
		in.state = StateStarting
		in.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := in.launch(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("plugin %q: %w", in.name, err)
				return
			}
			launchedAll[i] = l
		}()
	}
	wg.Wait()
	fail := func(err error) error {
		for i, l := range launchedAll {
			if l != nil && m.instances[i].client == nil {
				l.kill()
			}
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
		defer cancel()
		_ = m.Stop(sctx)
		for _, in := range m.instances {
			in.mu.Lock()
			in.state = StateFailed
			if in.lastErr == "" {
				in.lastErr = err.Error()
			}
			in.mu.Unlock()
		}
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}

	// Claims: events and routes.
	owner := map[string]string{}
	var routes []Route
	for i, in := range m.instances {
		d := launchedAll[i].desc
		for _, ev := range d.Events {
			if prev, dup := owner[ev]; dup {
				return fail(fmt.Errorf("event %q is claimed by plugins %q and %q", ev, prev, in.name))
			}
			owner[ev] = in.name
			m.events[ev] = in
		}
		for _, r := range d.Routes {
			for _, prev := range routes {
				if prev.Path == r.Path && (prev.Method == r.Method || prev.Method == "" || r.Method == "") {
					return fail(fmt.Errorf("route %s %s of plugin %q conflicts with route %s %s of plugin %q",
						methodOrAny(r.Method), r.Path, in.name, methodOrAny(prev.Method), prev.Path, prev.Plugin))
				}
			}
			routes = append(routes, Route{Plugin: in.name, Route: r})
		}
	}
	m.routes = routes

	declared := map[string]bool{}
	for i, in := range m.instances {
		for _, ex := range launchedAll[i].desc.Exchanges {
			declared[ex.Name] = true
			if err := m.svc.DeclareExchange(ctx, ex); err != nil {
				return fail(fmt.Errorf("plugin %q: declare exchange %q: %w", in.name, ex.Name, err))
			}
		}
	}
	for i, in := range m.instances {
		if err := in.start(ctx, launchedAll[i], true); err != nil {
			in.setErr(err.Error())
			return fail(fmt.Errorf("plugin %q: %w", in.name, err))
		}
		in.logger.Info("plugin started", "mode", in.mode, "version", launchedAll[i].desc.Version, "pid", pidOf(launchedAll[i].proc))
	}
	for i, in := range m.instances {
		for _, ex := range launchedAll[i].desc.Exchanges { // new ones described after Start
			if declared[ex.Name] {
				continue
			}
			declared[ex.Name] = true
			if err := m.svc.DeclareExchange(ctx, ex); err != nil {
				return fail(fmt.Errorf("plugin %q: declare exchange %q: %w", in.name, ex.Name, err))
			}
		}
		for _, q := range launchedAll[i].desc.Queues {
			q.Name = strings.ReplaceAll(q.Name, "{instance}", m.svc.InstanceID())
			queue := q.Name
			var stop func()
			var err error
			if q.BatchMax > 0 {
				// The plugin batches: keep up to the prefetch in flight.
				stop, err = m.svc.ConsumeAsync(ctx, q, func(ctx context.Context, d sdk.Delivery, settle func(error)) {
					if d.Queue == "" {
						d.Queue = queue
					}
					in.deliverAsync(ctx, d, settle)
				})
			} else {
				stop, err = m.svc.Consume(ctx, q, func(ctx context.Context, d sdk.Delivery) error {
					if d.Queue == "" {
						d.Queue = queue
					}
					return in.deliver(ctx, d)
				})
			}
			if err != nil {
				return fail(fmt.Errorf("plugin %q: consume queue %q: %w", in.name, q.Name, err))
			}
			m.mu.Lock()
			m.consumers = append(m.consumers, stop)
			m.mu.Unlock()
		}
	}
	for _, in := range m.instances {
		if in.mode == ModeSubprocess {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				in.supervise(m.stop)
			}()
		}
	}
	return nil
}

func methodOrAny(m string) string {
	if m == "" {
		return "*"
	}
	return m
}

func pidOf(p *sdk.Process) int {
	if p == nil {
		return 0
	}
	return p.PID
}

// Stop drains and stops every plugin, in parallel: consumers stop first, new
// events are refused, in-flight calls finish (bounded by ctx), each plugin's
// Stop runs, then its process is killed (each kill bounded by 5 s, even when
// ctx is already done). Safe to call more than once.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	consumers := m.consumers
	m.consumers = nil
	close(m.stop)
	m.mu.Unlock()

	for _, stop := range consumers {
		stop()
	}
	errs := make([]error, len(m.instances))
	var wg sync.WaitGroup
	for i, in := range m.instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = in.stop(ctx)
		}()
	}
	wg.Wait()
	m.wg.Wait()
	// Every process is gone; this also takes the sockets of processes that
	// died without a Kill.
	m.mu.Lock()
	dir := m.socketDir
	m.socketDir = ""
	m.mu.Unlock()
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("pluginhost: remove socket directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// sockDir is the directory plugin processes put their sockets in ("" when
// not started: Launch then uses a private directory of its own in $TMPDIR).
func (m *Manager) sockDir() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.socketDir
}

// Connect tells every plugin that wants it (not sdk.Descriptor.SkipConnect)
// about a new socket (OnConnect), asynchronously but ordered before the
// socket's later events.
func (m *Manager) Connect(s sdk.Socket) {
	for _, in := range m.instances {
		in.connect(s)
	}
}

// Event hands an event to the plugin that declared it and returns true, or
// returns false when no plugin did. It does not wait: done (may be nil) gets
// the ack values or the error, from another goroutine.
func (m *Manager) Event(s sdk.Socket, name string, args []json.RawMessage, done func(ack []json.RawMessage, err error)) bool {
	in := m.events[name]
	if in == nil {
		return false
	}
	// Counted before instance.event checks draining, and DrainEvents sets
	// draining before it reads the count: either DrainEvents waits for this
	// event or the event is refused. instance.event undoes the count after
	// done returned.
	m.eventsInFlight.Add(1)
	in.event(sdk.Event{Socket: s, Name: name, Args: args}, done)
	return true
}

// DrainEvents prepares the sockets' close at shutdown. It refuses new events
// (done gets an error wrapping sdk.ErrPluginUnavailable, as while a plugin is
// down) and waits until every event already handed to a plugin is answered:
// its done has returned, which happens after the plugin's handler returned
// and the emits it made while handling it (e.g. chat's
// chat.messages.send.ack) went through Services.Emit. When ctx ends first it
// returns ctx's error and the number still in flight (Stop still waits for
// them). Bus deliveries and HTTP requests are not affected.
func (m *Manager) DrainEvents(ctx context.Context) error {
	m.draining.Store(true)
	if m.eventsInFlight.Load() == 0 {
		return nil
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for m.eventsInFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pluginhost: %d events still in flight: %w", m.eventsInFlight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Disconnect tells every plugin that wants it (not SkipDisconnect) that the
// socket is gone: a plugin that gets OnConnect only if it saw the socket's.
func (m *Manager) Disconnect(s sdk.Socket, reason string) {
	for _, in := range m.instances {
		in.disconnect(s, reason)
	}
}

// Routes lists the plugins' HTTP routes (known after Start).
func (m *Manager) Routes() []Route { return slices.Clone(m.routes) }

// ServeHTTP forwards r to the plugin (body up to 1 MiB, else 413) and copies
// its answer back; 503 when the plugin is not running.
func (m *Manager) ServeHTTP(plugin string, w http.ResponseWriter, r *http.Request) {
	in := m.byName[plugin]
	if in == nil {
		http.Error(w, "no such plugin", http.StatusNotFound)
		return
	}
	c := in.running()
	if c == nil {
		http.Error(w, "plugin unavailable", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHTTPBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), httpTimeout)
	defer cancel()
	resp, err := c.HTTP(ctx, sdk.HTTPRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(),
		Body: body, RemoteAddr: r.RemoteAddr,
	})
	if err != nil {
		if errors.Is(err, sdk.ErrPluginUnavailable) {
			http.Error(w, "plugin unavailable", http.StatusServiceUnavailable)
			return
		}
		in.logger.Error("plugin HTTP handler failed", "method", r.Method, "path", r.URL.Path, "error", err)
		http.Error(w, "plugin error", http.StatusBadGateway)
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(resp.Body)
}

// Status reports every enabled plugin's state, sorted by name.
func (m *Manager) Status() []Status {
	out := make([]Status, 0, len(m.instances))
	for _, in := range m.instances {
		in.mu.RLock()
		st := Status{
			Name: in.name, Mode: in.mode, State: in.state, Restarts: in.restarts, LastError: in.lastErr,
			Events: slices.Clone(in.desc.Events), Routes: slices.Clone(in.desc.Routes),
		}
		if in.proc != nil && in.state == StateRunning {
			st.PID = in.proc.PID
		}
		in.mu.RUnlock()
		out = append(out, st)
	}
	return out
}

// Ready returns nil iff every enabled plugin is running.
func (m *Manager) Ready() error {
	var bad []string
	for _, st := range m.Status() {
		if st.State != StateRunning {
			bad = append(bad, st.Name+" is "+st.State)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("plugins not ready: %s", strings.Join(bad, ", "))
	}
	return nil
}

// Describe returns a plugin's Descriptor: from the running plugin, or by
// starting it briefly (enabled or not; a registered built-in that is not
// configured runs as a subprocess).
func (m *Manager) Describe(name string) (sdk.Descriptor, error) {
	if in := m.byName[name]; in != nil {
		in.mu.RLock()
		d, ok := in.desc, in.client != nil
		in.mu.RUnlock()
		if ok {
			return d, nil
		}
	}
	pc, ok := m.all[name]
	if !ok {
		pc = config.PluginConfig{}
	}
	in, err := m.newInstance(name, pc)
	if err != nil {
		return sdk.Descriptor{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout+sdk.DefaultStartTimeout)
	defer cancel()
	l, err := in.launch(ctx)
	if err != nil {
		return sdk.Descriptor{}, fmt.Errorf("plugin %q: %w", name, err)
	}
	l.kill()
	return l.desc, nil
}

// socketDirPrefix starts the name of a Manager's socket directory, followed
// by the host's pid and "-".
const socketDirPrefix = "rt-plugins-"

// removeStaleSocketDirs removes the socket directories in tmp that this
// user's hosts left when they were killed (SIGKILL, OOM): those whose pid no
// longer runs. A pid reused since is left alone (an empty directory or two).
func removeStaleSocketDirs(tmp string, log *slog.Logger) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), socketDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to probe (EPERM)
		}
		dir := filepath.Join(tmp, e.Name())
		if fi, err := os.Stat(dir); err != nil || fileowner.Mine(fi) != nil {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			log.Debug("removed a dead host's plugin socket directory", "dir", dir, "pid", pid)
		}
	}
}
