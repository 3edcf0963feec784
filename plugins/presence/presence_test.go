package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// TestMain lets the test binary serve the plugin when sdktest.StartSubprocess
// re-executes it.
func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

const (
	roomPath = "/conference/c1/room/r1"
	roomList = "ed637f608b97bc7080ee2795a1a2e449a28b9116c58dc60dbd5b57f8b240f1f6"
	profPath = "/profile"
	profList = "740bfe54986f513a979f12f75ecedbcf4a721e64123cda0a77f05a94e76e167e"
)

var (
	alice1 = sdktest.Socket("s-alice-1", "alice", "c1")
	alice2 = sdktest.Socket("s-alice-2", "alice", "c1")
	bob1   = sdktest.Socket("s-bob-1", "bob", "c1")
	carol1 = sdktest.Socket("s-carol-1", "carol", "c1")
)

type scenario struct {
	name string
	run  func(t *testing.T, b backend)
}

var scenarios = []scenario{
	{"two users", scTwoUsers},
	{"multi-tab", scMultiTab},
	{"observer snapshot then deltas", scObserver},
	{"disconnect cleanup", scDisconnect},
	{"leave of a page never entered", scLeaveNeverEntered},
	{"concurrent enter and leave", scConcurrent},
	{"sweep by two instances", scSweepTwoInstances},
	{"sweep skips a refreshed socket", scSweepRefreshed},
	{"replayed OnConnect reloads state", scReplay},
	{"refresh after flush re-creates state", scFlush},
	{"batched refresh", scBatchedRefresh},
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, miniredisBackend())
		})
	}
}

// TestRealRedis runs the scenarios against the machine's Redis (database
// realRedisDB, flushed before and after each).
func TestRealRedis(t *testing.T) {
	realRedisClient(t) // skip early when absent
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, realRedisBackend()) })
	}
}

func wantDeltas(t *testing.T, h *testHost, event string, want ...Delta) {
	t.Helper()
	got := h.deltas(t, event)
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %+v, want %+v", event, got, want)
	}
}

func wantMembers(t *testing.T, h *testHost, listID string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	got := smembers(t, h.Store(), ListKeyPrefix+listID)
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s%s = %v, want %v", ListKeyPrefix, listID, got, want)
	}
}

// wantNoKeys checks that nothing is left but delta marks, which expire on
// their own (RecheckMark of the default config).
func wantNoKeys(t *testing.T, h *testHost) {
	t.Helper()
	var left []string
	for _, k := range allKeys(t, h.Store()) {
		if !strings.HasPrefix(k, DeltaMarkPrefix) {
			left = append(left, k)
			continue
		}
		ttl, err := sdk.Int64(h.Store().Do(context.Background(), "PTTL", k))
		if err != nil || ttl <= 0 || ttl > DefaultConfig().RecheckMark().Milliseconds() {
			t.Fatalf("PTTL %s = %d, %v; want in (0, %v]", k, ttl, err, DefaultConfig().RecheckMark())
		}
	}
	if len(left) != 0 {
		t.Fatalf("keys left behind: %v", left)
	}
}

func scTwoUsers(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	connect(t, p, bob1)
	event(t, p, alice1, EvEnterPage, roomPath)
	event(t, p, bob1, EvEnterPage, roomPath)
	wantDeltas(t, h, EvEntered, Delta{roomList, "alice"}, Delta{roomList, "bob"})
	wantMembers(t, h, roomList, "alice", "bob")

	event(t, p, alice1, EvLeavePage, roomPath)
	wantDeltas(t, h, EvLeft, Delta{roomList, "alice"})
	wantMembers(t, h, roomList, "bob")
	if exists(t, h.Store(), SessionListsPrefix+alice1.ID) {
		t.Fatal("alice's SessionLists not empty after leaving her only page")
	}
}

func zcard(t *testing.T, s sdk.Store, key string) int64 {
	t.Helper()
	n, err := sdk.Int64(s.Do(context.Background(), "ZCARD", key))
	if err != nil {
		t.Fatalf("ZCARD %s: %v", key, err)
	}
	return n
}

