package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// drainPlugin ("pdrain") handles "pdrain.slow" like chat handles a send: it
// waits for the gate named by its argument, emits "pdrain.ack" to the socket
// with Host.Emit, and returns. "pdrain.fast" answers at once.
type drainPlugin struct {
	sdk.Base
	host sdk.Host
}

// drainGates holds the gates of pdrain.slow events by name: entered is
// closed when the handler started, release lets it finish.
var drainGates sync.Map // string -> *drainGate

type drainGate struct{ entered, release chan struct{} }

func newDrainGate(t *testing.T, name string) *drainGate {
	g := &drainGate{entered: make(chan struct{}), release: make(chan struct{})}
	drainGates.Store(name, g)
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release) // let Stop finish
		}
		drainGates.Delete(name)
	})
	return g
}

func init() {
	sdk.Register("pdrain", func() sdk.Plugin { return &drainPlugin{} })
}

func (p *drainPlugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{Name: "pdrain", Events: []string{"pdrain.slow", "pdrain.fast"}}
}

func (p *drainPlugin) Start(_ context.Context, h sdk.Host, _ json.RawMessage) error {
	p.host = h
	return nil
}

func (p *drainPlugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	if e.Name == "pdrain.fast" {
		return []any{"fast"}, nil
	}
	var name string
	if err := json.Unmarshal(e.Args[0], &name); err != nil {
		return nil, err
	}
	v, _ := drainGates.Load(name)
	g := v.(*drainGate)
	close(g.entered)
	<-g.release
	if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "pdrain.ack", name); err != nil {
		return nil, err
	}
	return []any{"slow"}, nil
}

func hasEmit(svc *fakeServices, event, socket string) bool {
	for _, e := range svc.Emits() {
		if e.Event == event && e.To.ID == socket {
			return true
		}
	}
	return false
}

// TestDrainEventsAnswersInFlight: an event the plugin took before
// DrainEvents is answered, with the emit its handler made, before
// DrainEvents returns; events arriving meanwhile are refused as unavailable.
func TestDrainEventsAnswersInFlight(t *testing.T) {
	svc := newFakeServices(t)
	m := startManager(t, map[string]config.PluginConfig{"pdrain": {Enabled: true, Mode: ModeInProcess}}, svc, nil)
	s1, s2 := sdktest.Socket("s1", "alice"), sdktest.Socket("s2", "bob")
	m.Connect(s1)
	m.Connect(s2)
	if ack, err := sendEvent(t, m, s2, "pdrain.fast"); err != nil || string(ack[0]) != `"fast"` {
		t.Fatalf("before the drain: ack %s, err %v", ack, err)
	}

	gate := newDrainGate(t, "g1")
	raw, _ := sdk.MarshalArgs([]any{"g1"})
	type answer struct {
		ack     []json.RawMessage
		err     error
		emitted bool // pdrain.ack had gone through Services.Emit when done ran
	}
	answered := make(chan answer, 1)
	m.Event(s1, "pdrain.slow", raw, func(ack []json.RawMessage, err error) {
		answered <- answer{ack, err, hasEmit(svc, "pdrain.ack", "s1")}
	})
	<-gate.entered

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- m.DrainEvents(ctx)
	}()
	eventually(t, "the drain to begin", m.draining.Load)
	// s2 may share s1's dispatcher worker, but a refused event never reaches it.
	if _, err := sendEvent(t, m, s2, "pdrain.fast"); !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Fatalf("event during the drain: err %v, want one wrapping ErrPluginUnavailable", err)
	}
	select {
	case err := <-drained:
		t.Fatalf("DrainEvents returned (%v) while pdrain.slow was still in its handler", err)
	case a := <-answered:
		t.Fatalf("pdrain.slow answered (%v, %v) before its handler finished", a.ack, a.err)
	default:
	}

	close(gate.release)
	if err := <-drained; err != nil {
		t.Fatalf("DrainEvents: %v", err)
	}
	// DrainEvents returns only after done returned: the answer is there.
	select {
	case a := <-answered:
		if a.err != nil || len(a.ack) != 1 || string(a.ack[0]) != `"slow"` {
			t.Fatalf("in-flight event answered with %s, %v; want [\"slow\"]", a.ack, a.err)
		}
		if !a.emitted {
			t.Fatal("done ran before the handler's pdrain.ack emit was applied")
		}
	default:
		t.Fatal("DrainEvents returned before the in-flight event was answered")
	}
	if _, err := sendEvent(t, m, s1, "pdrain.fast"); !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Fatalf("event after the drain: err %v, want ErrPluginUnavailable", err)
	}
}

// TestDrainEventsBounded: a handler that does not return does not hold the
// drain beyond its ctx; the error says how many events are left.
func TestDrainEventsBounded(t *testing.T) {
	svc := newFakeServices(t)
	m := startManager(t, map[string]config.PluginConfig{"pdrain": {Enabled: true, Mode: ModeInProcess}}, svc, nil)
	s1 := sdktest.Socket("s1", "alice")
	m.Connect(s1)
	gate := newDrainGate(t, "g2") // released only at cleanup
	raw, _ := sdk.MarshalArgs([]any{"g2"})
	m.Event(s1, "pdrain.slow", raw, nil)
	<-gate.entered

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.DrainEvents(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "pluginhost: 1 events still in flight: context deadline exceeded" {
		t.Fatalf("DrainEvents with a hung handler = %v, want 1 event in flight and the deadline", err)
	}
	t.Logf("DrainEvents gave up after %v (bound 200ms)", time.Since(start).Round(time.Millisecond))
	if hasEmit(svc, "pdrain.ack", "s1") {
		t.Fatal("the hung handler emitted")
	}
}

// TestDrainEventsIdle returns at once when nothing is in flight (no wait for
// a tick), and refuses events afterwards.
func TestDrainEventsIdle(t *testing.T) {
	svc := newFakeServices(t)
	m := startManager(t, map[string]config.PluginConfig{"pdrain": {Enabled: true, Mode: ModeInProcess}}, svc, nil)
	s1 := sdktest.Socket("s1", "alice")
	m.Connect(s1)
	if _, err := sendEvent(t, m, s1, "pdrain.fast"); err != nil {
		t.Fatal(err)
	}
	// The answer reaches sendEvent just before the event's count is undone,
	// so the drain may see it for a moment: give it time, not a done ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.DrainEvents(ctx); err != nil {
		t.Fatalf("idle DrainEvents = %v", err)
	}
	if _, err := sendEvent(t, m, s1, "pdrain.fast"); !errors.Is(err, sdk.ErrPluginUnavailable) || !errors.Is(err, errDraining) {
		t.Fatalf("event after the drain: err %v, want errDraining", err)
	}
}
