package bus

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

func TestTopicMatch(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"*", "a", true},
		{"*", "a.b", false},
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a", false},
		{"a.*", "a.b", true},
		{"a.#", "a", true},
		{"a.#", "a.b.c", true},
		{"#", "", true},
		{"#", "a.b.c", true},
		{"#.c", "c", true},
		{"#.c", "a.b.c", true},
		{"#.c", "a.b", false},
		{"*.b.#", "a.b", true},
		{"*.b.#", "b", false},
		{"a.#.b", "a.b", true},
		{"a.#.b", "a.x.y.b", true},
		{"a.#.#.b", "a.b", true},
		{"#.*", "", true}, // "" is one empty word
		{"*.*", "a", false},
		{"", "", true},
		{"", "a", false},
		{strings.Repeat("#.", 30) + "x", strings.Repeat("a.", 200) + "b", false}, // must not explode
	}
	for _, tc := range tests {
		if got := topicMatch(tc.pattern, tc.key); got != tc.want {
			t.Errorf("topicMatch(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}

func TestResolveURL(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.BusConfig
		want string
	}{
		{"memory", config.BusConfig{}, ""},
		{"url wins", config.BusConfig{URL: "amqps://x/y", Username: "u"}, "amqps://x/y"},
		{"defaults like the original", config.BusConfig{Username: "services/realtime", Password: "1234"}, "amqp://services%2Frealtime:1234@localhost:5672/"},
		{"escaping", config.BusConfig{Username: "a@b", Password: "p:w/@?#", Host: "rabbit", PortNum: 5673}, "amqp://a%40b:p%3Aw%2F%40%3F%23@rabbit:5673/"},
		{"no password", config.BusConfig{Username: "u", Host: "::1"}, "amqp://u@[::1]:5672/"},
	}
	for _, tc := range tests {
		if got := ResolveURL(tc.cfg); got != tc.want {
			t.Errorf("%s: ResolveURL = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := RedactURL("amqp://u:secret@h:1/"); strings.Contains(got, "secret") {
		t.Errorf("RedactURL leaks the password: %q", got)
	}
}

func TestNewSelectsMemory(t *testing.T) {
	b, err := New(context.Background(), config.BusConfig{}, "i1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Kind() != "memory" || b.Ready() != nil {
		t.Fatalf("Kind = %q, Ready = %v; want memory, nil", b.Kind(), b.Ready())
	}
	// The instance id given to New is substituted.
	if err := b.DeclareExchange(context.Background(), sdk.Exchange{Name: "e"}); err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	mustConsume(t, b, sdk.Queue{Name: "q.{instance}", Exchange: "e", Bindings: []string{"#"}}, col.handler(0, nil))
	mustPublish(t, b, "e", "k", "x")
	if got := col.waitFor(t, "x", hasBody("x")); got[0].queue != "q.i1" {
		t.Errorf("queue = %q, want q.i1", got[0].queue)
	}
}

func TestNewRabbitRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "http://x", "amqp://h:notaport/"} {
		if b, err := NewRabbit(context.Background(), u, config.BusConfig{}, "i", nil); err == nil {
			b.Close()
			t.Errorf("NewRabbit(%q) = nil error, want an error", u)
		}
	}
}

func TestMemoryQueueBound(t *testing.T) {
	b := newMemory(nil, "i", 3)
	defer b.Close()
	ctx := context.Background()
	if err := b.DeclareExchange(ctx, sdk.Exchange{Name: "e", Kind: "fanout"}); err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	// Prefetch 1 and a blocked handler: one message in flight, the rest ready.
	stop, err := b.Consume(ctx, sdk.Queue{Name: "q", Exchange: "e", Prefetch: 1}, func(ctx context.Context, d sdk.Delivery) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer close(block) // runs before stop, which waits for the handler
	for i := range 4 {
		if err := b.Publish(ctx, "e", "", []byte{byte(i)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := b.Publish(ctx, "e", "", []byte("over")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("publish over the bound: err = %v, want ErrQueueFull", err)
	}
}

func TestMemoryAutoDeleteAndDefaultExchange(t *testing.T) {
	b := newMemory(nil, "i", 10)
	defer b.Close()
	ctx := context.Background()
	col := newCollector()
	stop, err := b.Consume(ctx, sdk.Queue{Name: "direct-q", AutoDelete: true}, col.handler(0, nil))
	if err != nil {
		t.Fatal(err)
	}
	// The default exchange routes by queue name.
	mustPublish(t, b, "", "direct-q", "x")
	col.waitFor(t, "x", hasBody("x"))
	stop()
	b.mu.Lock()
	_, exists := b.queues["direct-q"]
	b.mu.Unlock()
	if exists {
		t.Error("auto-delete queue survived its last consumer")
	}
	if err := b.Publish(ctx, "", "direct-q", []byte("y")); err != nil {
		t.Errorf("unroutable publish on the default exchange: %v, want nil (dropped)", err)
	}
}

func TestMemoryMetrics(t *testing.T) {
	b := newMemory(nil, "i", 10)
	defer b.Close()
	reg := prometheus.NewRegistry()
	if err := b.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustDeclare(t, b, sdk.Exchange{Name: "e"})
	_ = b.Publish(ctx, "missing", "k", nil)
	col := newCollector()
	mustConsume(t, b, sdk.Queue{Name: "q", Exchange: "e", Bindings: []string{"#"}}, col.handler(0, nil))
	mustPublish(t, b, "e", "k", "x")
	col.waitFor(t, "x", hasBody("x"))
	// The ack is counted after the handler returns; Close waits for it.
	b.Close()
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"realtime_bus_publishes_total", map[string]string{"result": "ok"}, 1},
		{"realtime_bus_publishes_total", map[string]string{"result": "no_exchange"}, 1},
		{"realtime_bus_deliveries_total", map[string]string{"queue": "q", "result": "ack"}, 1},
		{"realtime_bus_connection_up", map[string]string{"role": "pub"}, 1},
		{"realtime_bus_publish_confirm_seconds", nil, 1},
	}
	for _, tc := range tests {
		if got := gather(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// gather returns the value (histograms: the sample count) of the series of
// name whose labels include labels.
func gather(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}
