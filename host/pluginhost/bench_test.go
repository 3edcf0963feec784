package pluginhost

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func reportLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkEventRoundTrip measures one event at a time through the plugin
// host: "ack" is event in -> Done (ack) back; "emit" is event in -> the emit
// the handler made reaches the host's Services.Emit.
func BenchmarkEventRoundTrip(b *testing.B) {
	for _, mode := range []string{ModeInProcess, ModeSubprocess} {
		for _, kind := range []string{"ack", "emit"} {
			b.Run(mode+"/"+kind, func(b *testing.B) {
				svc := newFakeServices(b)
				svc.emitCh = make(chan emitRec, 16)
				m := startManager(b, map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: mode}}, svc, nil)
				s := sdktest.Socket("bench", "u")
				m.Connect(s)
				event := "ptest.pid"
				if kind == "emit" {
					event = "ptest.echo"
				}
				args := []json.RawMessage{json.RawMessage(`"payload-of-some-size-0123456789"`)}
				done := make(chan error, 1)
				cb := func(_ []json.RawMessage, err error) { done <- err }
				lat := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					m.Event(s, event, args, cb)
					if kind == "emit" {
						<-svc.emitCh
						lat = append(lat, time.Since(t0))
						if err := <-done; err != nil {
							b.Fatal(err)
						}
					} else {
						if err := <-done; err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
					}
				}
				b.StopTimer()
				reportLatencies(b, lat)
			})
		}
	}
}

// BenchmarkEventThroughput measures events/s through one plugin with many
// sockets sending concurrently (each waits for its ack before its next
// event, as a client with acks would).
func BenchmarkEventThroughput(b *testing.B) {
	for _, mode := range []string{ModeInProcess, ModeSubprocess} {
		b.Run(mode, func(b *testing.B) {
			svc := newFakeServices(b)
			m := startManager(b, map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: mode}}, svc, nil)
			var next atomic.Int64
			args := []json.RawMessage{json.RawMessage(`"payload-of-some-size-0123456789"`)}
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				s := sdk.Socket{ID: fmt.Sprintf("sock-%d", next.Add(1)), UserID: "u"}
				m.Connect(s)
				done := make(chan error, 1)
				cb := func(_ []json.RawMessage, err error) { done <- err }
				for pb.Next() {
					m.Event(s, "ptest.pid", args, cb)
					if err := <-done; err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
