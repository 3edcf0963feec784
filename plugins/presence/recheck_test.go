package presence

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"
)

const testRecheck = 100 * time.Millisecond

// recheckConfig is quietConfig with rechecks on, after testRecheck.
func recheckConfig() map[string]any {
	c := maps.Clone(quietConfig)
	c["recheck"] = testRecheck.String()
	return c
}

// deltaLog returns h's "entered"/"left" emits in order, as "entered alice".
func deltaLog(t *testing.T, h *testHost) []string {
	t.Helper()
	var out []string
	for _, e := range h.Emits() {
		if e.Event != EvEntered && e.Event != EvLeft {
			continue
		}
		var d Delta
		if err := e.Arg(0, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Event+" "+d.UserID)
	}
	return out
}

// observerView is what the browser client makes of deltas arriving in the
// given order: a Set per page (PresenceState.ts), so a repeated delta is a
// no-op. It returns whether user ends up listed.
func observerView(user string, deltas ...[]string) bool {
	on := false
	for _, ds := range deltas {
		for _, d := range ds {
			switch d {
			case EvEntered + " " + user:
				on = true
			case EvLeft + " " + user:
				on = false
			}
		}
	}
	return on
}

func waitDeltas(t *testing.T, h *testHost, n int) []string {
	t.Helper()
	waitFor(t, "recheck delta", func() bool { return len(deltaLog(t, h)) >= n })
	return deltaLog(t, h)
}

// TestRecheck: when instance B's transition of a user on a page follows
// instance A's within the mark's life, the two deltas reach B's observers by
// different paths (B's directly, A's through Redis pub/sub) and may arrive
// swapped. B then re-sends the user's current state after the recheck delay,
// so an observer that got them swapped ends up agreeing with Redis. Without
// rechecks B sends nothing more and these tests time out waiting for it.
func TestRecheck(t *testing.T) {
	for _, b := range []backend{miniredisBackend(), realRedisBackend()} {
		t.Run(b.name+"/entered after a remote left", func(t *testing.T) { testRecheckEntered(t, b) })
		t.Run(b.name+"/left after a remote entered", func(t *testing.T) { testRecheckLeft(t, b) })
		t.Run(b.name+"/latest state", func(t *testing.T) { testRecheckLatest(t, b) })
		t.Run(b.name+"/same instance", func(t *testing.T) { testRecheckSameInstance(t, b) })
		t.Run(b.name+"/stop", func(t *testing.T) { testRecheckStop(t, b) })
	}
}

// reloadOnB is a reload that lands on another dyno: alice1 enters the page
// on instance A, then (A's log reset) disconnects there ("left") and alice2
// enters on instance B ("entered", due a recheck).
func reloadOnB(t *testing.T, b backend) (hA, hB *testHost, pB *Plugin) {
	t.Helper()
	hA = b.newHost(t)
	hB = peer(t, hA)
	pA := startPlugin(t, hA, nil, recheckConfig())
	pB = startPlugin(t, hB, nil, recheckConfig())
	connect(t, pA, alice1)
	event(t, pA, alice1, EvEnterPage, roomPath)
	hA.Reset()
	disconnect(t, pA, alice1)
	connect(t, pB, alice2)
	event(t, pB, alice2, EvEnterPage, roomPath)
	return hA, hB, pB
}

func testRecheckEntered(t *testing.T, b backend) {
	hA, hB, _ := reloadOnB(t, b)
	fromA := deltaLog(t, hA)
	if want := []string{"left alice"}; !slices.Equal(fromA, want) {
		t.Fatalf("A sent %v, want %v", fromA, want)
	}
	if got := deltaLog(t, hB); !slices.Equal(got, []string{"entered alice"}) {
		t.Fatalf("B sent %v before the recheck", got)
	}
	if observerView("alice", deltaLog(t, hB), fromA) {
		t.Fatal("the swapped order should show alice gone (the bug being fixed)")
	}
	fromB := waitDeltas(t, hB, 2)
	if want := []string{"entered alice", "entered alice"}; !slices.Equal(fromB, want) {
		t.Fatalf("B sent %v, want %v", fromB, want)
	}
	// B's observers got A's "left" last, then the recheck.
	if !observerView("alice", fromB[:1], fromA, fromB[1:]) {
		t.Fatal("after the recheck an observer of B still misses alice")
	}
	wantMembers(t, hA, roomList, "alice")
	// A's transition followed only its own marks: no recheck there.
	time.Sleep(3 * testRecheck)
	if got := deltaLog(t, hA); !slices.Equal(got, fromA) {
		t.Fatalf("A sent %v, want only %v", got, fromA)
	}
}

