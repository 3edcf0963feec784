package directory

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
)

// gather returns every sample of reg as name{label=value,...} -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				got[name] = m.GetCounter().GetValue()
			}
		}
	}
	return got
}

func TestHasuraMetrics(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Hour)
	reg := prometheus.NewRegistry()
	if err := h.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if got := gather(t, reg); got["realtime_directory_up"] != 1 {
		t.Fatalf("up before any query = %v, want 1", got["realtime_directory_up"])
	}

	// A miss (one request), then a hit.
	for range 2 {
		if _, err := h.ConferenceSlugs(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	got := gather(t, reg)
	for name, want := range map[string]float64{
		"realtime_directory_cache_total{cache=ConferenceSlugs}{result=miss}":            1,
		"realtime_directory_cache_total{cache=ConferenceSlugs}{result=hit}":             1,
		"realtime_directory_requests_total{query=GetUserConferenceSlugs}{result=ok}":    1,
		"realtime_directory_requests_total{query=GetUserConferenceSlugs}{result=error}": 0,
		"realtime_directory_up": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v (%v)", name, got[name], want, got)
		}
	}

	// Hasura fails: up 0, an error counted; it recovers: up 1.
	f.mu.Lock()
	f.fail = http.StatusInternalServerError
	f.mu.Unlock()
	if _, err := h.ConferenceSlugs(ctx, "bob"); err == nil {
		t.Fatal("want an error while Hasura fails")
	}
	got = gather(t, reg)
	if got["realtime_directory_up"] != 0 || got["realtime_directory_requests_total{query=GetUserConferenceSlugs}{result=error}"] != 1 ||
		got["realtime_directory_cache_total{cache=ConferenceSlugs}{result=miss}"] != 2 {
		t.Fatalf("while failing: %v", got)
	}
	f.mu.Lock()
	f.fail = 0
	f.mu.Unlock()
	if _, err := h.ConferenceSlugs(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := gather(t, reg); got["realtime_directory_up"] != 1 {
		t.Fatalf("up after recovery = %v, want 1", got["realtime_directory_up"])
	}

	if err := h.RegisterMetrics(reg); err == nil {
		t.Error("registering twice: want an error")
	}
}

func TestStaticMetricsAndReady(t *testing.T) {
	d := NewStatic(config.DirectoryConfig{})
	reg := prometheus.NewRegistry()
	if err := d.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if got := gather(t, reg); got["realtime_directory_up"] != 1 {
		t.Fatalf("static up = %v, want 1 (%v)", got["realtime_directory_up"], got)
	}
	if err := d.Ready(context.Background()); err != nil {
		t.Fatalf("static Ready = %v", err)
	}
}
