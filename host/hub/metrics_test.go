package hub

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/clowdr/realtime/plugins/sdk"
)

// emitSnapshot is what a scrape shows of the emit metrics: realtime_emits_total
// by target label and realtime_emit_seconds' sample count.
type emitSnapshot struct {
	emits   map[string]float64
	samples uint64
}

// gatherEmitMetrics reads the emit metrics through a registry, as /metrics
// does, so a renamed metric or label fails the test too.
func gatherEmitMetrics(t *testing.T, g prometheus.Gatherer) emitSnapshot {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	s := emitSnapshot{emits: map[string]float64{}}
	var sawHistogram bool
	for _, mf := range mfs {
		switch mf.GetName() {
		case "realtime_emits_total":
			if mf.GetType() != dto.MetricType_COUNTER {
				t.Fatalf("realtime_emits_total is a %v, want a counter", mf.GetType())
			}
			for _, m := range mf.GetMetric() {
				s.emits[emitLabel(t, m, "target")] = m.GetCounter().GetValue()
			}
		case "realtime_emit_seconds":
			if mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
				t.Fatalf("realtime_emit_seconds: type %v with %d series, want one histogram", mf.GetType(), len(mf.GetMetric()))
			}
			sawHistogram = true
			s.samples = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if !sawHistogram {
		t.Fatal("realtime_emit_seconds is not registered")
	}
	return s
}

func emitLabel(t *testing.T, m *dto.Metric, name string) string {
	t.Helper()
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	t.Fatalf("series without a %q label: %v", name, m.GetLabel())
	return ""
}

// TestEmitMetrics emits to a socket, a room and a user and checks that each
// emit counts once under its target label and adds one emit-time sample.
func TestEmitMetrics(t *testing.T) {
	ctx := context.Background()
	h := New("inst0001", encode, nil, nil)
	reg := prometheus.NewRegistry()
	if err := h.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	c := add(t, h, "inst0001aaaa", "alice")
	must(t, h.Join(ctx, "inst0001aaaa", "room1"))
	arg := []json.RawMessage{json.RawMessage(`1`)}

	steps := []struct {
		label string
		to    sdk.Target
	}{
		{"socket", sdk.SocketTarget("inst0001aaaa")},
		{"room", sdk.RoomTarget("room1")},
		{"user", sdk.UserTarget("alice")},
	}
	before := gatherEmitMetrics(t, reg)
	for i, st := range steps {
		must(t, h.Emit(ctx, st.to, "e", arg))
		after := gatherEmitMetrics(t, reg)
		for _, other := range targetLabels {
			want := before.emits[other]
			if other == st.label {
				want++
			}
			if got := after.emits[other]; got != want {
				t.Errorf("after the %s emit: realtime_emits_total{target=%q} = %v, want %v", st.label, other, got, want)
			}
		}
		if after.samples != before.samples+1 {
			t.Errorf("after the %s emit: realtime_emit_seconds count = %d, want %d", st.label, after.samples, before.samples+1)
		}
		// The emit was delivered, so the metrics describe a real emit.
		if n := len(c.got()); n != i+1 {
			t.Fatalf("after the %s emit the socket has %d frames, want %d", st.label, n, i+1)
		}
		before = after
	}
}
