package presence

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// BenchmarkEnterExit measures one enterPage plus one leavePage (two Lua
// scripts, one "entered" and one "left") against the machine's Redis.
func BenchmarkEnterExit(b *testing.B) {
	rdb := realRedisClient(b)
	sh := sdktest.NewHost()
	b.Cleanup(sh.Close)
	h := &testHost{Host: sh, store: sdktest.GoRedisStore{RDB: rdb}}
	p := startPlugin(b, h, nil, map[string]any{
		"window": "45s", "refresh_interval": "15s", "sweep_interval": "1h",
		"events_per_second": 1e9, "event_burst": 1 << 30, // measure Redis, not the limiter
	})
	s := sdktest.Socket("s-bench", "u-bench", "c1")
	connect(b, p, s)
	ctx := context.Background()
	enter := sdk.Event{Socket: s, Name: EvEnterPage, Args: sdktest.Args(b, roomPath)}
	leave := sdk.Event{Socket: s, Name: EvLeavePage, Args: sdktest.Args(b, roomPath)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.OnEvent(ctx, enter); err != nil {
			b.Fatal(err)
		}
		if _, err := p.OnEvent(ctx, leave); err != nil {
			b.Fatal(err)
		}
		if n := len(sh.Emits()); n != 2 {
			b.Fatalf("%d emits per iteration, want entered and left", n)
		}
		sh.Reset() // keep the recorded emits bounded
	}
}

// BenchmarkRefreshAll measures one refresh round over 1,000 sockets (each on
// one page) against the machine's Redis; "evals/op" is the script round
// trips the round made.
func BenchmarkRefreshAll(b *testing.B) {
	rdb := realRedisClient(b)
	sh := sdktest.NewHost()
	b.Cleanup(sh.Close)
	cs := &countingEvals{Store: sdktest.GoRedisStore{RDB: rdb}}
	h := &testHost{Host: sh, store: cs}
	p := startPlugin(b, h, nil, nil)
	for i := range 1000 {
		s := sdktest.Socket(fmt.Sprintf("s-%d", i), fmt.Sprintf("u-%d", i), "c1")
		connect(b, p, s)
		event(b, p, s, EvEnterPage, fmt.Sprintf("/conference/c1/room/%d", i%50))
	}
	ctx := context.Background()
	cs.n.Store(0)
	b.ReportAllocs()
	for b.Loop() {
		p.refreshAll(ctx)
	}
	b.ReportMetric(float64(cs.n.Load())/float64(b.N), "evals/op")
}

// countingEvals counts every script run.
type countingEvals struct {
	sdk.Store
	n atomic.Int64
}

func (s *countingEvals) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	s.n.Add(1)
	return s.Store.Eval(ctx, script, keys, args...)
}
