package presence

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// countingStore counts the refresh scripts run.
type countingStore struct {
	sdk.Store
	refreshes atomic.Int64
}

func (s *countingStore) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	if script == refreshScript {
		s.refreshes.Add(1)
	}
	return s.Store.Eval(ctx, script, keys, args...)
}

// scBatchedRefresh: one refresh round pushes every socket's deadline with one
// script per refreshBatch sockets, re-enters (and announces) users missing
// from a list, and does not put back a list a socket left.
func scBatchedRefresh(t *testing.T, b backend) {
	const n = 2*refreshBatch + 7 // three batches, the last one partial
	clk := newClock()
	h := b.newHost(t)
	cs := &countingStore{Store: h.store}
	h.store = cs
	p := startPlugin(t, h, clk, nil)
	var users []string
	for i := range n {
		u := fmt.Sprintf("u%03d", i)
		users = append(users, u)
		s := sdktest.Socket("s-"+u, u, "c1")
		connect(t, p, s)
		event(t, p, s, EvEnterPage, roomPath)
		if i%3 == 0 {
			event(t, p, s, EvEnterPage, profPath)
		}
	}
	// alice has two tabs on the profile page and closes one: the refresh
	// must not put the closed tab back (it would keep her listed after her
	// last tab left).
	connect(t, p, alice1)
	connect(t, p, alice2)
	event(t, p, alice1, EvEnterPage, profPath)
	event(t, p, alice2, EvEnterPage, profPath)
	event(t, p, alice1, EvLeavePage, profPath)
	// The profile list is lost (as after a flush): its users are re-entered.
	if _, err := h.Store().Do(context.Background(), "DEL", ListKeyPrefix+profList); err != nil {
		t.Fatal(err)
	}
	h.Reset()

	clk.Advance(30 * time.Second)
	p.refreshAll(context.Background())

	if got, want := cs.refreshes.Load(), int64((n+2+refreshBatch-1)/refreshBatch); got != want {
		t.Fatalf("%d refresh scripts for %d sockets, want %d", got, n+2, want)
	}
	wantMembers(t, h, roomList, users...)
	var prof []Delta
	var profUsers []string
	for i, u := range users {
		if i%3 == 0 {
			profUsers = append(profUsers, u)
		}
	}
	profUsers = append(profUsers, "alice")
	slices.Sort(profUsers)
	for _, u := range profUsers {
		prof = append(prof, Delta{profList, u})
	}
	got := h.deltas(t, EvEntered)
	slices.SortFunc(got, func(a, b Delta) int { return strings.Compare(a.UserID, b.UserID) })
	if !slices.Equal(got, prof) {
		t.Fatalf("entered = %+v, want %+v", got, prof)
	}
	wantMembers(t, h, profList, profUsers...)
	if s, err := sdk.Strings(h.Store().Do(context.Background(), "ZRANGE", ListKeyPrefix+profList+UserSessionsInfix+"alice", 0, -1)); err != nil || !slices.Equal(s, []string{alice2.ID}) {
		t.Fatalf("alice's profile tabs = %v, want only %s", s, alice2.ID)
	}
	if s := smembers(t, h.Store(), SessionListsPrefix+alice1.ID); len(s) != 0 {
		t.Fatalf("%s lists = %v, want none", alice1.ID, s)
	}

	// Every socket on a list has the new deadline.
	want := strconv.FormatInt(clk.Now().Add(45*time.Second).UnixMilli(), 10)
	for _, u := range append(slices.Clone(users), "alice") {
		id := "s-" + u
		if u == "alice" {
			id = alice2.ID
		}
		if got, err := sdk.String(h.Store().Do(context.Background(), "ZSCORE", SocketsKey, id)); err != nil || got != want {
			t.Fatalf("deadline of %s = %q, %v; want %s", id, got, err, want)
		}
	}
	// So nobody is swept 20s later (50s after entering).
	clk.Advance(20 * time.Second)
	h2 := peer(t, h)
	startPlugin(t, h2, clk, nil).sweep(context.Background())
	wantDeltas(t, h2, EvLeft)
	wantMembers(t, h, roomList, users...)
}

// TestCompactLua: the scripts sent carry no comments but every command.
func TestCompactLua(t *testing.T) {
	for _, sc := range []struct{ src, sent string }{
		{markSrc + enterSrc, enterScript}, {markSrc + exitSrc, exitScript},
		{markSrc + exitAllSrc, exitAllScript}, {markSrc + recheckSrc, recheckScript},
		{expiredSrc, expiredScript}, {refreshSrc, refreshScript},
	} {
		if len(sc.sent) >= len(sc.src) || strings.Contains(sc.sent, "--") {
			t.Errorf("not compacted:\n%s", sc.sent)
		}
		if a, b := strings.Count(sc.src, "redis.call("), strings.Count(sc.sent, "redis.call("); a != b || a == 0 {
			t.Errorf("%d of %d commands kept:\n%s", b, a, sc.sent)
		}
	}
}

// TestJitter: every wait is within [3/4, 1] of the interval (so the sweep
// bound window + sweep_interval holds), and the waits differ.
func TestJitter(t *testing.T) {
	const every = 5 * time.Second
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := jitter(every)
		if d < every*3/4 || d > every {
			t.Fatalf("jitter(%v) = %v", every, d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct waits in 1000", len(seen))
	}
	if d := jitter(time.Nanosecond); d != time.Nanosecond && d != 0 {
		t.Fatalf("jitter(1ns) = %v", d)
	}
}
