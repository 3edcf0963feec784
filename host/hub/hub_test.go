package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
)

type fakeConn struct {
	mu           sync.Mutex
	frames       []string
	disconnected bool
}

func (c *fakeConn) Send(f []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, string(f))
	return nil
}
func (c *fakeConn) Disconnect() { c.mu.Lock(); c.disconnected = true; c.mu.Unlock() }
func (c *fakeConn) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.frames...)
}

func encode(event string, args []json.RawMessage) []byte {
	b, _ := json.Marshal(append([]any{event}, toAny(args)...))
	return append([]byte("42"), b...)
}

func toAny(args []json.RawMessage) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

func add(t *testing.T, h *Hub, id, user string) *fakeConn {
	t.Helper()
	c := &fakeConn{}
	if err := h.Add(context.Background(), sdk.Socket{ID: id, UserID: user}, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocalRoomsAndTargets(t *testing.T) {
	ctx := context.Background()
	h := New("inst0001", encode, nil, nil)
	a1 := add(t, h, "inst0001aaaa", "alice")
	a2 := add(t, h, "inst0001aaab", "alice")
	b := add(t, h, "inst0001bbbb", "bob")

	if err := h.Join(ctx, "inst0001aaaa", "room1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Join(ctx, "inst0001bbbb", "room1"); err != nil {
		t.Fatal(err)
	}
	arg := []json.RawMessage{json.RawMessage(`1`)}
	must(t, h.Emit(ctx, sdk.RoomTarget("room1"), "r", arg))
	must(t, h.Emit(ctx, sdk.UserTarget("alice"), "u", arg))
	must(t, h.Emit(ctx, sdk.SocketTarget("inst0001bbbb"), "s", arg))

	want := map[*fakeConn][]string{
		a1: {`42["r",1]`, `42["u",1]`},
		a2: {`42["u",1]`},
		b:  {`42["r",1]`, `42["s",1]`},
	}
	for c, w := range want {
		if got := c.got(); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("got %v, want %v", got, w)
		}
	}

	must(t, h.Leave(ctx, "inst0001aaaa", "room1"))
	h.Remove(ctx, "inst0001bbbb")
	if n := h.RoomSize("room1"); n != 0 {
		t.Fatalf("room1 has %d members after leave and remove", n)
	}
	if n := h.Count(); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
	if err := h.Emit(ctx, sdk.SocketTarget("inst0001bbbb"), "s", arg); err == nil {
		t.Fatal("emit to a removed socket without remote: want error")
	}
	if err := h.Add(ctx, sdk.Socket{ID: "inst0001aaaa"}, &fakeConn{}); err == nil {
		t.Fatal("duplicate id accepted")
	}
}

func TestConcurrentJoinLeaveEmit(t *testing.T) {
	ctx := context.Background()
	h := New("inst0001", encode, nil, nil)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("inst0001%04d", i)
		add(t, h, id, "u")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				_ = h.Join(ctx, id, "r")
				_ = h.Emit(ctx, sdk.RoomTarget("r"), "e", nil)
				_ = h.Leave(ctx, id, "r")
			}
			h.Remove(ctx, id)
		}()
	}
	wg.Wait()
	if h.Count() != 0 || h.RoomSize("r") != 0 {
		t.Fatalf("leftovers: count %d, room %d", h.Count(), h.RoomSize("r"))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrossInstance runs two hubs on the machine's Redis: emits to a room, a
// user and a socket made on instance B reach the socket on instance A.
func TestCrossInstance(t *testing.T) {
	url := testenv.RedisURL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()

	mk := func(id string) *Hub {
		h := New(id, encode, nil, nil)
		r, err := NewRedisRemote(ctx, client, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		h.SetRemote(r)
		t.Cleanup(func() { r.Close() })
		return h
	}
	suffix := fmt.Sprintf("%04d", time.Now().UnixNano()%10000)
	a, b := mk("A"+suffix+"xyz"), mk("B"+suffix+"xyz")
	sa := a.InstanceID() + "sock1"
	ca := add(t, a, sa, "carol-"+suffix)
	room := "room-" + suffix
	must(t, a.Join(ctx, sa, room))

	arg := []json.RawMessage{json.RawMessage(`"x"`)}
	must(t, b.Emit(ctx, sdk.RoomTarget(room), "room", arg))
	must(t, b.Emit(ctx, sdk.UserTarget("carol-"+suffix), "user", arg))
	must(t, b.Emit(ctx, sdk.SocketTarget(sa), "sock", arg))
	// A room change requested on B for A's socket is applied on A.
	must(t, b.Join(ctx, sa, room+"-2"))

	want := []string{`42["room","x"]`, `42["user","x"]`, `42["sock","x"]`}
	waitFor(t, func() bool { return len(ca.got()) >= 3 && a.RoomSize(room+"-2") == 1 })
	if got := ca.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("A's socket got %v, want %v", got, want)
	}

	// After the last member leaves, A no longer receives the room.
	must(t, a.Leave(ctx, sa, room))
	must(t, b.Emit(ctx, sdk.RoomTarget(room), "late", arg))
	must(t, b.Emit(ctx, sdk.SocketTarget(sa), "marker", arg))
	waitFor(t, func() bool { return len(ca.got()) >= 4 })
	if got := ca.got(); got[3] != `42["marker","x"]` {
		t.Fatalf("after leave got %v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// batchConn records which send a frame came through.
type batchConn struct {
	fakeConn
	batched int
}

func (c *batchConn) SendBatched(f []byte) error {
	c.mu.Lock()
	c.batched++
	c.mu.Unlock()
	return c.Send(f)
}

func TestBigRoomsSendBatched(t *testing.T) {
	ctx := context.Background()
	h := New("inst0001", encode, nil, nil)
	var conns []*batchConn
	for i := range BatchMinMembers {
		c := &batchConn{}
		if err := h.Add(ctx, sdk.Socket{ID: c2id(i), UserID: fmt.Sprint("u", i)}, c); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i < 2 {
			if err := h.Join(ctx, c2id(i), "small"); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Join(ctx, c2id(i), "big"); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.DeliverLocal("small", []byte("s")); n != 2 {
		t.Fatalf("small room delivered to %d", n)
	}
	if err := h.EmitFrameToSocket(ctx, c2id(0), []byte("d")); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if c.batched != 0 {
			t.Fatalf("conn %d: small-room or direct frame sent batched", i)
		}
	}
	if n := h.DeliverLocal("big", []byte("b")); n != BatchMinMembers {
		t.Fatalf("big room delivered to %d", n)
	}
	for i, c := range conns {
		if c.batched != 1 {
			t.Fatalf("conn %d: %d batched sends, want 1", i, c.batched)
		}
		got := c.got()
		if got[len(got)-1] != "b" {
			t.Fatalf("conn %d got %q", i, got)
		}
	}
}

func c2id(i int) string { return fmt.Sprintf("inst0001s%d", i) }
