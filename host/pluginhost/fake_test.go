package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

// testPlugin is registered as "ptest" (and, claiming the same event, as
// "ptest2"). Its events exercise every part of the contract.
type testPlugin struct {
	sdk.Base
	name string
	host sdk.Host

	mu       sync.Mutex
	connects []string
}

func init() {
	sdk.Register("ptest", func() sdk.Plugin { return &testPlugin{name: "ptest"} })
	sdk.Register("ptest2", func() sdk.Plugin { return &testPlugin{name: "ptest2"} })
	sdk.Register("ptest3", func() sdk.Plugin { return &testPlugin{name: "ptest3"} })
}

func (p *testPlugin) Describe() sdk.Descriptor {
	switch p.name {
	case "ptest2": // claims ptest's event
		return sdk.Descriptor{Name: p.name, Events: []string{"other", "ptest.echo"}}
	case "ptest3": // claims ptest's route
		return sdk.Descriptor{Name: p.name, Events: []string{"p3"}, Routes: []sdk.Route{{Path: "/ptest/hello"}}}
	}
	return sdk.Descriptor{
		Name: "ptest", Version: "0.1.0",
		Events:    []string{"ptest.echo", "ptest.host", "ptest.pid", "ptest.connects", "ptest.fail", "ptest.log"},
		Routes:    []sdk.Route{{Method: http.MethodGet, Path: "/ptest/hello"}},
		Exchanges: []sdk.Exchange{{Name: "ptest.ex", Kind: "topic", Durable: true}},
		Queues: []sdk.Queue{
			{Name: "ptest.{instance}", Exchange: "ptest.ex", Bindings: []string{"#"}},
			{Name: "ptest.batch", Exchange: "ptest.ex", Bindings: []string{"batch"}, Prefetch: 8, BatchMax: 8, BatchWait: 200 * time.Millisecond},
		},
	}
}

func (p *testPlugin) Start(_ context.Context, h sdk.Host, _ json.RawMessage) error {
	p.host = h
	return nil
}

func (p *testPlugin) OnConnect(_ context.Context, s sdk.Socket) error {
	p.mu.Lock()
	p.connects = append(p.connects, s.ID)
	p.mu.Unlock()
	return nil
}

func (p *testPlugin) OnDisconnect(_ context.Context, s sdk.Socket, _ string) error {
	p.mu.Lock()
	p.connects = slices.DeleteFunc(p.connects, func(id string) bool { return id == s.ID })
	p.mu.Unlock()
	return nil
}

func (p *testPlugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	switch e.Name {
	case "ptest.echo":
		args := make([]any, len(e.Args))
		for i, a := range e.Args {
			args[i] = a
		}
		if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "echo", args...); err != nil {
			return nil, err
		}
		return args, nil
	case "ptest.pid":
		return []any{os.Getpid()}, nil
	case "ptest.connects":
		p.mu.Lock()
		defer p.mu.Unlock()
		c := slices.Clone(p.connects)
		sort.Strings(c)
		return []any{c}, nil
	case "ptest.log":
		p.host.Logger().Warn("hello from the plugin", "n", 7)
		return nil, nil
	case "ptest.fail":
		return nil, errors.New("handler failed")
	case "ptest.host":
		st := p.host.Store()
		if _, err := st.Do(ctx, "SET", "k", "v"); err != nil {
			return nil, err
		}
		v, err := sdk.String(st.Do(ctx, "GET", "k"))
		if err != nil {
			return nil, err
		}
		if err := p.host.Join(ctx, e.Socket.ID, "room1"); err != nil {
			return nil, err
		}
		if err := p.host.Publish(ctx, "ptest.ex", "rk", []byte("hello")); err != nil {
			return nil, err
		}
		slugs, err := p.host.Directory().ConferenceSlugs(ctx, e.Socket.UserID)
		if err != nil {
			return nil, err
		}
		return []any{v, slugs, p.host.InstanceID()}, nil
	}
	return nil, fmt.Errorf("unexpected event %q", e.Name)
}

func (p *testPlugin) OnDelivery(ctx context.Context, d sdk.Delivery) error {
	if string(d.Body) == "drop" {
		return fmt.Errorf("bad: %w", sdk.ErrDrop)
	}
	return p.host.Emit(ctx, sdk.RoomTarget("deliveries"), "delivered", d.Queue, string(d.Body))
}

