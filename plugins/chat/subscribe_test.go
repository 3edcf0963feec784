package chat

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestSubscribe(t *testing.T) {
	tests := []struct {
		name     string
		args     []any
		dirErr   bool
		wantJoin bool
	}{
		{name: "allowed", args: []any{chat1}, wantJoin: true},
		{name: "forbidden", args: []any{chat2}},
		{name: "directory error", args: []any{chat1}, dirErr: true},
		{name: "not a string", args: []any{42}},
		{name: "empty", args: []any{""}},
		{name: "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := newTestPlugin(t, nil)
			if tt.dirErr {
				h.Dir.CanSelectChatFunc = func(context.Context, sdk.Socket, string) (bool, error) { return false, errDir }
			}
			if _, err := sdktest.Event(t, context.Background(), p, alice, EventSubscribe, tt.args...); err != nil {
				t.Fatal(err)
			}
			mr := h.Redis()
			if got := h.InRoom(alice.ID, chatRoom(chat1)); got != tt.wantJoin {
				t.Fatalf("in room = %v, want %v", got, tt.wantJoin)
			}
			acks := emitsNamed(h, "chat.subscribe.ack")
			if !tt.wantJoin {
				if len(acks) != 0 || len(h.Joins()) != 0 || len(mr.Keys()) != 0 {
					t.Errorf("refused subscribe left traces: acks %v joins %v keys %v", acks, h.Joins(), mr.Keys())
				}
				return
			}
			if len(acks) != 1 || acks[0].To != sdk.SocketTarget(alice.ID) || argsJSON(acks[0]) != `["`+chat1+`"]` {
				t.Errorf("acks = %+v", acks)
			}
			if ok, _ := mr.SIsMember(listenersKey(chat1), "sA¬alice"); !ok {
				t.Error("listener not recorded")
			}
			if ok, _ := mr.SIsMember(socketChatsKey("sA"), chat1); !ok {
				t.Error("socket's chat not recorded")
			}
			if mr.TTL(socketChatsKey("sA")) != socketKeyTTL || mr.TTL(listenersKey(chat1)) != listenersTTL {
				t.Errorf("TTLs = %v, %v", mr.TTL(socketChatsKey("sA")), mr.TTL(listenersKey(chat1)))
			}

			// Unsubscribe leaves and forgets, without a permission check.
			h.Dir.CanSelectChatFunc = nil
			if _, err := sdktest.Event(t, context.Background(), p, alice, EventUnsubscribe, chat1); err != nil {
				t.Fatal(err)
			}
			if h.InRoom(alice.ID, chatRoom(chat1)) {
				t.Error("still in the room after unsubscribe")
			}
			if mr.Exists(listenersKey(chat1)) || mr.Exists(socketChatsKey("sA")) {
				t.Errorf("keys left after unsubscribe: %v", mr.Keys())
			}
		})
	}
}

func TestDisconnectCleansUp(t *testing.T) {
	p, h := newTestPlugin(t, nil)
	ctx := context.Background()
	if err := p.OnConnect(ctx, alice); err != nil {
		t.Fatal(err)
	}
	h.Dir.CanSelectChatFunc = func(context.Context, sdk.Socket, string) (bool, error) { return true, nil }
	for _, c := range []string{chat1, chat2} {
		if _, err := sdktest.Event(t, ctx, p, alice, EventSubscribe, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sdktest.Event(t, ctx, p, bob, EventSubscribe, chat1); err != nil {
		t.Fatal(err)
	}
	if err := p.OnDisconnect(ctx, alice, "transport close"); err != nil {
		t.Fatal(err)
	}
	mr := h.Redis()
	if mr.Exists(socketChatsKey("sA")) || mr.Exists(listenersKey(chat2)) {
		t.Errorf("alice's keys left: %v", mr.Keys())
	}
	members, err := mr.Members(listenersKey(chat1))
	if err != nil || !slices.Equal(members, []string{"sB¬bob"}) {
		t.Errorf("chat1 listeners = %v, %v; want only bob", members, err)
	}
	p.mu.Lock()
	_, tracked := p.local["sA"]
	p.mu.Unlock()
	if tracked {
		t.Error("alice still tracked as a local socket")
	}
}

// OnConnect (replayed after a plugin restart) reloads a socket's chats so
// the refresh loop keeps their keys alive.
func TestConnectReloadsAndRefreshKeepsKeys(t *testing.T) {
	p, h := newTestPlugin(t, nil)
	ctx := context.Background()
	mr := h.Redis()
	if _, err := mr.SAdd(socketChatsKey("sA"), chat1); err != nil {
		t.Fatal(err)
	}
	if _, err := mr.SAdd(listenersKey(chat1), "sA¬alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.OnConnect(ctx, alice); err != nil {
		t.Fatal(err)
	}
	p.refreshKeys(ctx)
	if mr.TTL(socketChatsKey("sA")) != socketKeyTTL || mr.TTL(listenersKey(chat1)) != listenersTTL {
		t.Errorf("TTLs after refresh = %v, %v", mr.TTL(socketChatsKey("sA")), mr.TTL(listenersKey(chat1)))
	}
}

func TestRegistrantRooms(t *testing.T) {
	tests := []struct {
		name     string
		event    string
		arg      any
		regErr   bool
		wantRoom string
		wantJoin bool // else leave
	}{
		{name: "subscriptions on, own registrant", event: EventSubscriptionsChangedOn, arg: regAlice, wantRoom: "chat:chat.subscriptions." + regAlice, wantJoin: true},
		{name: "subscriptions off, own registrant", event: EventSubscriptionsChangedOff, arg: regAlice, wantRoom: "chat:chat.subscriptions." + regAlice},
		{name: "pins on, own registrant", event: EventPinsChangedOn, arg: regAlice, wantRoom: "chat:chat.pins." + regAlice, wantJoin: true},
		{name: "pins off, own registrant", event: EventPinsChangedOff, arg: regAlice, wantRoom: "chat:chat.pins." + regAlice},
		{name: "someone else's registrant", event: EventPinsChangedOn, arg: regBob},
		{name: "unknown registrant", event: EventSubscriptionsChangedOn, arg: "ffffffff-ffff-4fff-8fff-ffffffffffff"},
		{name: "directory error", event: EventSubscriptionsChangedOn, arg: regAlice, regErr: true},
		{name: "not a string", event: EventPinsChangedOn, arg: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := newTestPlugin(t, nil)
			if tt.regErr {
				h.Dir.RegistrantFunc = func(context.Context, string) (sdk.Registrant, bool, error) {
					return sdk.Registrant{}, false, errors.New("down")
				}
			}
			if _, err := sdktest.Event(t, context.Background(), p, alice, tt.event, tt.arg); err != nil {
				t.Fatal(err)
			}
			joins, leaves := h.Joins(), h.Leaves()
			want := []sdktest.RoomCall{}
			if tt.wantRoom != "" {
				want = []sdktest.RoomCall{{SocketID: alice.ID, Room: tt.wantRoom}}
			}
			got := leaves
			other := joins
			if tt.wantJoin {
				got, other = joins, leaves
			}
			if len(other) != 0 || len(got) != len(want) || (len(want) == 1 && got[0] != want[0]) {
				t.Errorf("joins %v leaves %v, want %v (join %v)", joins, leaves, want, tt.wantJoin)
			}
		})
	}
}
