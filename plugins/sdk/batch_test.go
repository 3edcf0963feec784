package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested() // for TestBatchSubprocess
	os.Exit(m.Run())
}

func init() {
	sdk.Register("batchtest", func() sdk.Plugin {
		return &batchPlugin{
			queues: []sdk.Queue{{Name: "wb", Prefetch: 20, BatchMax: 4, BatchWait: 100 * time.Millisecond}},
			emit:   true,
		}
	})
}

// batchPlugin records the batches of its batched queues and the single
// deliveries of the others. A body says what to answer: "drop", "retry",
// "panic" (the whole batch), "short" (one result missing), "slow" (the
// batch sleeps 200 ms first), anything else acks. With emit it also emits
// each batch's bodies (to see them from outside a subprocess).
type batchPlugin struct {
	sdk.Base
	queues []sdk.Queue
	emit   bool
	// entered gets a value when a batch starts; each batch then waits for
	// a value of release (both nil: no gate). Closing off (ungate) opens
	// the gate for good, so a test that failed half-way does not leave a
	// batch blocked (an in-process Close waits for it).
	entered, release, off chan struct{}
	offOnce               sync.Once

	mu      sync.Mutex
	host    sdk.Host
	batches [][]string
	singles []string
}

func (p *batchPlugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{Name: "batchtest", Version: "1", Queues: p.queues}
}

func (p *batchPlugin) Start(_ context.Context, h sdk.Host, _ json.RawMessage) error {
	p.mu.Lock()
	p.host = h
	p.mu.Unlock()
	return nil
}

func (p *batchPlugin) OnDelivery(_ context.Context, d sdk.Delivery) error {
	p.mu.Lock()
	p.singles = append(p.singles, d.Queue+":"+string(d.Body))
	p.mu.Unlock()
	return nil
}

func (p *batchPlugin) OnDeliveries(ctx context.Context, ds []sdk.Delivery) []error {
	var bodies []string
	for _, d := range ds {
		bodies = append(bodies, string(d.Body))
	}
	p.mu.Lock()
	p.batches = append(p.batches, bodies)
	h := p.host
	p.mu.Unlock()
	if p.entered != nil {
		select {
		case p.entered <- struct{}{}:
			select {
			case <-p.release:
			case <-p.off:
			}
		case <-p.off:
		}
	}
	if p.emit {
		_ = h.Emit(ctx, sdk.SocketTarget("t"), "batch", ds[0].Queue, bodies)
	}
	errs := make([]error, len(ds))
	for i, b := range bodies {
		switch b {
		case "drop":
			errs[i] = fmt.Errorf("bad: %w", sdk.ErrDrop)
		case "retry":
			errs[i] = errors.New("try later")
		case "panic":
			panic("boom")
		case "short":
			return errs[:i]
		case "slow":
			time.Sleep(200 * time.Millisecond)
		}
	}
	return errs
}

func (p *batchPlugin) recorded() ([][]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.batches), slices.Clone(p.singles)
}

// gated returns a batchPlugin whose batches wait at the gate.
func gated(queues ...sdk.Queue) *batchPlugin {
	return &batchPlugin{queues: queues, entered: make(chan struct{}), release: make(chan struct{}), off: make(chan struct{})}
}

func (p *batchPlugin) ungate() { p.offOnce.Do(func() { close(p.off) }) }

// enter waits until a batch is at the gate.
func (p *batchPlugin) enter(t *testing.T) {
	t.Helper()
	select {
	case <-p.entered:
	case <-time.After(10 * time.Second):
		batches, _ := p.recorded()
		t.Fatalf("no batch started; batches so far: %v", batches)
	}
}

// gate lets the next batch through the gate.
func (p *batchPlugin) gate(t *testing.T) {
	t.Helper()
	p.enter(t)
	p.release <- struct{}{}
}

// deliverAsync queues d and returns the channel of its answer.
func deliverAsync(t *testing.T, c sdk.Client, queue, body string) chan error {
	t.Helper()
	ch := make(chan error, 1)
	if err := c.Deliver(sdk.Delivery{Queue: queue, Body: []byte(body)}, func(err error) { ch <- err }); err != nil {
		t.Fatalf("deliver %s: %v", body, err)
	}
	return ch
}

func answer(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to a delivery")
	}
	return nil
}

// synced returns once every delivery c was given before the call has
// reached its queue's batcher on the plugin's side. Over gRPC, Deliver only
// queues the message on the stream, and whether a delivery batches depends
// on what is unanswered when it arrives there, so the test cannot release a
// batch as soon as Deliver returned. The plugin takes the stream's messages
// in order and hands a batched delivery to its batcher before it reads the
// next message (the in-process client does it in Deliver), so the answer
// to a later delivery of an unbatched queue ("plain") proves the arrival.
func synced(t *testing.T, c sdk.Client) {
	t.Helper()
	if err := answer(t, deliverAsync(t, c, "plain", "sync")); err != nil {
		t.Fatalf("sync delivery: %v", err)
	}
}