// OnDeliveries handles ptest.batch: it emits each batch's bodies.
func (p *testPlugin) OnDeliveries(ctx context.Context, ds []sdk.Delivery) []error {
	bodies := make([]string, len(ds))
	for i, d := range ds {
		bodies[i] = string(d.Body)
	}
	err := p.host.Emit(ctx, sdk.RoomTarget("deliveries"), "batch", bodies)
	errs := make([]error, len(ds))
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func (p *testPlugin) OnHTTP(_ context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	return sdk.HTTPResponse{Status: http.StatusOK, Header: http.Header{"X-Plugin": {p.name}},
		Body: []byte("hello " + r.Query.Get("name") + " " + string(r.Body))}, nil
}

// fakeServices records what plugins ask of the host.
type fakeServices struct {
	h *sdktest.Host

	mu        sync.Mutex
	emits     []emitRec
	emitCh    chan emitRec // when set, every emit is also sent here
	exchanges []sdk.Exchange
	consumers map[string]func(context.Context, sdk.Delivery) error
	async     map[string]func(context.Context, sdk.Delivery, func(error))
	live      []sdk.Socket
	stopped   int
	log       *slog.Logger // plugins' logger (default: discards)
}

type emitRec struct {
	Plugin string
	To     sdk.Target
	Event  string
	Args   []json.RawMessage
}

func newFakeServices(t testing.TB) *fakeServices {
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	h.Dir.ConferenceSlugsFunc = func(_ context.Context, u string) ([]string, error) { return []string{"conf-" + u}, nil }
	return &fakeServices{h: h, consumers: map[string]func(context.Context, sdk.Delivery) error{},
		async: map[string]func(context.Context, sdk.Delivery, func(error)){}}
}

func (f *fakeServices) Emit(_ context.Context, plugin string, to sdk.Target, event string, args []json.RawMessage) error {
	r := emitRec{plugin, to, event, args}
	f.mu.Lock()
	f.emits = append(f.emits, r)
	ch := f.emitCh
	f.mu.Unlock()
	if ch != nil {
		ch <- r
	}
	return nil
}

func (f *fakeServices) Emits() []emitRec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.emits)
}

func (f *fakeServices) Join(ctx context.Context, s, r string) error  { return f.h.Join(ctx, s, r) }
func (f *fakeServices) Leave(ctx context.Context, s, r string) error { return f.h.Leave(ctx, s, r) }
func (f *fakeServices) Disconnect(ctx context.Context, s string) error {
	return f.h.Disconnect(ctx, s)
}
func (f *fakeServices) Store() sdk.Store { return f.h.Store() }
func (f *fakeServices) Publish(ctx context.Context, ex, rk string, body []byte) error {
	return f.h.Publish(ctx, ex, rk, body)
}
func (f *fakeServices) DeclareExchange(_ context.Context, ex sdk.Exchange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exchanges = append(f.exchanges, ex)
	return nil
}
func (f *fakeServices) Consume(_ context.Context, q sdk.Queue, h func(context.Context, sdk.Delivery) error) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consumers[q.Name] = h
	return func() { f.mu.Lock(); f.stopped++; f.mu.Unlock() }, nil
}
func (f *fakeServices) ConsumeAsync(_ context.Context, q sdk.Queue, h func(context.Context, sdk.Delivery, func(error))) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.async[q.Name] = h
	return func() { f.mu.Lock(); f.stopped++; f.mu.Unlock() }, nil
}
func (f *fakeServices) asyncConsumer(name string) func(context.Context, sdk.Delivery, func(error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.async[name]
}
func (f *fakeServices) consumer(name string) func(context.Context, sdk.Delivery) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.consumers[name]
}
func (f *fakeServices) Directory() sdk.Directory { return f.h.Directory() }
func (f *fakeServices) Logger() *slog.Logger {
	if f.log != nil {
		return f.log
	}
	return slog.New(slog.DiscardHandler)
}
func (f *fakeServices) InstanceID() string { return "inst1" }
func (f *fakeServices) LiveSockets() []sdk.Socket {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.live)
}
func (f *fakeServices) setLive(s ...sdk.Socket) { f.mu.Lock(); f.live = s; f.mu.Unlock() }

var _ Services = (*fakeServices)(nil)
