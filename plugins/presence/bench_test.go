package presence

import (
	"context"
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