func TestBatchDelivery(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		p := gated(
			// A long wait: a batch that is not full only runs early
			// because it filled up (the test would take 10 s otherwise).
			sdk.Queue{Name: "wb.{instance}", Prefetch: 10, BatchMax: 3, BatchWait: 10 * time.Second},
			sdk.Queue{Name: "short", Prefetch: 100, BatchMax: 100, BatchWait: 20 * time.Millisecond},
			sdk.Queue{Name: "plain", Prefetch: 10},
		)
		c, h := started(t, mode, p, `{}`)
		t.Cleanup(p.ungate) // runs before the client's Close
		wb := "wb." + h.ID

		// The first delivery of a queue runs at once, alone: nothing says
		// yet that the host hands over several at a time.
		a := deliverAsync(t, c, wb, "a")
		p.enter(t)
		// These arrive while "a" is unanswered: they batch, in order, at
		// most BatchMax (3) at a time.
		var chs []chan error
		for _, b := range []string{"b", "drop", "retry", "e"} {
			chs = append(chs, deliverAsync(t, c, wb, b))
		}
		synced(t, c)
		p.release <- struct{}{}
		if err := answer(t, a); err != nil {
			t.Errorf("a: %v", err)
		}
		p.gate(t) // [b drop retry]
		for i, want := range []string{"", "drop", "retry"} {
			err := answer(t, chs[i])
			switch want {
			case "":
				if err != nil {
					t.Errorf("b: %v", err)
				}
			case "drop":
				if !errors.Is(err, sdk.ErrDrop) {
					t.Errorf("drop: err = %v, want ErrDrop", err)
				}
			case "retry":
				if err == nil || errors.Is(err, sdk.ErrDrop) || !strings.Contains(err.Error(), "try later") {
					t.Errorf("retry: err = %v, want a requeue error", err)
				}
			}
		}
		// "e" waits (up to 10 s) for more; two more fill its batch.
		f, g := deliverAsync(t, c, wb, "f"), deliverAsync(t, c, wb, "g")
		p.gate(t) // [e f g]
		for _, ch := range []chan error{chs[3], f, g} {
			if err := answer(t, ch); err != nil {
				t.Errorf("e/f/g: %v", err)
			}
		}
		// A panic requeues its whole batch; a missing result requeues its
		// delivery only.
		// (The queue is known to be pipelined now: a lone delivery would
		// wait the 10 s, so this batch is a full one.)
		var xs []chan error
		for _, b := range []string{"x1", "x2", "x3"} {
			xs = append(xs, deliverAsync(t, c, wb, b))
		}
		p.enter(t)
		var rest []chan error
		for _, b := range []string{"ok", "panic", "ok2", "y", "short", "z"} {
			rest = append(rest, deliverAsync(t, c, wb, b))
		}
		p.release <- struct{}{}
		p.gate(t) // [ok panic ok2]
		p.gate(t) // [y short z]
		for _, ch := range xs {
			if err := answer(t, ch); err != nil {
				t.Errorf("x: %v", err)
			}
		}
		for _, ch := range rest[:3] {
			if err := answer(t, ch); err == nil || !strings.Contains(err.Error(), "panic: boom") || errors.Is(err, sdk.ErrDrop) {
				t.Errorf("delivery of a panicking batch: err = %v, want the panic, requeued", err)
			}
		}
		if err := answer(t, rest[3]); err != nil {
			t.Errorf("y: %v", err)
		}
		for _, ch := range rest[4:] {
			if err := answer(t, ch); err == nil || errors.Is(err, sdk.ErrDrop) || !strings.Contains(err.Error(), "no result") {
				t.Errorf("delivery without a result: err = %v, want a requeue error", err)
			}
		}

		// A batch that does not fill up runs once its wait (20 ms) is over.
		s1 := deliverAsync(t, c, "short", "s1")
		p.enter(t)
		s2 := deliverAsync(t, c, "short", "s2")
		synced(t, c) // s2 arrived while s1 was unanswered: it waits
		p.release <- struct{}{}
		p.gate(t) // [s2], alone after its wait
		for _, ch := range []chan error{s1, s2} {
			if err := answer(t, ch); err != nil {
				t.Errorf("short: %v", err)
			}
		}

		// Queues without BatchMax keep going to OnDelivery.
		if err := answer(t, deliverAsync(t, c, "plain", "p1")); err != nil {
			t.Errorf("plain: %v", err)
		}

		batches, singles := p.recorded()
		want := [][]string{{"a"}, {"b", "drop", "retry"}, {"e", "f", "g"}, {"x1", "x2", "x3"}, {"ok", "panic", "ok2"}, {"y", "short", "z"}, {"s1"}, {"s2"}}
		if fmt.Sprint(batches) != fmt.Sprint(want) {
			t.Errorf("batches = %v, want %v", batches, want)
		}
		if fmt.Sprint(singles) != "[plain:sync plain:sync plain:p1]" {
			t.Errorf("OnDelivery saw %v", singles)
		}
	})
}

