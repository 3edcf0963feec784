package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"

	"github.com/clowdr/realtime/internal/sioclient"
)

// runConnect ramps cfg.Connections authenticated sockets (each entering one
// of cfg.Pages pages), holds them for cfg.Duration and measures the
// server's memory per socket.
func runConnect(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{Scenario: ScenarioConnect}
	users := make([]string, cfg.Users)
	for i := range users {
		users[i] = "bench-conn-" + strconv.Itoa(i)
	}
	toks, err := presignTokens(ctx, cfg.Token, users, cfg.Progress)
	if err != nil {
		return nil, err
	}

	before, err := snapshotMemory(ctx, cfg.URL, cfg.ServerPID)
	if err != nil {
		res.note("server memory not measured: %v", err)
	}
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	d := &dialer{cfg: cfg}
	tokens := newTokenCache(cfg.Token)
	tokens.put(toks)
	d.cfg.Token = tokens.get
	clients, elapsed, err := d.dialAll(ctx, cfg.Connections, cfg.Rate, "connect", func(i int) (string, sioclient.Options) {
		return users[i%len(users)], sioclient.Options{}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(clients)
	ok := int64(countLive(clients))
	res.ConnectErrors = int(d.errors.Load())
	res.ConnectsPerSec = perSec(ok, elapsed)
	lat := d.hist.Summary()
	res.Connect = &lat
	res.Duration = Dur(elapsed)
	if e := d.err(); e != nil {
		res.note("last connect error: %v", e)
	}

	if cfg.Pages > 0 {
		var sendErrs int
		for i, c := range clients {
			if c == nil {
				continue
			}
			if err := c.Emit("enterPage", pagePath(cfg.Conference, i%cfg.Pages)); err != nil {
				sendErrs++
			}
		}
		if sendErrs > 0 {
			res.note("%d enterPage emits failed", sendErrs)
		}
	}

	fmt.Fprintf(cfg.Progress, "bench: connect: %d sockets up (%.0f connects/s); holding %s\n", ok, res.ConnectsPerSec, cfg.Duration)
	if !sleepCtx(ctx, cfg.Duration) {
		return nil, ctx.Err()
	}
	res.Connections = countLive(clients)
	if res.Connections < int(ok) {
		res.note("%d sockets dropped while idle", int(ok)-res.Connections)
	}
	after, aerr := snapshotMemory(ctx, cfg.URL, cfg.ServerPID)
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if err == nil && aerr == nil && res.Connections > 0 {
		n := float64(res.Connections)
		res.Memory = &Memory{
			Source:            after.source,
			RSSBefore:         before.rss,
			RSSAfter:          after.rss,
			RSSPerConn:        float64(after.rss-before.rss) / n,
			HeapBefore:        before.heapInuse,
			HeapAfter:         after.heapInuse,
			PluginRSSAfter:    after.pluginRSS,
			ClientHeapPerConn: float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse)) / n,
		}
		if after.goroutines > 0 {
			res.Memory.GoroutinesPer = (after.goroutines - before.goroutines) / n
		}
	} else if aerr != nil {
		res.note("server memory not measured after: %v", aerr)
	}
	if cfg.Holding != nil {
		cfg.Holding()
	}
	return res, nil
}
