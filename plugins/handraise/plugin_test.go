package handraise

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// step is one client event, made at clock time ms (0 = unchanged).
type step struct {
	s    sdk.Socket
	name string
	args []any
	ms   int64
}

type wantEmit struct {
	to    sdk.Target
	event string
	args  string // JSON array of the args
}

func TestEvents(t *testing.T) {
	room := sdk.RoomTarget(Room(ev1))
	raised := func(u string) wantEmit {
		return wantEmit{room, EmitRaised, `[{"eventId":"` + ev1 + `","userId":"` + u + `"}]`}
	}
	tests := []struct {
		name      string
		cfg       map[string]any
		steps     []step
		wantEmits []wantEmit // after the steps; nil = none
		wantHands []string   // hands of ev1, oldest first
		wantRoom  []string   // sockets that must be in ev1's room
		notInRoom []string   // sockets that must not be
	}{
		{
			name: "raise orders hands by time and broadcasts",
			steps: []step{
				{s: bob, name: EventRaise, args: []any{ev1}, ms: 2000},
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
			},
			wantEmits: []wantEmit{raised("bob"), raised("alice")},
			wantHands: []string{"alice", "bob"},
		},
		{
			name: "raising again keeps the first raise time",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: bob, name: EventRaise, args: []any{ev1}, ms: 2000},
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 3000},
			},
			wantEmits: []wantEmit{raised("alice"), raised("bob"), raised("alice")},
			wantHands: []string{"alice", "bob"},
		},
		{
			name: "lower removes only the sender's hand",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: bob, name: EventRaise, args: []any{ev1}, ms: 2000},
				{s: alice, name: EventLower, args: []any{ev1, "bob"}},
			},
			wantEmits: []wantEmit{raised("alice"), raised("bob"), {room, EmitLowered, `[{"eventId":"` + ev1 + `","userId":"alice"}]`}},
			wantHands: []string{"bob"},
		},
		{
			name: "fetch lists hands oldest first to the socket only and joins the room",
			steps: []step{
				{s: bob, name: EventRaise, args: []any{ev1}, ms: 5000},
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 4000},
				{s: chair, name: EventFetch, args: []any{ev1}},
			},
			wantEmits: []wantEmit{raised("bob"), raised("alice"), {sdk.SocketTarget("sC"), EmitListing, `[{"eventId":"` + ev1 + `","userIds":["alice","bob"]}]`}},
			wantHands: []string{"alice", "bob"},
			wantRoom:  []string{"sC"},
		},
		{
			name:      "fetch of an event without hands lists an empty array",
			steps:     []step{{s: alice, name: EventFetch, args: []any{ev1}}},
			wantEmits: []wantEmit{{sdk.SocketTarget("sA"), EmitListing, `[{"eventId":"` + ev1 + `","userIds":[]}]`}},
			wantRoom:  []string{"sA"},
		},
		{
			name: "a chair accepts: hand removed, accepted broadcast with a null eventPerson",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: chair, name: EventAccept, args: []any{ev1, "alice"}},
			},
			wantEmits: []wantEmit{raised("alice"), {room, EmitAccepted, `[{"eventId":"` + ev1 + `","userId":"alice","eventPerson":null}]`}},
		},
		{
			name: "a non-chair cannot accept",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: bob, name: EventAccept, args: []any{ev1, "alice"}},
			},
			wantEmits: []wantEmit{raised("alice")},
			wantHands: []string{"alice"},
		},
		{
			name: "a chair rejects",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: bob, name: EventRaise, args: []any{ev1}, ms: 2000},
				{s: chair, name: EventReject, args: []any{ev1, "alice"}},
			},
			wantEmits: []wantEmit{raised("alice"), raised("bob"), {room, EmitRejected, `[{"eventId":"` + ev1 + `","userId":"alice"}]`}},
			wantHands: []string{"bob"},
		},
		{
			name: "a non-chair cannot reject",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: bob, name: EventReject, args: []any{ev1, "alice"}},
			},
			wantEmits: []wantEmit{raised("alice")},
			wantHands: []string{"alice"},
		},
		{
			name: "require_chair false lets any attendee accept (the original)",
			cfg:  map[string]any{"require_chair": false},
			steps: []step{
				{s: alice, name: EventRaise, args: []any{ev1}, ms: 1000},
				{s: bob, name: EventAccept, args: []any{ev1, "alice"}},
			},
			wantEmits: []wantEmit{raised("alice"), {room, EmitAccepted, `[{"eventId":"` + ev1 + `","userId":"alice","eventPerson":null}]`}},
		},
		{
			name:     "observe joins the room",
			steps:    []step{{s: alice, name: EventObserve, args: []any{ev1}}},
			wantRoom: []string{"sA"},
		},
		{
			name: "unobserve leaves, without a permission check",
			steps: []step{
				{s: mallory, name: EventUnobserve, args: []any{ev1}},
				{s: alice, name: EventObserve, args: []any{ev1}},
				{s: alice, name: EventUnobserve, args: []any{ev1}},
			},
			notInRoom: []string{"sA"},
		},
		{
			name: "a reconnected observer that only fetches is back in the room",
			steps: []step{
				{s: alice, name: EventObserve, args: []any{ev1}},
				// reconnect: a new socket of the same user, which sends only fetch
				{s: sdktest.Socket("sA2", "alice", "conf1"), name: EventFetch, args: []any{ev1}},
				{s: bob, name: EventRaise, args: []any{ev1}, ms: 1000},
			},
			wantEmits: []wantEmit{{sdk.SocketTarget("sA2"), EmitListing, `[{"eventId":"` + ev1 + `","userIds":[]}]`}, raised("bob")},
			wantHands: []string{"bob"},
			wantRoom:  []string{"sA", "sA2"},
		},
		{
			name: "no access: every event is refused",
			steps: []step{
				{s: mallory, name: EventRaise, args: []any{ev1}},
				{s: mallory, name: EventFetch, args: []any{ev1}},
				{s: mallory, name: EventObserve, args: []any{ev1}},
				{s: mallory, name: EventLower, args: []any{ev1}},
			},
			notInRoom: []string{"sM"},
		},
		{
			name: "directory errors refuse",
			steps: []step{
				{s: alice, name: EventRaise, args: []any{evBroken}},
				{s: alice, name: EventObserve, args: []any{evBroken}},
			},
		},
		{
			name: "bad input is ignored",
			steps: []step{
				{s: alice, name: EventRaise},
				{s: alice, name: EventRaise, args: []any{nil}},
				{s: alice, name: EventRaise, args: []any{""}},
				{s: alice, name: EventRaise, args: []any{0}},
				{s: alice, name: EventRaise, args: []any{false}},
				{s: alice, name: EventRaise, args: []any{42}},
				{s: alice, name: EventRaise, args: []any{[]string{ev1}}},
				{s: alice, name: EventRaise, args: []any{map[string]string{"eventId": ev1}}},
				{s: alice, name: EventRaise, args: []any{"not-a-uuid"}},
				{s: alice, name: EventRaise, args: []any{strings.Repeat("a", 100000)}},
				{s: alice, name: EventFetch, args: []any{"6f1c1b2e-3a4b-6c5d-8e9f-0a1b2c3d4e5f"}}, // version 6
				{s: chair, name: EventAccept, args: []any{ev1}},
				{s: chair, name: EventAccept, args: []any{ev1, 7}},
				{s: chair, name: EventReject, args: []any{ev1, strings.Repeat("u", maxUserIDLen+1)}},
				{s: alice, name: "event.handRaise.other", args: []any{ev1}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h, c := newTestPlugin(t, tt.cfg)
			ctx := context.Background()
			for i, st := range tt.steps {
				if st.ms != 0 {
					c.ms = st.ms
				}
				ack, err := sdktest.Event(t, ctx, p, st.s, st.name, st.args...)
				if err != nil || ack != nil {
					t.Fatalf("step %d (%s): ack %v, err %v; want neither", i, st.name, ack, err)
				}
			}
			emits := h.Emits()
			if len(emits) != len(tt.wantEmits) {
				t.Fatalf("emits = %+v, want %d", emits, len(tt.wantEmits))
			}
			for i, w := range tt.wantEmits {
				if emits[i].To != w.to || emits[i].Event != w.event || argsJSON(emits[i]) != w.args {
					t.Errorf("emit %d = %s to %+v %s, want %s to %+v %s", i, emits[i].Event, emits[i].To, argsJSON(emits[i]), w.event, w.to, w.args)
				}
			}
			if got := hands(t, h, ev1); !slices.Equal(got, tt.wantHands) {
				t.Errorf("hands = %v, want %v", got, tt.wantHands)
			}
			for _, id := range tt.wantRoom {
				if !h.InRoom(id, Room(ev1)) {
					t.Errorf("%s is not in the room (joins %+v)", id, h.Joins())
				}
			}
			for _, id := range tt.notInRoom {
				if h.InRoom(id, Room(ev1)) {
					t.Errorf("%s is in the room", id)
				}
			}
		})
	}
}