// TestBatchCloseAnswersQueued: Close leaves no delivery unanswered, not
// even one that waits (BatchWait) for a fuller batch. In process the
// waiting batch runs at once; over gRPC the host side answers what the
// plugin did not (ErrPluginUnavailable).
func TestBatchCloseAnswersQueued(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		p := gated(sdk.Queue{Name: "wb", Prefetch: 10, BatchMax: 3, BatchWait: 10 * time.Second}, sdk.Queue{Name: "plain", Prefetch: 10})
		c, _ := started(t, mode, p, `{}`)
		t.Cleanup(p.ungate)
		a := deliverAsync(t, c, "wb", "a")
		p.enter(t)
		b, d := deliverAsync(t, c, "wb", "b"), deliverAsync(t, c, "wb", "d")
		synced(t, c) // b and d are pipelined: their batch waits for a third
		p.ungate()
		if err := answer(t, a); err != nil {
			t.Errorf("a: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		for i, ch := range []chan error{b, d} {
			select {
			case err := <-ch:
				if mode == "inprocess" && err != nil || mode != "inprocess" && !errors.Is(err, sdk.ErrPluginUnavailable) {
					t.Errorf("delivery %d: err = %v", i, err)
				}
			default:
				t.Errorf("delivery %d unanswered after Close", i)
			}
		}
		if batches, _ := p.recorded(); mode == "inprocess" && fmt.Sprint(batches) != "[[a] [b d]]" {
			t.Errorf("batches = %v, want [[a] [b d]]", batches)
		}
	})
}

// onlyOne is a plugin without OnDeliveries.
type onlyOne struct {
	sdk.Base
	q sdk.Queue
}

func (p onlyOne) Describe() sdk.Descriptor {
	return sdk.Descriptor{Name: "one", Queues: []sdk.Queue{p.q}}
}

func TestBatchDescribeValidates(t *testing.T) {
	tests := []struct {
		name string
		p    sdk.Plugin
		want string
	}{
		{"prefetch below batchMax", &batchPlugin{queues: []sdk.Queue{{Name: "q", Prefetch: 5, BatchMax: 10}}}, "prefetch 5 is below batchMax 10"},
		{"default prefetch", &batchPlugin{queues: []sdk.Queue{{Name: "q", BatchMax: 10}}}, "prefetch 0 is below batchMax 10"},
		{"negative batchMax", &batchPlugin{queues: []sdk.Queue{{Name: "q", BatchMax: -1}}}, "negative"},
		{"wait too long", &batchPlugin{queues: []sdk.Queue{{Name: "q", Prefetch: 5, BatchMax: 5, BatchWait: time.Hour}}}, "batchWait"},
		{"no OnDeliveries", onlyOne{q: sdk.Queue{Name: "q", Prefetch: 5, BatchMax: 5}}, "BatchDeliveryHandler"},
		{"valid", &batchPlugin{queues: []sdk.Queue{{Name: "q", Prefetch: 5, BatchMax: 5, BatchWait: time.Second}}}, ""},
	}
	forEachMode(t, func(t *testing.T, mode string) {
		for _, tt := range tests {
			d, err := modes[mode](t, tt.p).Describe(context.Background())
			if tt.want == "" {
				if err != nil || len(d.Queues) != 1 || d.Queues[0].BatchMax != 5 || d.Queues[0].BatchWait != time.Second {
					t.Errorf("%s: Describe = %+v, %v", tt.name, d, err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
			}
		}
	})
}

// TestBatchSubprocess drives a batched queue of a plugin in a child process,
// started as the host starts it.
func TestBatchSubprocess(t *testing.T) {
	sp := sdktest.StartSubprocess(t, "batchtest")
	if q := sp.Descriptor.Queues; len(q) != 1 || q[0].BatchMax != 4 || q[0].BatchWait != 100*time.Millisecond {
		t.Fatalf("queues = %+v", q)
	}
	// "slow" holds its batch for 200 ms: the others arrive meanwhile and
	// make batches of up to 4.
	bodies := []string{"slow", "1", "2", "drop", "4", "5", "6", "7", "8"}
	var chs []chan error
	for _, b := range bodies {
		chs = append(chs, deliverAsync(t, sp.Client, "wb", b))
	}
	for i, ch := range chs {
		err := answer(t, ch)
		if (bodies[i] == "drop") != errors.Is(err, sdk.ErrDrop) || (bodies[i] != "drop" && err != nil) {
			t.Errorf("delivery %s: err = %v", bodies[i], err)
		}
	}
	var got []string
	var sizes []int
	for _, e := range sp.Host.Emits() {
		var batch []string
		if err := e.Arg(1, &batch); err != nil {
			t.Fatal(err)
		}
		got = append(got, batch...)
		sizes = append(sizes, len(batch))
	}
	if fmt.Sprint(got) != fmt.Sprint(bodies) {
		t.Errorf("plugin saw %v, want %v", got, bodies)
	}
	if slices.Max(sizes) > 4 || len(sizes) >= len(bodies) {
		t.Errorf("batch sizes = %v, want at most 4 each and some batching", sizes)
	}
}
