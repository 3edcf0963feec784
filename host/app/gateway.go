package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/hub"
	"github.com/clowdr/realtime/host/pluginhost"
	"github.com/clowdr/realtime/host/socketio"
	"github.com/clowdr/realtime/plugins/sdk"
)

// gateway connects the websocket server to auth, the directory, the hub and the
// plugins: it is the socketio.Handler.
type gateway struct {
	verifier  *auth.Verifier
	directory sdk.Directory
	hub       *hub.Hub
	plugins   *pluginhost.Manager
	log       *slog.Logger

	eventsPerSecond float64
	eventBurst      int

	eventsIn    *prometheus.CounterVec
	rateLimited prometheus.Counter
}

// sockState is the host's per-socket state, kept in the socketio.Conn. It
// points at the hub's socket for the socket's info rather than keeping a
// copy (an idle socket's memory, BENCHMARKS.md "connect").
type sockState struct {
	sock   *hub.Socket
	bucket tokenBucket // the per-socket event rate limit
}

func (st *sockState) info() *sdk.Socket { return &st.sock.Info }

// tokenBucket is the per-socket event limit: burst tokens, refilled at rate
// per second. It is a value in sockState rather than a *rate.Limiter (80
// bytes and a mutex each, for every idle socket) and needs no lock: socketio
// calls OnEvent for one connection one at a time.
type tokenBucket struct {
	tokens float64
	last   int64 // time.Now().UnixNano() of the last refill; 0 = full bucket
}

