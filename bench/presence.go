package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

const churnPrefix = "bench-churn-"

// churner is one socket that alternately enters and leaves pages.
type churner struct {
	c       *sioclient.Client
	page    int // current page, -1 when on none (scheduler goroutine only)
	enters  int // (scheduler goroutine only)
	enterAt atomic.Int64
	leaveAt atomic.Int64
}

// runPresence: cfg.Pages pages with cfg.Observers observers each; cfg.Connections
// churning users alternately enter and leave pages at cfg.Rate events/s in
// total for cfg.Duration. Latency is enterPage -> "entered" at each observer
// of the page (and leavePage -> "left").
func runPresence(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{Scenario: ScenarioPresence}
	nObs := cfg.Pages * cfg.Observers
	churners := make([]*churner, cfg.Connections)
	for i := range churners {
		churners[i] = &churner{page: -1}
	}
	var enterHist, leaveHist Histogram
	var received, stray, snapshots atomic.Int64
	measuring := atomic.Bool{}

	onObserverEvent := func(name string, args []json.RawMessage) {
		switch name {
		case "presences":
			snapshots.Add(1)
			return
		case "entered", "left":
		default:
			return
		}
		now := time.Now().UnixNano()
		if len(args) == 0 {
			return
		}
		var d struct {
			UserID string `json:"userId"`
		}
		if json.Unmarshal(args[0], &d) != nil {
			return
		}
		idx, err := strconv.Atoi(strings.TrimPrefix(d.UserID, churnPrefix))
		if err != nil || !strings.HasPrefix(d.UserID, churnPrefix) || idx < 0 || idx >= len(churners) {
			stray.Add(1)
			return
		}
		if !measuring.Load() {
			return
		}
		received.Add(1)
		ch := churners[idx]
		if name == "entered" {
			if t := ch.enterAt.Load(); t > 0 {
				enterHist.RecordValue(now - t)
			}
		} else if t := ch.leaveAt.Load(); t > 0 {
			leaveHist.RecordValue(now - t)
		}
	}

	d := &dialer{cfg: cfg}
	observers, _, err := d.dialAll(ctx, nObs, 0, "presence observers", func(i int) (string, sioclient.Options) {
		return "bench-obs-" + strconv.Itoa(i), sioclient.Options{OnEvent: onObserverEvent}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(observers)
	for i, c := range observers {
		if c == nil {
			continue
		}
		if err := c.Emit("observePage", pagePath(cfg.Conference, i%cfg.Pages)); err != nil {
			return nil, fmt.Errorf("bench: observePage: %w", err)
		}
	}
	live := countLive(observers)
	if !waitFor(ctx, 30*time.Second, func() bool { return snapshots.Load() >= int64(live) }) {
		return nil, fmt.Errorf("bench: only %d of %d observers got their presences snapshot (is the presence plugin enabled?)", snapshots.Load(), live)
	}

	cd := &dialer{cfg: cfg}
	cclients, _, err := cd.dialAll(ctx, len(churners), 0, "presence churners", func(i int) (string, sioclient.Options) {
		return churnPrefix + strconv.Itoa(i), sioclient.Options{}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(cclients)
	for i, c := range cclients {
		churners[i].c = c
	}
	res.ConnectErrors = int(d.errors.Load() + cd.errors.Load())
	res.Connections = countLive(observers) + countLive(cclients)
	if e := cd.err(); e != nil {
		res.note("last connect error: %v", e)
	}

	// observers per page actually connected
	obsPerPage := make([]int64, cfg.Pages)
	for i, c := range observers {
		if c != nil && c.Connected() {
			obsPerPage[i%cfg.Pages]++
		}
	}

	var sent, expected, sendErrs atomic.Int64
	measuring.Store(true)
	start := time.Now()
	stop := progress(cfg.Progress, "presence", func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("%d events sent (%.0f/s), %d deliveries, enter p99 so far %s", sent.Load(), float64(sent.Load())/el, received.Load(), Dur(enterHist.Percentile(99)))
	})
	p := newPacer(cfg.Rate)
	total := int(cfg.Rate * cfg.Duration.Seconds())
	for k := 0; k < total; k++ {
		if !p.wait(ctx, k) {
			break
		}
		ch := churners[k%len(churners)]
		if ch.c == nil {
			continue
		}
		var ev string
		var page int
		if ch.page < 0 {
			page = (k/len(churners) + k) % cfg.Pages
			ev = "enterPage"
			ch.enterAt.Store(time.Now().UnixNano())
		} else {
			page = ch.page
			ev = "leavePage"
			ch.leaveAt.Store(time.Now().UnixNano())
		}
		if err := ch.c.Emit(ev, pagePath(cfg.Conference, page)); err != nil {
			sendErrs.Add(1)
			continue
		}
		sent.Add(1)
		expected.Add(obsPerPage[page])
		if ev == "enterPage" {
			ch.page = page
		} else {
			ch.page = -1
		}
	}
	elapsed := time.Since(start)
	// Drain: wait until the deliveries stop growing (bounded).
	waitQuiet(ctx, &received, expected.Load(), 10*time.Second)
	stop()
	measuring.Store(false)

	res.Duration = Dur(elapsed)
	res.EventsPerSec = perSec(sent.Load(), elapsed)
	res.DeliveriesPerSec = perSec(received.Load(), elapsed)
	res.Drops = expected.Load() - received.Load()
	el, ll := enterHist.Summary(), leaveHist.Summary()
	res.Latency, res.LeaveLatency = &el, &ll
	if n := sendErrs.Load(); n > 0 {
		res.note("%d emits failed", n)
	}
	if n := stray.Load(); n > 0 {
		res.note("%d deltas about users outside this run (stale presence in Redis?)", n)
	}
	if res.EventsPerSec < 0.9*cfg.Rate {
		res.note("offered %.0f events/s but sent only %.0f/s: the load generator could not keep up", cfg.Rate, res.EventsPerSec)
	}
	return res, nil
}

// waitFor polls cond every 20ms until it holds (true) or d passes (false).
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 20*time.Millisecond) {
			return cond()
		}
	}
}

// quietPeriod is how long deliveries must stop growing before waitQuiet
// gives up on the missing ones (generous: a loaded box stalls for a while).
const quietPeriod = 2 * time.Second

// waitQuiet waits until n reaches want, or stops growing for quietPeriod, or
// max passes.
func waitQuiet(ctx context.Context, n *atomic.Int64, want int64, max time.Duration) {
	deadline := time.Now().Add(max)
	last, lastChange := n.Load(), time.Now()
	for time.Now().Before(deadline) {
		cur := n.Load()
		if cur >= want {
			return
		}
		if cur != last {
			last, lastChange = cur, time.Now()
		} else if time.Since(lastChange) > quietPeriod {
			return
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return
		}
	}
}