func scMultiTab(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	connect(t, p, alice2)
	event(t, p, alice1, EvEnterPage, roomPath)
	event(t, p, alice2, EvPagePresence, roomPath)
	wantDeltas(t, h, EvEntered, Delta{roomList, "alice"})
	if n := zcard(t, h.Store(), ListKeyPrefix+roomList+UserSessionsInfix+"alice"); n != 2 {
		t.Fatalf("alice has %d sessions on the page, want 2", n)
	}

	event(t, p, alice1, EvLeavePage, roomPath)
	wantDeltas(t, h, EvLeft)
	wantMembers(t, h, roomList, "alice")

	event(t, p, alice1, EvEnterPage, roomPath) // back again: no new "entered"
	wantDeltas(t, h, EvEntered, Delta{roomList, "alice"})
	event(t, p, alice1, EvPageUnpresence, roomPath)
	wantDeltas(t, h, EvLeft)

	disconnect(t, p, alice2) // the last tab
	wantDeltas(t, h, EvLeft, Delta{roomList, "alice"})
	disconnect(t, p, alice1)
	wantDeltas(t, h, EvLeft, Delta{roomList, "alice"})
	wantNoKeys(t, h)
}

func scObserver(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, nil)
	for _, s := range []sdk.Socket{alice1, bob1, carol1} {
		connect(t, p, s)
	}
	event(t, p, alice1, EvEnterPage, roomPath)
	h.Reset()

	event(t, p, carol1, EvObservePage, roomPath)
	if seq := h.sequence(); !slices.Equal(seq[len(seq)-2:], []string{"join " + RoomPrefix + roomList, "emit " + EvPresences}) {
		t.Fatalf("observe sequence %v: want the join before the snapshot", seq)
	}
	emits := h.Emits()
	if len(emits) != 1 || emits[0].Event != EvPresences || emits[0].To != sdk.SocketTarget(carol1.ID) {
		t.Fatalf("observe emitted %+v, want one presences to carol's socket", emits)
	}
	var snap Snapshot
	if err := emits[0].Arg(0, &snap); err != nil {
		t.Fatal(err)
	}
	if snap.ListID != roomList || !slices.Equal(snap.UserIDs, []string{"alice"}) {
		t.Fatalf("snapshot %+v", snap)
	}

	event(t, p, bob1, EvEnterPage, roomPath)
	wantDeltas(t, h, EvEntered, Delta{roomList, "bob"})
	if !h.InRoom(carol1.ID, RoomPrefix+roomList) {
		t.Fatal("observer not in the page's room")
	}

	event(t, p, carol1, EvUnobservePage, roomPath)
	if h.InRoom(carol1.ID, RoomPrefix+roomList) {
		t.Fatal("observer still in the room after unobservePage")
	}

	// An empty list's snapshot has userIds [], not null.
	h.Reset()
	event(t, p, carol1, EvObservePage, profPath)
	emits = h.Emits()
	if len(emits) != 1 || string(emits[0].Args[0]) != `{"listId":"`+profList+`","userIds":[]}` {
		t.Fatalf("empty snapshot = %+v", emits)
	}

	// Conference-wide observation.
	h.Reset()
	event(t, p, alice1, EvConferencePresence, "c1")
	event(t, p, carol1, EvObserveConference, "c1")
	if !h.InRoom(carol1.ID, RoomPrefix+"c1") {
		t.Fatal("observeConference did not join PresenceQueue:c1")
	}
	wantDeltas(t, h, EvEntered, Delta{"c1", "alice"})
	event(t, p, carol1, EvUnobserveConference, "c1")
	if h.InRoom(carol1.ID, RoomPrefix+"c1") {
		t.Fatal("unobserveConference did not leave PresenceQueue:c1")
	}
}

