package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

// runPlugin: cfg.Connections sockets each send "echo" with an ack in a loop
// (paced to cfg.Rate in total when set) for cfg.Duration. Latency is emit ->
// ack; the server's own view of the plugin call comes from /metrics.
func runPlugin(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{Scenario: ScenarioPlugin}
	var rateLimited atomic.Int64
	d := &dialer{cfg: cfg}
	clients, _, err := d.dialAll(ctx, cfg.Connections, 0, "plugin sockets", func(i int) (string, sioclient.Options) {
		return "bench-echo-" + strconv.Itoa(i), sioclient.Options{OnEvent: func(name string, _ []json.RawMessage) {
			if name == "server.error" {
				rateLimited.Add(1)
			}
		}}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(clients)
	var live []*sioclient.Client
	for _, c := range clients {
		if c != nil {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("bench: no socket connected: %w", d.err())
	}
	res.Connections = len(live)
	res.ConnectErrors = int(d.errors.Load())

	// Preflight: is the echo plugin there?
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = live[0].EmitWithAck(pctx, "echo", "preflight")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bench: no ack from the echo plugin (start the server with --set plugins.echo.enabled=true): %w", err)
	}

	before, merr := ScrapeMetrics(ctx, cfg.URL, "realtime_plugin_event_seconds")
	var hist Histogram
	var acked, failed atomic.Int64
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	stop := progress(cfg.Progress, "plugin", func() string {
		return fmt.Sprintf("%d acked (%.0f/s), p50 %s", acked.Load(), perSec(acked.Load(), time.Since(start)), Dur(hist.Percentile(50)))
	})
	var perWorker float64
	if cfg.Rate > 0 {
		perWorker = cfg.Rate / float64(len(live))
	}
	runCtx, runCancel := context.WithDeadline(ctx, deadline.Add(5*time.Second))
	defer runCancel()
	var wg sync.WaitGroup
	for w, c := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p *pacer
			if perWorker > 0 {
				p = newPacer(perWorker)
			}
			for k := 0; time.Now().Before(deadline); k++ {
				if p != nil && !p.wait(runCtx, k) {
					return
				}
				t0 := time.Now()
				if _, err := c.EmitWithAck(runCtx, "echo", w, k); err != nil {
					failed.Add(1)
					if runCtx.Err() != nil || !c.Connected() {
						return
					}
					continue
				}
				hist.Record(time.Since(t0))
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	res.Duration = Dur(elapsed)
	res.EventsPerSec = perSec(acked.Load(), elapsed)
	l := hist.Summary()
	res.Latency = &l
	res.Drops = failed.Load()
	if n := rateLimited.Load(); n > 0 {
		res.note("%d events were rate limited: raise socketio.events_per_second / socketio.event_burst", n)
	}
	if merr == nil {
		after, err := ScrapeMetrics(ctx, cfg.URL, "realtime_plugin_event_seconds")
		if err == nil {
			match := map[string]string{"plugin": "echo"}
			b0 := HistogramBuckets(before, "realtime_plugin_event_seconds", match)
			b1 := HistogramBuckets(after, "realtime_plugin_event_seconds", match)
			if p50, n, ok := BucketQuantile(0.50, b0, b1); ok {
				p95, _, _ := BucketQuantile(0.95, b0, b1)
				p99, _, _ := BucketQuantile(0.99, b0, b1)
				res.ServerPlugin = &Latency{
					Count: uint64(n),
					P50:   Dur(p50 * float64(time.Second)),
					P95:   Dur(p95 * float64(time.Second)),
					P99:   Dur(p99 * float64(time.Second)),
				}
			}
		}
	} else {
		res.note("server-side plugin latency not measured: %v", merr)
	}
	return res, nil
}
