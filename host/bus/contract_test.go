package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

// waitLimit bounds every wait for deliveries; it is a hang guard, not a
// performance assertion.
const waitLimit = 20 * time.Second

func uniq(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "." + hex.EncodeToString(b[:])
}

type rec struct {
	key, body   string
	redelivered bool
	consumer    int
	queue       string
}

// collector records deliveries and lets tests wait for a condition.
type collector struct {
	mu     sync.Mutex
	got    []rec
	signal chan struct{}
}

func newCollector() *collector { return &collector{signal: make(chan struct{}, 1)} }

func (c *collector) add(r rec) {
	c.mu.Lock()
	c.got = append(c.got, r)
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// handler returns a Handler that records deliveries as consumer id and then
// returns what decide says (nil decide = ack).
func (c *collector) handler(id int, decide func(sdk.Delivery) error) Handler {
	return func(_ context.Context, d sdk.Delivery) error {
		c.add(rec{key: d.RoutingKey, body: string(d.Body), redelivered: d.Redelivered, consumer: id, queue: d.Queue})
		if decide != nil {
			return decide(d)
		}
		return nil
	}
}

func (c *collector) snapshot() []rec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func (c *collector) waitFor(t *testing.T, what string, cond func([]rec) bool) []rec {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		got := c.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-c.signal:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; got %d deliveries: %+v", what, len(got), got)
		}
	}
}

func hasBody(body string) func([]rec) bool {
	return func(rs []rec) bool {
		return slices.ContainsFunc(rs, func(r rec) bool { return r.body == body })
	}
}

func bodies(rs []rec) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.body
	}
	return out
}

func mustPublish(t *testing.T, b Bus, ex, key, body string) {
	t.Helper()
	if err := b.Publish(context.Background(), ex, key, []byte(body)); err != nil {
		t.Fatalf("Publish(%q, %q, %q): %v", ex, key, body, err)
	}
}

func mustConsume(t *testing.T, b Bus, q sdk.Queue, h Handler) func() {
	t.Helper()
	stop, err := b.Consume(context.Background(), q, h)
	if err != nil {
		t.Fatalf("Consume(%+v): %v", q, err)
	}
	t.Cleanup(stop)
	return stop
}

func mustDeclare(t *testing.T, b Bus, ex sdk.Exchange) {
	t.Helper()
	if err := b.DeclareExchange(context.Background(), ex); err != nil {
		t.Fatalf("DeclareExchange(%+v): %v", ex, err)
	}
}

