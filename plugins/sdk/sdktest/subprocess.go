package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/clowdr/realtime/plugins/sdk"
)

// callTimeout bounds each synchronous helper call of a Subprocess.
const callTimeout = 10 * time.Second

// Subprocess is a registered plugin running in a child process, started the
// way the host starts it (the test binary re-executes itself with
// RT_PLUGIN_SERVE=<name>), driven through the real gRPC shims.
type Subprocess struct {
	// Client drives the plugin directly (asynchronous calls).
	Client sdk.Client
	// Host records what the plugin did; its Store is a real embedded Redis.
	Host *Host
	// Descriptor is what the plugin declared.
	Descriptor sdk.Descriptor
	// PID is the plugin's process id.
	PID int

	proc *sdk.Process
}

// Option configures StartSubprocess.
type Option func(*subprocessConfig)

type subprocessConfig struct {
	config any
	host   *Host
}

// WithConfig passes v (marshalled to JSON) as the plugin's config.
func WithConfig(v any) Option { return func(c *subprocessConfig) { c.config = v } }

// WithHost uses h instead of a fresh NewHost() (set its Directory first).
func WithHost(h *Host) Option { return func(c *subprocessConfig) { c.host = h } }

// StartSubprocess starts the registered plugin name in a child process and
// calls its Start; the process is stopped and killed when the test ends. The
// test binary must serve plugins when re-executed:
//
//	func TestMain(m *testing.M) {
//		sdk.ServeBuiltinIfRequested()
//		os.Exit(m.Run())
//	}
func StartSubprocess(t testing.TB, name string, opts ...Option) *Subprocess {
	t.Helper()
	cfg := subprocessConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	if _, ok := sdk.Lookup(name); !ok {
		t.Fatalf("sdktest.StartSubprocess: plugin %q is not registered (registered: %v)", name, sdk.Registered())
	}
	h := cfg.host
	if h == nil {
		h = NewHost()
		t.Cleanup(h.Close)
	}
	raw := json.RawMessage("{}")
	if cfg.config != nil {
		b, err := json.Marshal(cfg.config)
		if err != nil {
			t.Fatalf("sdktest.StartSubprocess: config: %v", err)
		}
		raw = b
	}

	logw := &testLogWriter{t: t}
	proc, err := sdk.Launch(sdk.LaunchConfig{
		Builtin: name,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "plugin." + name, Level: hclog.Warn, Output: logw,
		}),
		Output: logw,
	})
	if err != nil {
		t.Fatalf("sdktest.StartSubprocess(%q): %v (does TestMain call sdk.ServeBuiltinIfRequested?)", name, err)
	}
	sp := &Subprocess{Client: proc.Client, Host: h, PID: proc.PID, proc: proc}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if !proc.Exited() {
			_ = proc.Client.Stop(ctx)
		}
		_ = proc.Kill(ctx)
		logw.close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if sp.Descriptor, err = proc.Client.Describe(ctx); err != nil {
		t.Fatalf("sdktest.StartSubprocess(%q): describe: %v", name, err)
	}
	if err := proc.Client.Start(ctx, h.Services(), raw); err != nil {
		t.Fatalf("sdktest.StartSubprocess(%q): start: %v", name, err)
	}
	return sp
}

func wait[T any](ch chan T) (T, error) {
	select {
	case v := <-ch:
		return v, nil
	case <-time.After(callTimeout):
		var zero T
		return zero, fmt.Errorf("sdktest: no answer from the plugin in %s", callTimeout)
	}
}

func (sp *Subprocess) waitErr(queue func(done func(error)) error) error {
	ch := make(chan error, 1)
	if err := queue(func(err error) { ch <- err }); err != nil {
		return err
	}
	res, err := wait(ch)
	if err != nil {
		return err
	}
	return res
}

// Connect calls OnConnect and waits for it.
func (sp *Subprocess) Connect(s sdk.Socket) error {
	return sp.waitErr(func(done func(error)) error { return sp.Client.Connect(s, done) })
}

// Disconnect calls OnDisconnect and waits for it.
func (sp *Subprocess) Disconnect(s sdk.Socket, reason string) error {
	return sp.waitErr(func(done func(error)) error { return sp.Client.Disconnect(s, reason, done) })
}

// Deliver calls OnDelivery and waits for it.
func (sp *Subprocess) Deliver(d sdk.Delivery) error {
	return sp.waitErr(func(done func(error)) error { return sp.Client.Deliver(d, done) })
}

// Event sends an event with args given as Go values and waits for the ack.
// Emits the plugin made while handling it are recorded in Host once Event
// returns (they travel before the answer on the same stream).
func (sp *Subprocess) Event(s sdk.Socket, name string, args ...any) ([]json.RawMessage, error) {
	raw, err := sdk.MarshalArgs(args)
	if err != nil {
		return nil, fmt.Errorf("sdktest: event args: %w", err)
	}
	type result struct {
		ack []json.RawMessage
		err error
	}
	ch := make(chan result, 1)
	if err := sp.Client.Event(sdk.Event{Socket: s, Name: name, Args: raw}, func(ack []json.RawMessage, err error) {
		ch <- result{ack, err}
	}); err != nil {
		return nil, err
	}
	res, err := wait(ch)
	if err != nil {
		return nil, err
	}
	return res.ack, res.err
}

// HTTP forwards a request to the plugin.
func (sp *Subprocess) HTTP(r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return sp.Client.HTTP(ctx, r)
}

// testLogWriter forwards the plugin's log lines to t.Log until the test ends.
type testLogWriter struct {
	mu     sync.Mutex
	t      testing.TB
	done   bool
	buffer bytes.Buffer
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.buffer.Write(p)
	for {
		line, err := w.buffer.ReadString('\n')
		if err != nil {
			w.buffer.WriteString(line)
			break
		}
		w.t.Log(strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
