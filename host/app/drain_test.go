package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/clowdr/realtime/host/app"
	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/plugins/sdk"
)

// slowPlugin ("appslow") handles "appslow.send" like chat handles a send: it
// waits for the gate named by its argument, emits "appslow.sent" to the
// socket with Host.Emit (chat's chat.messages.send.ack), then returns the
// ack value "ok". "appslow.fast" answers at once.
type slowPlugin struct {
	sdk.Base
	host sdk.Host
}

// slowGates holds the gates of appslow.send events by name.
var slowGates sync.Map // string -> *slowGate

type slowGate struct{ entered, release chan struct{} }

func newSlowGate(t *testing.T, name string) *slowGate {
	g := &slowGate{entered: make(chan struct{}), release: make(chan struct{})}
	slowGates.Store(name, g)
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
		slowGates.Delete(name)
	})
	return g
}

func init() {
	sdk.Register("appslow", func() sdk.Plugin { return &slowPlugin{} })
}

func (p *slowPlugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{Name: "appslow", Events: []string{"appslow.send", "appslow.fast"}}
}

func (p *slowPlugin) Start(_ context.Context, h sdk.Host, _ json.RawMessage) error {
	p.host = h
	return nil
}

func (p *slowPlugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	if e.Name == "appslow.fast" {
		return []any{"fast"}, nil
	}
	var name string
	if len(e.Args) == 0 || json.Unmarshal(e.Args[0], &name) != nil {
		return nil, errors.New("want a gate name")
	}
	v, ok := slowGates.Load(name)
	if !ok {
		return nil, errors.New("no such gate")
	}
	g := v.(*slowGate)
	close(g.entered)
	<-g.release
	if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "appslow.sent", name); err != nil {
		return nil, err
	}
	return []any{"ok"}, nil
}

// logWatch is a slog.Handler that remembers the messages logged at info and
// above, so a test can wait for a step of the shutdown.
type logWatch struct {
	mu      sync.Mutex
	seen    map[string]bool
	waiters map[string][]chan struct{}
}

func newLogWatch() *logWatch {
	return &logWatch{seen: map[string]bool{}, waiters: map[string][]chan struct{}{}}
}

func (w *logWatch) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *logWatch) WithGroup(string) slog.Handler                { return w }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[r.Message] = true
	for _, ch := range w.waiters[r.Message] {
		close(ch)
	}
	delete(w.waiters, r.Message)
	return nil
}

// logged returns a channel closed once msg has been logged.
func (w *logWatch) logged(msg string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if w.seen[msg] {
		close(ch)
		return ch
	}
	w.waiters[msg] = append(w.waiters[msg], ch)
	return ch
}

type slowHost struct {
	url   string
	token func(user string) string
	logs  *logWatch
	stop  func() error // app.Stop, once
}