func scDisconnect(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	connect(t, p, bob1)
	event(t, p, alice1, EvEnterPage, roomPath)
	event(t, p, alice1, EvEnterPage, profPath)
	event(t, p, alice1, EvConferencePresence, "c1")
	event(t, p, bob1, EvEnterPage, profPath)
	h.Reset()

	disconnect(t, p, alice1)
	got := h.deltas(t, EvLeft)
	slices.SortFunc(got, func(a, b Delta) int { return strings.Compare(a.ListID, b.ListID) })
	want := []Delta{{profList, "alice"}, {"c1", "alice"}, {roomList, "alice"}}
	if !slices.Equal(got, want) {
		t.Fatalf("left = %+v, want %+v", got, want)
	}
	wantMembers(t, h, profList, "bob")
	for _, k := range []string{SessionListsPrefix + alice1.ID, ListKeyPrefix + roomList, ListKeyPrefix + "c1"} {
		if exists(t, h.Store(), k) {
			t.Errorf("%s still exists", k)
		}
	}
	if _, err := h.Store().Do(context.Background(), "HGET", SocketUserKey, alice1.ID); err == nil {
		t.Error("alice's socket still in " + SocketUserKey)
	}
	disconnect(t, p, bob1)
	wantNoKeys(t, h)
	if len(p.snapshot()) != 0 {
		t.Fatal("plugin still remembers sockets after they disconnected")
	}
}

func scLeaveNeverEntered(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	connect(t, p, bob1)
	event(t, p, alice1, EvLeavePage, roomPath)
	event(t, p, alice1, EvPageUnpresence, profPath)
	if e := h.Emits(); len(e) != 0 {
		t.Fatalf("emits %+v", e)
	}
	wantNoKeys(t, h)

	event(t, p, bob1, EvEnterPage, roomPath)
	event(t, p, alice1, EvLeavePage, roomPath)
	wantMembers(t, h, roomList, "bob")
	wantDeltas(t, h, EvLeft)
	disconnect(t, p, alice1) // never entered anything
	wantMembers(t, h, roomList, "bob")
	wantDeltas(t, h, EvLeft)
}