// allow takes a token if there is one.
func (b *tokenBucket) allow(now int64, rate float64, burst int) bool {
	if b.last == 0 {
		b.tokens = float64(burst)
	} else if elapsed := float64(now-b.last) / 1e9; elapsed > 0 {
		b.tokens = min(float64(burst), b.tokens+elapsed*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// directoryTimeout bounds the conference lookup done before CONNECT is answered.
const directoryTimeout = 5 * time.Second

var _ socketio.Handler = (*gateway)(nil)

func newGateway(v *auth.Verifier, d sdk.Directory, h *hub.Hub, p *pluginhost.Manager, log *slog.Logger, eps float64, burst int, reg prometheus.Registerer) *gateway {
	g := &gateway{
		verifier: v, directory: d, hub: h, plugins: p, log: log,
		eventsPerSecond: eps, eventBurst: burst,
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_events_in_total",
			Help: "Socket.IO events received, by result (routed, unknown, rate_limited).",
		}, []string{"result"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "realtime_events_rate_limited_total",
			Help: "Events dropped by the per-socket rate limit.",
		}),
	}
	if reg != nil {
		reg.MustRegister(g.eventsIn, g.rateLimited)
	}
	return g
}

// Authenticate verifies the token, resolves the user's conferences, registers
// the socket and tells the plugins, all before the CONNECT is answered: no
// early event can overtake the connect (the original's §2.5 bug).
func (g *gateway) Authenticate(ctx context.Context, c *socketio.Conn, payload json.RawMessage) error {
	id, err := g.verifier.Verify(ctx, payload)
	if err != nil {
		var ref *auth.Refusal
		if errors.As(err, &ref) {
			g.log.Info("connect refused", "socket", c.ID(), "remote", c.RemoteAddr(), "code", ref.Code, "reason", ref.Reason)
			return &socketio.ConnectError{Message: ref.Message, Data: map[string]string{
				"message": ref.Message, "code": ref.Code, "type": "UnauthorizedError",
			}}
		}
		if errors.Is(err, auth.ErrNoHasuraClaims) {
			g.log.Info("token without Hasura claims: disconnecting", "socket", c.ID())
			return socketio.ErrAcceptThenDisconnect
		}
		g.log.Error("token check failed", "socket", c.ID(), "err", err)
		return &socketio.ConnectError{Message: auth.MessageInvalidToken, Data: map[string]string{
			"message": auth.MessageInvalidToken, "code": "invalid_token", "type": "UnauthorizedError",
		}}
	}
	dctx, cancel := context.WithTimeout(ctx, directoryTimeout)
	slugs, err := g.directory.ConferenceSlugs(dctx, id.UserID)
	cancel()
	if err != nil {
		// A transient failure: close the transport so the client reconnects
		// with backoff, instead of a refusal it would not retry.
		g.log.Error("conference lookup failed; closing so the client retries", "socket", c.ID(), "user", id.UserID, "err", err)
		c.Close("directory unavailable")
		return err
	}
	sock, err := g.hub.Register(ctx, sdk.Socket{ID: c.ID(), UserID: id.UserID, ConferenceSlugs: slugs}, c)
	if err != nil {
		// Redis (room subscriptions) is likely down: close the transport so
		// the client reconnects with backoff; a CONNECT_ERROR would make
		// socket.io-client give up.
		g.log.Error("registering socket failed; closing so the client retries", "socket", c.ID(), "err", err)
		c.Close("hub unavailable")
		return err
	}
	c.SetValue(&sockState{sock: sock})
	g.plugins.Connect(sock.Info)
	return nil
}

// OnConnected tells the client every handler is in place (HEAD's server.ready).
func (g *gateway) OnConnected(c *socketio.Conn) {
	_ = c.Emit("server.ready")
}

// OnEvent routes an event to the plugin that declared it.
func (g *gateway) OnEvent(c *socketio.Conn, name string, args []json.RawMessage, ackID int64) {
	st, ok := c.Value().(*sockState)
	if !ok {
		return
	}
	if g.eventsPerSecond > 0 && !st.bucket.allow(time.Now().UnixNano(), g.eventsPerSecond, max(g.eventBurst, 1)) {
		g.eventsIn.WithLabelValues("rate_limited").Inc()
		g.rateLimited.Inc()
		g.log.Debug("event rate limited", "socket", st.info().ID, "user", st.info().UserID, "event", name)
		_ = c.Emit("server.error", map[string]string{"event": name, "code": "rate_limited", "message": "too many events; slow down"})
		return
	}
	done := func(ack []json.RawMessage, err error) {
		if err != nil {
			g.log.Debug("event failed", "socket", st.info().ID, "event", name, "err", err)
		}
		if ackID >= 0 {
			if err != nil {
				ack = []json.RawMessage{mustJSON(map[string]string{"error": clientError(err)})}
			}
			_ = c.Ack(ackID, ack)
			return
		}
		// Without an ack to carry it, tell the client when the feature is
		// down or overloaded, so it can retry, instead of silence.
		if errors.Is(err, sdk.ErrPluginUnavailable) || errors.Is(err, sdk.ErrOverloaded) {
			_ = c.Emit("server.error", map[string]string{"event": name, "code": "unavailable", "message": "this feature is restarting or overloaded; retry shortly"})
		}
	}
	if g.plugins.Event(*st.info(), name, args, done) {
		g.eventsIn.WithLabelValues("routed").Inc()
		return
	}
	if name == "time" {
		// Original §4.1: echo the sync packet with the server's clock.
		g.eventsIn.WithLabelValues("routed").Inc()
		_ = c.Emit("time", timeReply(args))
		return
	}
	g.eventsIn.WithLabelValues("unknown").Inc()
	g.log.Debug("event without handler ignored", "socket", st.info().ID, "event", name)
}

// OnDisconnect forgets the socket and tells the plugins.
func (g *gateway) OnDisconnect(c *socketio.Conn, reason string) {
	st, ok := c.Value().(*sockState)
	if !ok {
		return
	}
	g.hub.Remove(context.Background(), st.info().ID)
	g.plugins.Disconnect(*st.info(), reason)
}

func timeReply(args []json.RawMessage) json.RawMessage {
	out := map[string]any{}
	if len(args) > 0 {
		_ = json.Unmarshal(args[0], &out) // non-objects echo as {}
		if out == nil {
			out = map[string]any{}
		}
	}
	out["serverSendTime"] = time.Now().UnixMilli()
	return mustJSON(out)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}

// clientError is what a client is told about a failed event: whether to
// retry, never the internals (addresses, Redis errors) in err, which go to
// the log instead.
func clientError(err error) string {
	switch {
	case errors.Is(err, sdk.ErrPluginUnavailable), errors.Is(err, sdk.ErrOverloaded), errors.Is(err, sdk.ErrHostUnavailable):
		return "unavailable: retry shortly"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "failed"
}