// runContractTests is the one suite both backends must pass.
func runContractTests(t *testing.T, newBus func(t *testing.T) Bus) {
	t.Run("topic routing", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex, Kind: "topic"})
		keys := []string{"a", "a.b", "a.b.c", "x.b", "b", "x.y.c"}
		tests := []struct {
			pattern string
			want    []string
		}{
			{"*", []string{"a", "b"}},
			{"a.*", []string{"a.b"}},
			{"a.#", []string{"a", "a.b", "a.b.c"}},
			{"#", keys},
			{"a.b", []string{"a.b"}},
			{"*.b.#", []string{"a.b", "a.b.c", "x.b"}},
			{"#.c", []string{"a.b.c", "x.y.c"}},
			{"nothing", nil},
		}
		cols := make([]*collector, len(tests))
		for i, tc := range tests {
			cols[i] = newCollector()
			// The exact "zz.end" binding marks the end of the stream; a
			// queue matching it twice must still receive it once.
			mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{tc.pattern, "zz.end"}, AutoDelete: true}, cols[i].handler(0, nil))
		}
		for _, k := range keys {
			mustPublish(t, b, ex, k, k)
		}
		mustPublish(t, b, ex, "zz.end", "zz.end")
		for i, tc := range tests {
			got := cols[i].waitFor(t, "end marker on "+tc.pattern, hasBody("zz.end"))
			keysGot := bodies(got[:len(got)-1])
			if !slices.Equal(keysGot, tc.want) || got[len(got)-1].body != "zz.end" {
				t.Errorf("pattern %q received %q, want %q then the end marker", tc.pattern, bodies(got), tc.want)
			}
		}
	})

	t.Run("direct and fanout", func(t *testing.T) {
		b := newBus(t)
		direct, fanout := uniq("direct"), uniq("fanout")
		mustDeclare(t, b, sdk.Exchange{Name: direct, Kind: "direct"})
		mustDeclare(t, b, sdk.Exchange{Name: fanout, Kind: "fanout"})
		dc := newCollector()
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: direct, Bindings: []string{"k1", "end"}, AutoDelete: true}, dc.handler(0, nil))
		f1, f2 := newCollector(), newCollector()
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: fanout, AutoDelete: true}, f1.handler(1, nil))
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: fanout, AutoDelete: true}, f2.handler(2, nil))
		for _, k := range []string{"k1", "k2", "k1.x", "k1", "end"} {
			mustPublish(t, b, direct, k, k)
			mustPublish(t, b, fanout, k, k)
		}
		got := dc.waitFor(t, "direct end", hasBody("end"))
		if want := []string{"k1", "k1", "end"}; !slices.Equal(bodies(got), want) {
			t.Errorf("direct queue got %q, want %q", bodies(got), want)
		}
		for i, f := range []*collector{f1, f2} {
			got := f.waitFor(t, "fanout end", hasBody("end"))
			if want := []string{"k1", "k2", "k1.x", "k1", "end"}; !slices.Equal(bodies(got), want) {
				t.Errorf("fanout queue %d got %q, want %q", i+1, bodies(got), want)
			}
		}
	})

	t.Run("competing consumers share a queue", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		q := sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"*"}, Prefetch: 1, AutoDelete: true}
		col := newCollector()
		slow := func(sdk.Delivery) error { runtime.Gosched(); return nil }
		mustConsume(t, b, q, col.handler(1, slow))
		mustConsume(t, b, q, col.handler(2, slow))
		const n = 40
		for i := range n {
			mustPublish(t, b, ex, "k", strconv.Itoa(i))
		}
		got := col.waitFor(t, "all messages", func(rs []rec) bool { return len(rs) >= n })
		seen := map[string]bool{}
		per := map[int]int{}
		for _, r := range got {
			if seen[r.body] {
				t.Errorf("message %s delivered twice", r.body)
			}
			seen[r.body] = true
			per[r.consumer]++
		}
		if per[1] == 0 || per[2] == 0 {
			t.Errorf("deliveries per consumer = %v, want both consumers used", per)
		}
	})

	t.Run("ack nack requeue drop and redelivered flag", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		col := newCollector()
		decide := func(d sdk.Delivery) error {
			switch string(d.Body) {
			case "fail-once":
				if !d.Redelivered {
					return errors.New("transient")
				}
			case "drop":
				return fmt.Errorf("invalid payload: %w", sdk.ErrDrop)
			case "panic":
				panic("handler bug")
			}
			return nil
		}
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"#"}, Prefetch: 1, AutoDelete: true}, col.handler(0, decide))
		for _, body := range []string{"fail-once", "drop", "panic", "ok", "end"} {
			mustPublish(t, b, ex, "k", body)
		}
		got := col.waitFor(t, "end", hasBody("end"))
		type seen struct {
			body        string
			redelivered bool
		}
		var gotS []seen
		for _, r := range got {
			gotS = append(gotS, seen{r.body, r.redelivered})
		}
		want := []seen{{"fail-once", false}, {"fail-once", true}, {"drop", false}, {"panic", false}, {"ok", false}, {"end", false}}
		if !slices.Equal(gotS, want) {
			t.Errorf("deliveries = %+v, want %+v", gotS, want)
		}
	})

	t.Run("async consumer", func(t *testing.T) {
		// ConsumeAsync starts deliveries in queue order without waiting for
		// settles, up to the prefetch; each settle acks, requeues or drops
		// its own delivery.
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		const prefetch = 4
		var mu sync.Mutex
		var started []string
		var settles []func(error)
		signal := make(chan struct{}, 1)
		stop, err := b.ConsumeAsync(context.Background(), sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"#"}, Prefetch: prefetch, AutoDelete: true},
			func(_ context.Context, d sdk.Delivery, settle func(error)) {
				mu.Lock()
				label := string(d.Body)
				if d.Redelivered {
					label += "(again)"
				}
				started = append(started, label)
				settles = append(settles, settle)
				mu.Unlock()
				select {
				case signal <- struct{}{}:
				default:
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		waitStarted := func(n int) []string {
			t.Helper()
			deadline := time.After(waitLimit)
			for {
				mu.Lock()
				got := slices.Clone(started)
				mu.Unlock()
				if len(got) >= n {
					return got
				}
				select {
				case <-signal:
				case <-deadline:
					t.Fatalf("timed out waiting for %d started deliveries; got %v", n, got)
				}
			}
		}
		for _, body := range []string{"requeue", "drop", "ack", "ack2", "late"} {
			mustPublish(t, b, ex, "k", body)
		}
		// Nothing settled: exactly the prefetch is in flight, in order.
		got := waitStarted(prefetch)
		time.Sleep(100 * time.Millisecond) // a fifth start would be a bug
		mu.Lock()
		got = slices.Clone(started)
		first := slices.Clone(settles)
		mu.Unlock()
		if want := []string{"requeue", "drop", "ack", "ack2"}; !slices.Equal(got, want) {
			t.Fatalf("started before any settle = %v, want %v", got, want)
		}
		// Settle out of order, from other goroutines.
		var wg sync.WaitGroup
		for i, err := range []error{errors.New("transient"), fmt.Errorf("bad: %w", sdk.ErrDrop), nil, nil} {
			wg.Add(1)
			go func() { defer wg.Done(); first[i](err) }()
		}
		wg.Wait()
		got = waitStarted(6)
		mu.Lock()
		for _, settle := range settles[prefetch:] {
			settle(nil)
		}
		mu.Unlock()
		slices.Sort(got[prefetch:])
		if want := []string{"late", "requeue(again)"}; !slices.Equal(got[prefetch:], want) {
			t.Errorf("after the settles started %v, want %v (the requeued one back, the dropped one not)", got[prefetch:], want)
		}
		time.Sleep(100 * time.Millisecond)
		if mu.Lock(); len(started) != 6 {
			t.Errorf("deliveries started = %v, want 6", started)
		}
		mu.Unlock()
	})

	t.Run("per-queue order", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		col := newCollector()
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"*"}, AutoDelete: true}, col.handler(0, nil))
		const n = 300
		for i := range n {
			mustPublish(t, b, ex, "chat-"+strconv.Itoa(i%3), strconv.Itoa(i))
		}
		got := col.waitFor(t, "all messages", func(rs []rec) bool { return len(rs) >= n })
		for i, r := range got {
			if r.body != strconv.Itoa(i) {
				t.Fatalf("delivery %d has body %s: out of order (%q)", i, r.body, bodies(got))
			}
		}
	})

	t.Run("publish to undeclared exchange fails", func(t *testing.T) {
		b := newBus(t)
		err := b.Publish(context.Background(), uniq("missing"), "k", []byte("x"))
		if !errors.Is(err, ErrNoExchange) {
			t.Fatalf("Publish to a missing exchange: err = %v, want ErrNoExchange", err)
		}
		// The bus still works afterwards.
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		col := newCollector()
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"#"}, AutoDelete: true}, col.handler(0, nil))
		mustPublish(t, b, ex, "k", "after")
		col.waitFor(t, "after", hasBody("after"))
	})

	t.Run("unrouted publish is confirmed and dropped", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		mustPublish(t, b, ex, "nobody.listens", "lost")
		col := newCollector()
		mustConsume(t, b, sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"#"}, AutoDelete: true}, col.handler(0, nil))
		mustPublish(t, b, ex, "k", "end")
		got := col.waitFor(t, "end", hasBody("end"))
		if want := []string{"end"}; !slices.Equal(bodies(got), want) {
			t.Errorf("got %q, want %q (a queue bound after publish must not see earlier messages)", bodies(got), want)
		}
	})

	t.Run("declaration errors", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex, Kind: "topic"})
		mustDeclare(t, b, sdk.Exchange{Name: ex, Kind: "topic"}) // idempotent
		tests := []struct {
			name string
			err  error
			run  func() error
		}{
			{"other kind", ErrInequivalent, func() error {
				return b.DeclareExchange(context.Background(), sdk.Exchange{Name: ex, Kind: "fanout"})
			}},
			{"bad kind", ErrInvalid, func() error {
				return b.DeclareExchange(context.Background(), sdk.Exchange{Name: uniq("x"), Kind: "headers"})
			}},
			{"empty exchange name", ErrInvalid, func() error { return b.DeclareExchange(context.Background(), sdk.Exchange{}) }},
			{"empty queue name", ErrInvalid, func() error {
				_, err := b.Consume(context.Background(), sdk.Queue{Exchange: ex}, func(context.Context, sdk.Delivery) error { return nil })
				return err
			}},
			{"bindings without exchange", ErrInvalid, func() error {
				_, err := b.Consume(context.Background(), sdk.Queue{Name: uniq("q"), Bindings: []string{"#"}}, func(context.Context, sdk.Delivery) error { return nil })
				return err
			}},
			{"prefetch too large", ErrInvalid, func() error {
				_, err := b.Consume(context.Background(), sdk.Queue{Name: uniq("q"), Prefetch: 70000}, func(context.Context, sdk.Delivery) error { return nil })
				return err
			}},
			{"bind to missing exchange", ErrNoExchange, func() error {
				_, err := b.Consume(context.Background(), sdk.Queue{Name: uniq("q"), Exchange: uniq("missing"), AutoDelete: true}, func(context.Context, sdk.Delivery) error { return nil })
				return err
			}},
		}
		for _, tc := range tests {
			if err := tc.run(); !errors.Is(err, tc.err) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
			}
		}
	})

	t.Run("instance placeholder", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		col := newCollector()
		mustConsume(t, b, sdk.Queue{Name: uniq("q") + ".{instance}", Exchange: ex, Bindings: []string{"#"}, AutoDelete: true}, col.handler(0, nil))
		mustPublish(t, b, ex, "k", "x")
		got := col.waitFor(t, "x", hasBody("x"))
		if q := got[0].queue; strings.Contains(q, "{instance}") || strings.HasSuffix(q, ".") {
			t.Errorf("Delivery.Queue = %q, want the placeholder replaced by the instance id", q)
		}
	})

	t.Run("stop waits for the handler and returns prefetched messages", func(t *testing.T) {
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		q := sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"#"}}
		started, release := make(chan struct{}), make(chan struct{})
		var finished atomic.Bool
		var once sync.Once
		stop := mustConsume(t, b, q, func(_ context.Context, d sdk.Delivery) error {
			once.Do(func() { close(started) })
			if string(d.Body) != "m0" {
				// Never ack the others here: stop may not have begun yet.
				return errors.New("not this consumer")
			}
			<-release
			finished.Store(true)
			return nil
		})
		for i := range 3 {
			mustPublish(t, b, ex, "k", "m"+strconv.Itoa(i))
		}
		select {
		case <-started:
		case <-time.After(waitLimit):
			t.Fatal("handler never started")
		}
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		close(release)
		<-stopped
		if !finished.Load() {
			t.Fatal("stop returned before the in-flight handler finished")
		}
		col := newCollector()
		mustConsume(t, b, q, col.handler(0, nil))
		got := col.waitFor(t, "the other messages", func(rs []rec) bool { return hasBody("m1")(rs) && hasBody("m2")(rs) })
		if hasBody("m0")(got) {
			t.Errorf("acked message m0 was delivered again: %+v", got)
		}
	})

	t.Run("close is clean", func(t *testing.T) {
		base := runtime.NumGoroutine()
		b := newBus(t)
		ex := uniq("topic")
		mustDeclare(t, b, sdk.Exchange{Name: ex})
		col := newCollector()
		stop, err := b.Consume(context.Background(), sdk.Queue{Name: uniq("q"), Exchange: ex, Bindings: []string{"#"}, AutoDelete: true}, col.handler(0, nil))
		if err != nil {
			t.Fatal(err)
		}
		mustPublish(t, b, ex, "k", "x")
		col.waitFor(t, "x", hasBody("x"))
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		stop() // after Close: must not hang
		if err := b.Publish(context.Background(), ex, "k", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after Close: err = %v, want ErrClosed", err)
		}
		if _, err := b.Consume(context.Background(), sdk.Queue{Name: uniq("q")}, col.handler(0, nil)); !errors.Is(err, ErrClosed) {
			t.Errorf("Consume after Close: err = %v, want ErrClosed", err)
		}
		if err := b.Ready(); err == nil {
			t.Error("Ready after Close = nil, want an error")
		}
		waitGoroutines(t, base)
	})
}

// waitGoroutines waits until the goroutine count falls back to base.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after Close, %d before\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMemoryContract(t *testing.T) {
	runContractTests(t, func(t *testing.T) Bus {
		b := NewMemory(nil)
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}
