package hub

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// The own-id room is a flag on the socket rather than an entry in Hub.rooms
// (memory, see Socket): it must still behave like any other room.
func TestOwnRoomBehavesLikeARoom(t *testing.T) {
	ctx := context.Background()
	h := New("inst0001", encode, nil, nil)
	a := add(t, h, "inst0001aaaa", "alice")
	b := add(t, h, "inst0001bbbb", "bob")

	rooms := h.Rooms("inst0001aaaa")
	slices.Sort(rooms)
	if want := []string{"inst0001aaaa", UserRoom("alice")}; !slices.Equal(rooms, want) {
		t.Fatalf("rooms = %v, want %v", rooms, want)
	}
	if n := h.RoomSize("inst0001aaaa"); n != 1 {
		t.Fatalf("own room size %d, want 1", n)
	}

	// Another socket may join a socket's room: both get its frames.
	must(t, h.Join(ctx, "inst0001bbbb", "inst0001aaaa"))
	if n := h.RoomSize("inst0001aaaa"); n != 2 {
		t.Fatalf("own room size after b joined %d, want 2", n)
	}
	if n := h.DeliverLocal("inst0001aaaa", []byte("1")); n != 2 {
		t.Fatalf("delivered to %d, want 2", n)
	}

	// Leaving one's own room stops its frames to the socket; joining again
	// (twice: idempotent) restores them.
	must(t, h.Leave(ctx, "inst0001aaaa", "inst0001aaaa"))
	if n := h.DeliverLocal("inst0001aaaa", []byte("2")); n != 1 {
		t.Fatalf("delivered to %d after leave, want 1 (b)", n)
	}
	if slices.Contains(h.Rooms("inst0001aaaa"), "inst0001aaaa") {
		t.Fatal("own room still listed after leave")
	}
	must(t, h.Join(ctx, "inst0001aaaa", "inst0001aaaa"))
	must(t, h.Join(ctx, "inst0001aaaa", "inst0001aaaa"))
	must(t, h.Leave(ctx, "inst0001bbbb", "inst0001aaaa"))
	if n := h.DeliverLocal("inst0001aaaa", []byte("3")); n != 1 {
		t.Fatalf("delivered to %d after rejoin, want 1 (a)", n)
	}
	if got, want := fmt.Sprint(a.got()), "[1 3]"; got != want {
		t.Fatalf("a got %v, want %v", got, want)
	}
	if got, want := fmt.Sprint(b.got()), "[1 2]"; got != want {
		t.Fatalf("b got %v, want %v", got, want)
	}

	// Remove takes the socket out of its own room too.
	h.Remove(ctx, "inst0001aaaa")
	if n := h.RoomSize("inst0001aaaa"); n != 0 {
		t.Fatalf("own room size after remove %d", n)
	}
	if err := h.Join(ctx, "inst0001aaaa", "x"); err == nil {
		t.Fatal("join of a removed socket without remote: want error")
	}
}

// A socket's rooms are a slice: joins and leaves in any order keep it and
// the rooms' member sets consistent, and repeated joins are idempotent.
func TestSocketRoomSet(t *testing.T) {
	ctx := context.Background()
	h := New("inst0001", encode, nil, nil)
	add(t, h, "inst0001aaaa", "alice")
	add(t, h, "inst0001bbbb", "alice")
	for i := range 20 {
		must(t, h.Join(ctx, "inst0001aaaa", fmt.Sprint("r", i)))
		must(t, h.Join(ctx, "inst0001aaaa", fmt.Sprint("r", i)))
	}
	must(t, h.Join(ctx, "inst0001bbbb", "r5"))
	for i := 0; i < 20; i += 2 {
		must(t, h.Leave(ctx, "inst0001aaaa", fmt.Sprint("r", i)))
	}
	must(t, h.Leave(ctx, "inst0001aaaa", "never-joined"))
	rooms := h.Rooms("inst0001aaaa")
	if len(rooms) != 2+10 {
		t.Fatalf("rooms = %v, want own, user and 10 odd ones", rooms)
	}
	for i := range 20 {
		want := i%2 == 1
		if got := slices.Contains(rooms, fmt.Sprint("r", i)); got != want {
			t.Fatalf("r%d listed %v, want %v (%v)", i, got, want, rooms)
		}
	}
	if n := h.RoomSize("r5"); n != 2 {
		t.Fatalf("r5 size %d, want 2", n)
	}
	if n := h.RoomSize(UserRoom("alice")); n != 2 {
		t.Fatalf("user room size %d, want 2", n)
	}
	h.Remove(ctx, "inst0001aaaa")
	if n := h.RoomSize("r5"); n != 1 {
		t.Fatalf("r5 size after remove %d, want 1", n)
	}
	if n := h.RoomSize("r7"); n != 0 {
		t.Fatalf("r7 size after remove %d, want 0", n)
	}
	h.Remove(ctx, "inst0001bbbb")
	h.mu.RLock()
	left := len(h.rooms)
	h.mu.RUnlock()
	if left != 0 {
		t.Fatalf("%d rooms left after every socket was removed", left)
	}
	if _, ok := h.Get("inst0001bbbb"); ok {
		t.Fatal("removed socket still registered")
	}
}

// recRemote records subscriptions.
type recRemote struct {
	mu   sync.Mutex
	subs map[string]int // room -> subscribe count minus unsubscribe count
	ops  []string
}

func (r *recRemote) Subscribe(_ context.Context, room string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs[room]++
	r.ops = append(r.ops, "sub "+room)
	return nil
}

func (r *recRemote) Unsubscribe(_ context.Context, room string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs[room]--
	r.ops = append(r.ops, "unsub "+room)
	return nil
}

func (*recRemote) PublishRoom(context.Context, string, []byte) error { return nil }
func (*recRemote) PublishInstance(context.Context, string, InstanceMessage) error {
	return nil
}

// Own-id rooms are never subscribed; other rooms are subscribed by their
// first local member and unsubscribed when the last one leaves, even when
// one of the members is a socket whose own room it is.
func TestRoomSubscriptions(t *testing.T) {
	ctx := context.Background()
	r := &recRemote{subs: map[string]int{}}
	h := New("inst0001", encode, r, nil)
	add(t, h, "inst0001aaaa", "alice")
	add(t, h, "inst0001bbbb", "alice")
	must(t, h.Join(ctx, "inst0001aaaa", "chat"))
	must(t, h.Join(ctx, "inst0001bbbb", "chat"))
	// b joins a's own room: a is in it already, so it is not a first member.
	must(t, h.Join(ctx, "inst0001bbbb", "inst0001aaaa"))
	must(t, h.Leave(ctx, "inst0001aaaa", "inst0001aaaa"))
	must(t, h.Leave(ctx, "inst0001aaaa", "chat"))
	h.Remove(ctx, "inst0001aaaa")
	h.Remove(ctx, "inst0001bbbb")
	r.mu.Lock()
	defer r.mu.Unlock()
	want := []string{"sub " + UserRoom("alice"), "sub chat", "unsub chat", "unsub " + UserRoom("alice")}
	got := slices.Clone(r.ops)
	slices.Sort(got[2:]) // Remove leaves its rooms in no set order
	if !slices.Equal(got, want) {
		t.Fatalf("remote ops %v, want %v", got, want)
	}
}