func scConcurrent(t *testing.T, b backend) {
	h := b.newHost(t)
	h2 := peer(t, h)
	ps := []*Plugin{startPlugin(t, h, nil, nil), startPlugin(t, h2, nil, nil)}
	paths := []string{roomPath, profPath, "/conference/c1"}
	const users, tabs, ops = 6, 3, 40

	type sock struct {
		s       sdk.Socket
		p       *Plugin
		present map[string]bool // path -> present at the end
		gone    bool
	}
	var socks []*sock
	for u := range users {
		for tab := range tabs {
			socks = append(socks, &sock{
				s:       sdktest.Socket(fmt.Sprintf("s-%d-%d", u, tab), fmt.Sprintf("user-%d", u), "c1"),
				p:       ps[(u+tab)%2],
				present: map[string]bool{},
			})
		}
	}
	var wg sync.WaitGroup
	for i, k := range socks {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			ctx := context.Background()
			if err := k.p.OnConnect(ctx, k.s); err != nil {
				t.Error(err)
				return
			}
			for range ops {
				path := paths[rng.IntN(len(paths))]
				name := EvEnterPage
				if rng.IntN(2) == 0 {
					name = EvLeavePage
				}
				if _, err := k.p.OnEvent(ctx, sdk.Event{Socket: k.s, Name: name, Args: sdktest.Args(t, path)}); err != nil {
					t.Error(err)
					return
				}
				k.present[path] = name == EvEnterPage
			}
			if rng.IntN(3) == 0 {
				if err := k.p.OnDisconnect(ctx, k.s, "transport close"); err != nil {
					t.Error(err)
				}
				k.gone = true
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	s := sdktest.Socket("x", "x", "c1")
	for _, path := range paths {
		listID, err := ListID(s, path, 0)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, k := range socks {
			if !k.gone && k.present[path] && !slices.Contains(want, k.s.UserID) {
				want = append(want, k.s.UserID)
			}
		}
		slices.Sort(want)
		wantMembers(t, h, listID, want...)

		// Each (list, user) got entered and left alternately: the counts
		// differ by one exactly when the user is present.
		net := map[string]int{}
		for _, hh := range []*testHost{h, h2} {
			for _, d := range hh.deltas(t, EvEntered) {
				if d.ListID == listID {
					net[d.UserID]++
				}
			}
			for _, d := range hh.deltas(t, EvLeft) {
				if d.ListID == listID {
					net[d.UserID]--
				}
			}
		}
		for u := range users {
			uid := fmt.Sprintf("user-%d", u)
			wantNet := 0
			if slices.Contains(want, uid) {
				wantNet = 1
			}
			if net[uid] != wantNet {
				t.Errorf("%s on %s: entered-left = %d, want %d", uid, path, net[uid], wantNet)
			}
		}
	}
	for _, k := range socks {
		if !k.gone {
			disconnect(t, k.p, k.s)
		}
	}
	wantNoKeys(t, h)
}

func scSweepTwoInstances(t *testing.T, b backend) {
	clk := newClock()
	h1 := b.newHost(t)
	h2, h3 := peer(t, h1), peer(t, h1)
	p1 := startPlugin(t, h1, clk, nil)
	p2 := startPlugin(t, h2, clk, nil)
	p3 := startPlugin(t, h3, clk, nil)

	connect(t, p1, alice1)
	connect(t, p1, bob1)
	connect(t, p2, alice2)
	event(t, p1, alice1, EvEnterPage, roomPath)
	event(t, p1, bob1, EvEnterPage, roomPath)
	event(t, p2, alice2, EvEnterPage, roomPath)

	// Nothing has expired yet.
	p2.sweep(context.Background())
	p3.sweep(context.Background())
	wantMembers(t, h1, roomList, "alice", "bob")

	// Instance 1 dies (no more refreshes); instance 2 keeps refreshing.
	if err := p1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	p2.refreshAll(context.Background())
	clk.Advance(16 * time.Second) // past p1's deadlines, not p2's

	var wg sync.WaitGroup
	for _, p := range []*Plugin{p2, p3} {
		wg.Go(func() { p.sweep(context.Background()) })
	}
	wg.Wait()
	p2.sweep(context.Background())
	p3.sweep(context.Background())

	left := append(h2.deltas(t, EvLeft), h3.deltas(t, EvLeft)...)
	if !slices.Equal(left, []Delta{{roomList, "bob"}}) {
		t.Fatalf("left = %+v, want bob once (alice has a live tab elsewhere)", left)
	}
	wantMembers(t, h1, roomList, "alice")
	socks, err := sdk.Strings(h1.Store().Do(context.Background(), "ZRANGE", SocketsKey, 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(socks, []string{alice2.ID}) {
		t.Fatalf("%s = %v, want only the live socket", SocketsKey, socks)
	}
	for _, id := range []string{alice1.ID, bob1.ID} {
		if exists(t, h1.Store(), SessionListsPrefix+id) {
			t.Errorf("SessionLists of swept socket %s still exists", id)
		}
	}
	if n := zcard(t, h1.Store(), ListKeyPrefix+roomList+UserSessionsInfix+"alice"); n != 1 {
		t.Fatalf("alice has %d sessions, want 1", n)
	}

	// Now instance 2 dies too: alice is reported left once.
	if err := p2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	h3.Reset()
	clk.Advance(46 * time.Second)
	p3.sweep(context.Background())
	wantDeltas(t, h3, EvLeft, Delta{roomList, "alice"})
	wantNoKeys(t, h1)
}

func scSweepRefreshed(t *testing.T, b backend) {
	clk := newClock()
	h1 := b.newHost(t)
	h2 := peer(t, h1)
	p1 := startPlugin(t, h1, clk, nil)
	p2 := startPlugin(t, h2, clk, nil)
	connect(t, p1, alice1)
	event(t, p1, alice1, EvEnterPage, roomPath)

	// A sweeper that saw the socket as expired but runs its script after
	// the owner refreshed it must leave it alone.
	clk.Advance(40 * time.Second)
	p1.refreshAll(context.Background())
	clk.Advance(10 * time.Second)
	uid, left, _, err := p2.exitAll(context.Background(), alice1.ID, "", true)
	if err != nil || uid != "" || left != nil {
		t.Fatalf("sweep of a live socket = %q, %v, %v; want nothing", uid, left, err)
	}
	wantMembers(t, h1, roomList, "alice")

	// The owner's own sweeper refreshes an overdue socket instead of
	// removing it.
	clk.Advance(time.Hour)
	p1.sweep(context.Background())
	wantMembers(t, h1, roomList, "alice")
	wantDeltas(t, h1, EvLeft)
	p2.sweep(context.Background())
	wantMembers(t, h1, roomList, "alice")
	wantDeltas(t, h2, EvLeft)
}

func scReplay(t *testing.T, b backend) {
	clk := newClock()
	h := b.newHost(t)
	p := startPlugin(t, h, clk, nil)
	connect(t, p, alice1)
	event(t, p, alice1, EvEnterPage, roomPath)
	event(t, p, alice1, EvEnterPage, profPath)

	// The plugin process restarts: a new Plugin on the same host, which
	// replays OnConnect.
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	hb := peer(t, h)
	pb := startPlugin(t, hb, clk, nil)
	connect(t, pb, alice1)
	connect(t, pb, bob1) // new socket, nothing to load
	if e := hb.Emits(); len(e) != 0 {
		t.Fatalf("replayed connect emitted %+v", e)
	}
	pb.mu.Lock()
	got := slices.Sorted(func(yield func(string) bool) {
		for l := range pb.sockets[alice1.ID].lists {
			if !yield(l) {
				return
			}
		}
	})
	nb := len(pb.sockets[bob1.ID].lists)
	pb.mu.Unlock()
	if want := []string{profList, roomList}; !slices.Equal(got, want) {
		t.Fatalf("reloaded lists %v, want %v", got, want)
	}
	if nb != 0 {
		t.Fatalf("a new socket got %d lists", nb)
	}

	// The reloaded socket is refreshed: a sweep past its first deadline by
	// another instance leaves it present.
	clk.Advance(40 * time.Second)
	pb.refreshAll(context.Background())
	clk.Advance(10 * time.Second)
	h3 := peer(t, h)
	p3 := startPlugin(t, h3, clk, nil)
	p3.sweep(context.Background())
	wantDeltas(t, h3, EvLeft)
	wantMembers(t, h, roomList, "alice")

	disconnect(t, pb, alice1)
	got2 := hb.deltas(t, EvLeft)
	if len(got2) != 2 {
		t.Fatalf("left after disconnect = %+v, want both pages", got2)
	}
	disconnect(t, pb, bob1)
	wantNoKeys(t, h)
}

func scFlush(t *testing.T, b backend) {
	h := b.newHost(t)
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	event(t, p, alice1, EvEnterPage, roomPath)
	for _, k := range allKeys(t, h.Store()) { // what admin /flush does
		if _, err := h.Store().Do(context.Background(), "DEL", k); err != nil {
			t.Fatal(err)
		}
	}
	h.Reset()
	p.refreshAll(context.Background())
	wantDeltas(t, h, EvEntered, Delta{roomList, "alice"})
	wantMembers(t, h, roomList, "alice")
	p.refreshAll(context.Background()) // idempotent
	wantDeltas(t, h, EvEntered, Delta{roomList, "alice"})
}

// TestRefreshKeepsAlive runs the real refresher and sweeper loops with a
// short window: a socket whose instance keeps refreshing stays present while
// one that entered later, on a stopped instance, is swept.
func TestRefreshKeepsAlive(t *testing.T) {
	t.Parallel()
	h1 := miniredisBackend().newHost(t)
	h2, h3 := peer(t, h1), peer(t, h1)
	fast := map[string]any{"window": "600ms", "refresh_interval": "100ms", "sweep_interval": "30ms"}
	p1 := startPlugin(t, h1, nil, fast) // owns alice, keeps refreshing
	p3 := startPlugin(t, h3, nil, fast) // owns bob, then dies
	connect(t, p1, alice1)
	event(t, p1, alice1, EvEnterPage, roomPath)
	connect(t, p3, bob1)
	event(t, p3, bob1, EvEnterPage, roomPath)
	if err := p3.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	startPlugin(t, h2, nil, fast) // a sweeper that owns nothing

	// Bob entered after alice, so without refreshes alice would expire
	// first; bob being swept proves alice's deadline was pushed forward.
	leftDeltas := func() []Delta {
		var left []Delta
		for _, h := range []*testHost{h1, h2, h3} {
			left = append(left, h.deltas(t, EvLeft)...)
		}
		return left
	}
	waitFor(t, "bob to be reported left", func() bool { return len(leftDeltas()) > 0 })
	wantMembers(t, h1, roomList, "alice")
	if left := leftDeltas(); !slices.Equal(left, []Delta{{roomList, "bob"}}) {
		t.Fatalf("left = %+v, want bob once", left)
	}
}

func TestBadInputIgnored(t *testing.T) {
	long := "/" + strings.Repeat("x", 2000)
	tests := []struct {
		name  string
		event string
		args  []any
	}{
		{"no argument", EvEnterPage, nil},
		{"null (the client's first leavePage)", EvLeavePage, []any{nil}},
		{"number", EvEnterPage, []any{42}},
		{"object", EvObservePage, []any{map[string]string{"path": "/"}}},
		{"empty path", EvEnterPage, []any{""}},
		{"long path", EvEnterPage, []any{long}},
		{"long path observe", EvObservePage, []any{long}},
		{"foreign conference enter", EvEnterPage, []any{"/conference/other/x"}},
		{"foreign conference observe", EvObservePage, []any{"/conference/other"}},
		{"foreign conference presence", EvConferencePresence, []any{"other"}},
		{"foreign conference observe by slug", EvObserveConference, []any{"other"}},
		{"path given as slug", EvConferencePresence, []any{"/conference/c1"}},
		{"undeclared event", "enterPages", []any{"/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := miniredisBackend().newHost(t)
			p := startPlugin(t, h, nil, nil)
			connect(t, p, alice1)
			ack, err := sdktest.Event(t, context.Background(), p, alice1, tt.event, tt.args...)
			if err != nil || ack != nil {
				t.Fatalf("OnEvent = %v, %v; want nil, nil", ack, err)
			}
			if e, j := h.Emits(), h.Joins(); len(e)+len(j) != 0 {
				t.Fatalf("emits %+v joins %+v", e, j)
			}
			wantNoKeys(t, h)
		})
	}
}

func TestInvalidJSONStringIgnored(t *testing.T) {
	h := miniredisBackend().newHost(t)
	p := startPlugin(t, h, nil, nil)
	for _, raw := range []string{`"unterminated`, `  "x" `} {
		_, err := p.OnEvent(context.Background(), sdk.Event{Socket: alice1, Name: EvEnterPage, Args: []json.RawMessage{json.RawMessage(raw)}})
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
	}
	// Only the valid, padded one entered.
	if got := h.deltas(t, EvEntered); len(got) != 1 || got[0].ListID != hashHex(NoConferencePrefix, "x") {
		t.Fatalf("entered = %+v", got)
	}
}

func TestRateLimit(t *testing.T) {
	h := miniredisBackend().newHost(t)
	p := startPlugin(t, h, nil, map[string]any{
		"window": "45s", "refresh_interval": "15s", "sweep_interval": "1h",
		"events_per_second": 0.001, "event_burst": 2,
	})
	connect(t, p, alice1)
	connect(t, p, bob1)
	for _, path := range []string{"/a", "/b", "/c", "/d"} {
		event(t, p, alice1, EvEnterPage, path)
	}
	event(t, p, bob1, EvEnterPage, "/a") // other sockets have their own budget
	if n := len(smembers(t, h.Store(), SessionListsPrefix+alice1.ID)); n != 2 {
		t.Fatalf("alice is on %d lists, want 2 (burst)", n)
	}
	if n := len(smembers(t, h.Store(), SessionListsPrefix+bob1.ID)); n != 1 {
		t.Fatalf("bob is on %d lists, want 1", n)
	}
}

func TestMaxListsPerSocket(t *testing.T) {
	h := miniredisBackend().newHost(t)
	p := startPlugin(t, h, nil, map[string]any{
		"window": "45s", "refresh_interval": "15s", "sweep_interval": "1h", "max_lists_per_socket": 2,
	})
	connect(t, p, alice1)
	for _, path := range []string{"/a", "/b", "/c", "/a"} {
		event(t, p, alice1, EvEnterPage, path)
	}
	if got := smembers(t, h.Store(), SessionListsPrefix+alice1.ID); len(got) != 2 {
		t.Fatalf("alice is on %v, want 2 lists", got)
	}
	event(t, p, alice1, EvLeavePage, "/b")
	event(t, p, alice1, EvEnterPage, "/c")
	if got := smembers(t, h.Store(), SessionListsPrefix+alice1.ID); len(got) != 2 {
		t.Fatalf("alice is on %v, want 2 lists", got)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	p := New()
	if _, err := p.OnEvent(ctx, sdk.Event{Socket: alice1, Name: EvEnterPage}); err == nil {
		t.Fatal("OnEvent before Start succeeded")
	}
	if err := p.OnConnect(ctx, alice1); err == nil {
		t.Fatal("OnConnect before Start succeeded")
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	h := miniredisBackend().newHost(t)
	if err := p.Start(ctx, h, json.RawMessage(`{"window":"1s"}`)); err == nil || !strings.Contains(err.Error(), "window") {
		t.Fatalf("Start with a bad config = %v", err)
	}
	if err := p.Start(ctx, h, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx, h, nil); err == nil {
		t.Fatal("second Start succeeded")
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	d := New().Describe()
	want := []string{"conferencePresence", "enterPage", "leavePage", "observeConference", "observePage",
		"pagePresence", "pageUnpresence", "unobserveConference", "unobservePage"}
	if got := slices.Sorted(slices.Values(d.Events)); d.Name != "presence" || !slices.Equal(got, want) {
		t.Fatalf("descriptor %+v", d)
	}
	f, ok := sdk.Lookup("presence")
	if !ok {
		t.Fatal("presence is not registered")
	}
	if _, ok := f().(*Plugin); !ok {
		t.Fatal("registered factory does not build a *Plugin")
	}
}

// TestStoreError: a Redis failure is returned to the host (which logs it),
// and nothing is emitted.
func TestStoreError(t *testing.T) {
	h := miniredisBackend().newHost(t)
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	h.Redis().Close()
	if _, err := sdktest.Event(t, context.Background(), p, alice1, EvEnterPage, "/"); err == nil {
		t.Fatal("enter with Redis down succeeded")
	}
	if e := h.Emits(); len(e) != 0 {
		t.Fatalf("emits %+v", e)
	}
}

// TestSubprocess runs the registered plugin through the host's real re-exec
// and gRPC path.
func TestSubprocess(t *testing.T) {
	sp := sdktest.StartSubprocess(t, "presence", sdktest.WithConfig(quietConfig))
	if err := sp.Connect(alice1); err != nil {
		t.Fatal(err)
	}
	if err := sp.Connect(carol1); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Event(carol1, EvObservePage, roomPath); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Event(alice1, EvEnterPage, roomPath); err != nil {
		t.Fatal(err)
	}
	if err := sp.Disconnect(alice1, "transport close"); err != nil {
		t.Fatal(err)
	}
	var got []string
	waitFor(t, "the left delta", func() bool {
		got = got[:0]
		for _, e := range sp.Host.Emits() {
			got = append(got, e.Event+" "+string(e.Args[0]))
		}
		return len(got) == 3
	})
	want := []string{
		`presences {"listId":"` + roomList + `","userIds":[]}`,
		`entered {"listId":"` + roomList + `","userId":"alice"}`,
		`left {"listId":"` + roomList + `","userId":"alice"}`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("emits\n%v\nwant\n%v", got, want)
	}
	if !sp.Host.InRoom(carol1.ID, RoomPrefix+roomList) {
		t.Fatal("observer not joined")
	}
}

// flakyStore fails the exit script while failExit is set.
type flakyStore struct {
	sdk.Store
	failExit atomic.Bool
}

func (s *flakyStore) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	if script == exitScript && s.failExit.Load() {
		return nil, errors.New("injected failure")
	}
	return s.Store.Eval(ctx, script, keys, args...)
}

// TestLeaveRetriedAfterStoreError: a leave whose script failed is retried by
// the refresher, so the user does not stay listed.
func TestLeaveRetriedAfterStoreError(t *testing.T) {
	h := miniredisBackend().newHost(t)
	fs := &flakyStore{Store: h.store}
	h.store = fs
	p := startPlugin(t, h, nil, nil)
	connect(t, p, alice1)
	event(t, p, alice1, EvEnterPage, roomPath)
	fs.failExit.Store(true)
	if _, err := sdktest.Event(t, context.Background(), p, alice1, EvLeavePage, roomPath); err == nil {
		t.Fatal("leave with a failing store succeeded")
	}
	p.refreshAll(context.Background()) // still failing: nothing changes
	wantMembers(t, h, roomList, "alice")
	wantDeltas(t, h, EvLeft)
	fs.failExit.Store(false)
	p.refreshAll(context.Background())
	wantMembers(t, h, roomList)
	wantDeltas(t, h, EvLeft, Delta{roomList, "alice"})
	wantNoKeys(t, h)
}