// Raise stamps the raise time and bounds the key's life with hand_ttl.
func TestRaiseScoreAndTTL(t *testing.T) {
	p, h, c := newTestPlugin(t, map[string]any{"hand_ttl": "2h"})
	c.ms = 1234567
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventRaise, ev1); err != nil {
		t.Fatal(err)
	}
	if score, err := h.Redis().ZScore(HandsKey(ev1), "alice"); err != nil || score != 1234567 {
		t.Errorf("score = %v, %v", score, err)
	}
	if ttl := h.Redis().TTL(HandsKey(ev1)); ttl.Hours() != 2 {
		t.Errorf("ttl = %v, want 2h", ttl)
	}
}

func TestDescribe(t *testing.T) {
	d := New().Describe()
	if d.Name != "handraise" || len(d.Events) != 7 || len(d.Routes) != 1 || d.Routes[0].Path != RouteEventEnded || d.Routes[0].Method != "POST" {
		t.Fatalf("descriptor = %+v", d)
	}
	if f, ok := sdk.Lookup("handraise"); !ok || f() == nil {
		t.Error("handraise is not registered")
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr string // substring; "" = ok
		check   func(t *testing.T, c Config)
	}{
		{name: "empty gives defaults", raw: ``, check: func(t *testing.T, c Config) {
			if c.HandTTL.D != DefaultHandTTL || !c.requireChair() || c.EventSecret != "" || c.GraphQLURL != "" {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "null gives defaults", raw: `null`},
		{name: "all keys", raw: `{"event_secret":"s","require_chair":false,"hand_ttl":"3h","graphql_url":"https://h/v1/graphql","admin_secret":"a"}`,
			check: func(t *testing.T, c Config) {
				if c.requireChair() || c.HandTTL.D.Hours() != 3 || c.EventSecret != "s" || c.AdminSecret != "a" {
					t.Errorf("parsed = %+v", c)
				}
			}},
		{name: "unknown key", raw: `{"evnt_secret":"s"}`, wantErr: "evnt_secret"},
		{name: "wrong type", raw: `{"require_chair":"yes"}`, wantErr: "require_chair"},
		{name: "bad duration", raw: `{"hand_ttl":"soon"}`, wantErr: "hand_ttl"},
		{name: "short ttl", raw: `{"hand_ttl":"1s"}`, wantErr: "hand_ttl"},
		{name: "bad url", raw: `{"graphql_url":"ftp://x"}`, wantErr: "graphql_url"},
		{name: "not an object", raw: `[1]`, wantErr: "object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to name %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
	h := sdktest.NewHost()
	defer h.Close()
	if err := New().Start(context.Background(), h, json.RawMessage(`{"x":1}`)); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("Start with an unknown key: %v", err)
	}
}
