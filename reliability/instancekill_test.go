package reliability

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testserver"
)

// Shortened presence timing for the multi-instance tests
// (plugins.presence.config; see plugins/presence/doc.go "Crash safety").
const (
	presenceWindow  = 3 * time.Second
	presenceRefresh = 1 * time.Second
	presenceSweep   = 500 * time.Millisecond
	// leftDelivery is the allowance for a "left" to travel from the sweeper
	// to an observer (Redis script, hub, websocket), and for a sweep tick
	// that a loaded box runs late: runs measure 3.1–3.4 s of the 3.5 s that
	// window + sweep allow, so 0.5 s left too little room on a busy CI box.
	leftDelivery = time.Second
)

// presenceArgs are the --set flags of that timing.
func presenceArgs() []string {
	return testserver.PresenceArgs(presenceWindow, presenceRefresh, presenceSweep)
}

// TestInstanceKill SIGKILLs one of two instances sharing a Redis and checks
// that observers on the survivor see every user of the dead instance "left"
// within the presence bound (window + sweep_interval after the last refresh,
// so at most that long after the kill), that users on the survivor are
// untouched, and that the dead instance's plugin processes exit by
// themselves.
func TestInstanceKill(t *testing.T) {
	t.Parallel()
	redis := testserver.StartRedis(t)
	opts := func(name string) serverOpts {
		return serverOpts{name: name, plugins: []string{"presence"}, env: map[string]string{"REDIS_URL": redis.URL()}, args: presenceArgs()}
	}
	a := launch(t, opts("instance-a"))
	b := launch(t, opts("instance-b"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const page = "/conference/demo/room/instance-kill"
	const onA, onB = 20, 5

	obs, obsRec := dial(ctx, t, b.URL, "observer")
	defer obs.Close()
	if _, err := snapshot(ctx, obs, obsRec, page); err != nil {
		t.Fatal(err)
	}
	var aUsers, bUsers []string
	enter := func(url string, n int, into *[]string) {
		for i := 0; i < n; i++ {
			id := newUUID()
			c, _ := dial(ctx, t, url, id)
			t.Cleanup(func() { c.Close() })
			if _, err := c.EmitWithAck(ctx, "enterPage", page); err != nil {
				t.Fatal(err)
			}
			*into = append(*into, id)
		}
	}
	enter(a.URL, onA, &aUsers)
	enter(b.URL, onB, &bUsers)
	all := append(append([]string(nil), aUsers...), bUsers...)
	if !within(10*time.Second, func() bool {
		got, err := snapshot(ctx, obs, obsRec, page)
		ok, _ := sameSet(got, all)
		return err == nil && ok
	}) {
		got, _ := snapshot(ctx, obs, obsRec, page)
		_, diff := sameSet(got, all)
		t.Fatalf("before the kill: %s", diff)
	}
	leftBefore := len(obsRec.all("left"))

	// The plugin's documented bound is window + sweep_interval after the
	// last refresh, which came before the kill; leftDelivery allows for the
	// emit to reach the observer through the hub.
	bound := presenceWindow + presenceSweep + leftDelivery
	killedAt := time.Now()
	a.kill(t)

	// Every user of A must be reported left by the deadline.
	wctx, wcancel := context.WithDeadline(ctx, killedAt.Add(bound))
	defer wcancel()
	leftAt := map[string]time.Duration{}
	var mu sync.Mutex
	done := obsRec.waitFor(wctx, func(evs []event) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs[leftBefore:] {
			if e.name != "left" || len(e.args) == 0 {
				continue
			}
			if _, u := presenceDelta(e.args[0]); u != "" {
				if _, seen := leftAt[u]; !seen {
					leftAt[u] = e.at.Sub(killedAt)
				}
			}
		}
		for _, u := range aUsers {
			if _, ok := leftAt[u]; !ok {
				return false
			}
		}
		return true
	})
	mu.Lock()
	var slowest time.Duration
	var missing []string
	for _, u := range aUsers {
		d, ok := leftAt[u]
		if !ok {
			missing = append(missing, u)
		}
		slowest = max(slowest, d)
	}
	mu.Unlock()
	if !done {
		t.Errorf("%d of %d users of the killed instance not reported left within %v (window %v + sweep %v + delivery %v): %s",
			len(missing), onA, bound, presenceWindow, presenceSweep, leftDelivery, head(missing))
	} else {
		t.Logf("all %d users of the killed instance reported left; the last %v after SIGKILL (bound %v)", onA, slowest.Round(time.Millisecond), bound)
	}
	// Users of B were never reported left, and the list is exactly them.
	time.Sleep(presenceRefresh) // a wrong "left" for B would come from the same sweeps
	for _, e := range obsRec.all("left") {
		_, u := presenceDelta(e.args[0])
		for _, bu := range bUsers {
			if u == bu {
				t.Errorf("user %s of the surviving instance was reported left", u)
			}
		}
	}
	got, err := snapshot(ctx, obs, obsRec, page)
	if err != nil {
		t.Fatal(err)
	}
	if ok, diff := sameSet(got, bUsers); !ok {
		t.Errorf("after the kill: %s", diff)
	}
	// A's plugin processes exit by themselves (checked again by stop).
	if leftovers := testserver.WaitProcessGroupGone(a.cmd, 5*time.Second); leftovers {
		t.Errorf("plugin processes of the killed instance still run 5s after it died")
	}
}
