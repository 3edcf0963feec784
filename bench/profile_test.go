package bench

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// The benchmarks run one scenario against an in-process host so that
// `go test -bench X -benchtime 1x -cpuprofile cpu.out ./bench` profiles the
// host (and the load generator) together. Plugins run as subprocesses (this
// test binary re-executed) unless BENCH_PLUGIN_MODE=inprocess. BENCH_REDIS
// (e.g. redis://127.0.0.1:6379/15, flushed first) uses a real Redis instead
// of the embedded one.
func benchServer(b *testing.B) *testServer {
	b.Helper()
	mode := os.Getenv("BENCH_PLUGIN_MODE")
	if mode == "" {
		mode = "subprocess"
	}
	env := []string{
		"RT_PLUGINS__PRESENCE__MODE=" + mode,
		"RT_PLUGINS__CHAT__MODE=" + mode,
		"RT_PLUGINS__ECHO__MODE=" + mode,
		`RT_PLUGINS__PRESENCE__CONFIG={"events_per_second":1000,"event_burst":1000}`,
	}
	if u := os.Getenv("BENCH_REDIS"); u != "" {
		if err := flushRedis(context.Background(), u); err != nil {
			b.Fatal(err)
		}
		env = append(env, "REDIS_URL="+u)
	}
	return startServer(b, env...)
}

func benchRun(b *testing.B, scenario string, c Config) {
	srv := benchServer(b)
	c.URL, c.Token = srv.URL, srv.Token
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	for range b.N {
		r, err := Run(ctx, scenario, c)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.ConnectsPerSec, "connects/s")
		b.ReportMetric(r.EventsPerSec, "events/s")
		b.ReportMetric(r.DeliveriesPerSec, "deliveries/s")
		if r.Latency != nil {
			b.ReportMetric(float64(time.Duration(r.Latency.P99).Microseconds()), "p99-µs")
		}
	}
}

// BenchmarkConnect writes a heap profile of the process (host and load
// generator) to $BENCH_HEAPPROFILE while the sockets are open, when set.
func BenchmarkConnect(b *testing.B) {
	c := Config{Connections: 5000, Duration: time.Second}
	if path := os.Getenv("BENCH_HEAPPROFILE"); path != "" {
		c.Holding = func() {
			f, err := os.Create(path)
			if err != nil {
				b.Error(err)
				return
			}
			defer f.Close()
			runtime.GC()
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Error(err)
			}
		}
	}
	benchRun(b, ScenarioConnect, c)
}

func BenchmarkPresence(b *testing.B) {
	benchRun(b, ScenarioPresence, Config{Rate: 1000, Duration: 10 * time.Second})
}

func BenchmarkChat(b *testing.B) {
	benchRun(b, ScenarioChat, Config{Subscribers: 1000, Rate: 100, MaxRate: 400, Duration: 5 * time.Second})
}

func BenchmarkPlugin(b *testing.B) {
	benchRun(b, ScenarioPlugin, Config{Connections: 8, Duration: 10 * time.Second})
}

func BenchmarkColdChat(b *testing.B) {
	benchRun(b, ScenarioColdChat, Config{Subscribers: 2000})
}