// startSlowHost runs a host with only appslow enabled (in process) and the
// given shutdown budget; the test stops it itself.
func startSlowHost(t *testing.T, budget time.Duration) *slowHost {
	t.Helper()
	env := []string{"RT_AUTH__DEV_KEY_FILE=" + t.TempDir() + "/dev-jwks.json"}
	args := []string{"--set", "shutdown.timeout=" + budget.String()}
	for _, n := range sdk.Registered() {
		args = append(args, "--set", "plugins."+n+".enabled="+map[bool]string{true: "true", false: "false"}[n == "appslow"],
			"--set", "plugins."+n+".mode=inprocess")
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{Environ: env, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogWatch()
	a := fx.New(app.Options(cfg, slog.New(logs), ln), fx.NopLogger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stopErr = a.Stop(ctx)
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	signer, err := auth.New(cfg.Auth, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = signer.Close() })
	token := func(user string) string {
		tok, err := signer.Sign(user, time.Hour, nil)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return tok
	}
	return &slowHost{url: "http://" + ln.Addr().String(), token: token, logs: logs, stop: stop}
}

// recordingClient dials h and records the events it receives, in order.
type recordingClient struct {
	*sioclient.Client
	mu     sync.Mutex
	events []string
}

func (h *slowHost) dial(t *testing.T, user string) *recordingClient {
	t.Helper()
	rc := &recordingClient{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sioclient.Dial(ctx, h.url, sioclient.Options{
		Token: h.token(user),
		OnEvent: func(name string, _ []json.RawMessage) {
			rc.mu.Lock()
			rc.events = append(rc.events, name)
			rc.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc.Client = c
	return rc
}

func (rc *recordingClient) got(name string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, e := range rc.events {
		if e == name {
			return true
		}
	}
	return false
}

type ackResult struct {
	ack []json.RawMessage
	err error
}

func emitAsync(c *recordingClient, event string, args ...any) <-chan ackResult {
	ch := make(chan ackResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ack, err := c.EmitWithAck(ctx, event, args...)
		ch <- ackResult{ack, err}
	}()
	return ch
}

func waitDone(t *testing.T, c *recordingClient, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: socket still open 30s after the stop began", what)
	}
}

// TestShutdownAnswersInFlightEvent stops a host while a plugin handles an
// event: the sender gets the plugin's emit and the ack before its socket is
// closed (with "transport close", so it reconnects elsewhere), and an event
// sent meanwhile is refused with the "unavailable" error ack.
func TestShutdownAnswersInFlightEvent(t *testing.T) {
	h := startSlowHost(t, 10*time.Second)
	sender, other := h.dial(t, "alice"), h.dial(t, "bob")
	gate := newSlowGate(t, "in-flight")
	result := emitAsync(sender, "appslow.send", "in-flight")
	<-gate.entered

	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	<-h.logs.logged("draining: closing the listener and answering in-flight events")

	// New events are refused while the in-flight one is handled. A probe
	// sent before the refusal begins is answered "fast", or waits behind the
	// blocked event if its socket shares that dispatcher worker: probe again.
	var refusal string
	for refusal == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		ack, err := other.EmitWithAck(ctx, "appslow.fast")
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("probe during the drain: %v (its socket closed before the in-flight event was answered?)", err)
		}
		if err == nil && strings.Contains(string(ack[0]), "error") {
			refusal = string(ack[0])
		}
	}
	if refusal != `{"error":"unavailable: retry shortly"}` {
		t.Errorf("event during the drain answered %s, want the unavailable error ack", refusal)
	}
	if !sender.Connected() {
		t.Fatal("the sender's socket closed while its event was in the plugin")
	}

	close(gate.release)
	r := <-result
	if r.err != nil || len(r.ack) != 1 || string(r.ack[0]) != `"ok"` {
		t.Fatalf("in-flight event: ack %s, err %v; want [\"ok\"] before the close", r.ack, r.err)
	}
	// The read loop handled the emit frame before the ack frame.
	if !sender.got("appslow.sent") {
		t.Fatal("the ack arrived without the plugin's appslow.sent emit")
	}
	waitDone(t, sender, "sender")
	if got := sender.Reason(); got != sioclient.ReasonTransportClose {
		t.Errorf("sender disconnected with %q, want %q", got, sioclient.ReasonTransportClose)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// TestShutdownBoundedWhenHandlerHangs: a handler that does not return keeps
// the sockets open only for the drain bound (half of shutdown.timeout, at
// most 5 s); then they are closed anyway and the host stops.
func TestShutdownBoundedWhenHandlerHangs(t *testing.T) {
	h := startSlowHost(t, 2*time.Second) // drain bound 1 s
	sender := h.dial(t, "alice")
	gate := newSlowGate(t, "hung")
	result := emitAsync(sender, "appslow.send", "hung")
	<-gate.entered

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	// The handler is released only after the socket closed.
	waitDone(t, sender, "sender of a hung event")
	closedAfter := time.Since(start)
	if got := sender.Reason(); got != sioclient.ReasonTransportClose {
		t.Errorf("sender disconnected with %q, want %q", got, sioclient.ReasonTransportClose)
	}
	if r := <-result; r.err == nil {
		t.Errorf("hung event answered %s before the close", r.ack)
	}
	select {
	case <-h.logs.logged("draining: closing sockets with events still in flight"):
	default:
		t.Error("no warning that sockets were closed with events in flight")
	}
	close(gate.release)
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("socket closed %v after the stop began (drain bound 1s), host stopped %v after", closedAfter.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