// An instance dies: its sockets' users are swept by B ("left") right after
// A's "entered" of one of them.
func testRecheckLeft(t *testing.T, b backend) {
	clk := newClock()
	hB := b.newHost(t)
	hA := peer(t, hB)
	pA := startPlugin(t, hA, clk, recheckConfig())
	pB := startPlugin(t, hB, clk, recheckConfig())
	connect(t, pA, alice1)
	event(t, pA, alice1, EvEnterPage, roomPath)
	fromA := deltaLog(t, hA)
	clk.Advance(46 * time.Second) // A is dead: alice1's deadline passes
	pB.sweep(context.Background())
	if got := deltaLog(t, hB); !slices.Equal(got, []string{"left alice"}) {
		t.Fatalf("B sent %v before the recheck", got)
	}
	if !observerView("alice", deltaLog(t, hB), fromA) {
		t.Fatal("the swapped order should show alice present (the bug being fixed)")
	}
	fromB := waitDeltas(t, hB, 2)
	if want := []string{"left alice", "left alice"}; !slices.Equal(fromB, want) {
		t.Fatalf("B sent %v, want %v", fromB, want)
	}
	if observerView("alice", fromB[:1], fromA, fromB[1:]) {
		t.Fatal("after the recheck an observer of B still lists alice")
	}
	wantMembers(t, hB, roomList)
}

// The recheck sends the state when it runs, not the one that scheduled it.
func testRecheckLatest(t *testing.T, b backend) {
	_, hB, pB := reloadOnB(t, b)                // B's enter is due a recheck
	event(t, pB, alice2, EvLeavePage, roomPath) // B's own mark: no second one
	fromB := waitDeltas(t, hB, 3)
	if want := []string{"entered alice", "left alice", "left alice"}; !slices.Equal(fromB, want) {
		t.Fatalf("B sent %v, want %v", fromB, want)
	}
	wantMembers(t, hB, roomList)
	time.Sleep(3 * testRecheck)
	if got := deltaLog(t, hB); len(got) != 3 {
		t.Fatalf("B sent %v: one recheck expected", got)
	}
}

// Transitions of one instance are ordered already: no recheck, and the mark
// expires on its own.
func testRecheckSameInstance(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, recheckConfig())
	connect(t, p, alice1)
	event(t, p, alice1, EvEnterPage, roomPath)
	disconnect(t, p, alice1)
	connect(t, p, alice2)
	event(t, p, alice2, EvEnterPage, roomPath)
	time.Sleep(3 * testRecheck)
	if got, want := deltaLog(t, h), []string{"entered alice", "left alice", "entered alice"}; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	key := DeltaMarkPrefix + roomList + ":alice"
	if !exists(t, h.Store(), key) {
		t.Fatalf("no mark %s", key)
	}
	disconnect(t, p, alice2)
	waitFor(t, "the mark to expire", func() bool {
		if h.store == h.Host.Store() { // miniredis: its clock moves when told
			h.Redis().FastForward(10 * time.Millisecond)
		}
		return !exists(t, h.Store(), key)
	})
	wantNoKeys(t, h)
}

// Stop cancels the rechecks it has not run.
func testRecheckStop(t *testing.T, b backend) {
	_, hB, pB := reloadOnB(t, b)
	if err := pB.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * testRecheck)
	if got := deltaLog(t, hB); len(got) != 1 {
		t.Fatalf("B sent %v after Stop", got)
	}
}
