package analytics

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestValidation(t *testing.T) {
	tests := []struct {
		name    string
		s       sdk.Socket
		args    []any
		wantKey string // counter that must be 1; "" = nothing counted
	}{
		{name: "item", args: []any{view(item1, "Item")}, wantKey: CountKey("Item", item1)},
		{name: "element", args: []any{view(elem1, "Element")}, wantKey: CountKey("Element", elem1)},
		{name: "hls stream", args: []any{view(room1, "Room.HLSStream")}, wantKey: CountKey("Room.HLSStream", room1)},
		{name: "upper-case UUID counts under the lower-case key", args: []any{view(strings.ToUpper(item1), "Item")}, wantKey: CountKey("Item", item1)},
		{name: "nil UUID", args: []any{view("00000000-0000-0000-0000-000000000000", "Item")}, wantKey: CountKey("Item", "00000000-0000-0000-0000-000000000000")},
		{name: "superfluous keys are allowed", args: []any{map[string]any{"identifier": item1, "contentType": "Item", "extra": 1}}, wantKey: CountKey("Item", item1)},
		{name: "extra arguments are ignored", args: []any{view(item1, "Item"), "cb"}, wantKey: CountKey("Item", item1)},
		{name: "no argument", args: nil},
		{name: "null", args: []any{nil}},
		{name: "zero", args: []any{0}},
		{name: "a string", args: []any{item1}},
		{name: "an array", args: []any{[]any{item1, "Item"}}},
		{name: "missing identifier", args: []any{map[string]any{"contentType": "Item"}}},
		{name: "missing contentType", args: []any{map[string]any{"identifier": item1}}},
		{name: "non-string identifier", args: []any{map[string]any{"identifier": 7, "contentType": "Item"}}},
		{name: "identifier not a UUID", args: []any{view("item-1", "Item")}},
		{name: "UUID version 6", args: []any{view("6f1c1b2e-3a4b-6c5d-8e9f-0a1b2c3d4e5f", "Item")}},
		{name: "huge identifier", args: []any{view(strings.Repeat("a", 1<<16), "Item")}},
		{name: "contentType case differs", args: []any{view(item1, "item")}},
		{name: "unknown contentType", args: []any{view(item1, "Room")}},
		{name: "null contentType", args: []any{map[string]any{"identifier": item1, "contentType": nil}}},
		{name: "socket without a conference", s: nobody, args: []any{view(item1, "Item")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sdktest.NewHost()
			defer h.Close()
			p, _ := newTestPlugin(t, h, nil)
			s := tt.s
			if s.ID == "" {
				s = alice
			}
			ack, err := sdktest.Event(t, context.Background(), p, s, EventViewCount, tt.args...)
			if err != nil || ack != nil {
				t.Fatalf("ack %v, err %v; want neither", ack, err)
			}
			keys := h.Redis().Keys()
			if tt.wantKey == "" {
				if len(keys) != 0 {
					t.Fatalf("keys = %v, want none", keys)
				}
				return
			}
			if len(keys) != 1 || keys[0] != tt.wantKey {
				t.Fatalf("keys = %v, want [%s]", keys, tt.wantKey)
			}
			if v, _ := h.Redis().Get(tt.wantKey); v != "1" {
				t.Errorf("%s = %q, want 1", tt.wantKey, v)
			}
		})
	}
}

// viewStep is one view event at a clock offset.
type viewStep struct {
	s     sdk.Socket
	id    string
	after time.Duration // advance the clock first
	disc  bool          // disconnect s instead of viewing
}

func TestRateLimitAndDedupe(t *testing.T) {
	ids := []string{
		"00000001-0000-4000-8000-000000000000", "00000002-0000-4000-8000-000000000000",
		"00000003-0000-4000-8000-000000000000", "00000004-0000-4000-8000-000000000000",
		"00000005-0000-4000-8000-000000000000", "00000006-0000-4000-8000-000000000000",
		"00000007-0000-4000-8000-000000000000",
	}
	tests := []struct {
		name  string
		cfg   map[string]any
		steps []viewStep
		want  map[string]string // counter per identifier; others must not exist
	}{
		{
			name:  "the same content twice in the window counts once",
			steps: []viewStep{{s: alice, id: item1}, {s: alice, id: item1, after: 30 * time.Second}},
			want:  map[string]string{item1: "1"},
		},
		{
			name:  "after the window it counts again",
			steps: []viewStep{{s: alice, id: item1}, {s: alice, id: item1, after: 61 * time.Second}},
			want:  map[string]string{item1: "2"},
		},
		{
			name:  "dedupe is per socket",
			steps: []viewStep{{s: alice, id: item1}, {s: bob, id: item1}},
			want:  map[string]string{item1: "2"},
		},
		{
			name:  "dedupe off",
			cfg:   map[string]any{"dedupe_window": "0s"},
			steps: []viewStep{{s: alice, id: item1}, {s: alice, id: item1}, {s: alice, id: item1}},
			want:  map[string]string{item1: "3"},
		},
		{
			name: "the burst is 5, then 1 per second",
			steps: []viewStep{
				{s: alice, id: ids[0]}, {s: alice, id: ids[1]}, {s: alice, id: ids[2]}, {s: alice, id: ids[3]},
				{s: alice, id: ids[4]}, {s: alice, id: ids[5]}, // 6th: limited
				{s: alice, id: ids[6], after: time.Second}, // a token again
			},
			want: map[string]string{ids[0]: "1", ids[1]: "1", ids[2]: "1", ids[3]: "1", ids[4]: "1", ids[6]: "1"},
		},
		{
			name:  "a rate-limited view is not remembered as counted",
			cfg:   map[string]any{"view_burst": 1},
			steps: []viewStep{{s: alice, id: ids[0]}, {s: alice, id: ids[1]}, {s: alice, id: ids[1], after: time.Second}},
			want:  map[string]string{ids[0]: "1", ids[1]: "1"},
		},
		{
			name:  "a disconnect forgets the socket",
			steps: []viewStep{{s: alice, id: item1}, {s: alice, disc: true}, {s: alice, id: item1}},
			want:  map[string]string{item1: "2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sdktest.NewHost()
			defer h.Close()
			p, c := newTestPlugin(t, h, tt.cfg)
			ctx := context.Background()
			for _, st := range tt.steps {
				c.add(st.after)
				if st.disc {
					if err := p.OnDisconnect(ctx, st.s, "transport close"); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if _, err := sdktest.Event(t, ctx, p, st.s, EventViewCount, view(st.id, "Item")); err != nil {
					t.Fatal(err)
				}
			}
			keys := h.Redis().Keys()
			if len(keys) != len(tt.want) {
				t.Errorf("keys = %v, want %d", keys, len(tt.want))
			}
			for id, want := range tt.want {
				if got, _ := h.Redis().Get(CountKey("Item", id)); got != want {
					t.Errorf("count of %s = %q, want %q", id, got, want)
				}
			}
		})
	}
}

// The dedupe memory of a socket is bounded.
func TestDedupeBound(t *testing.T) {
	h := sdktest.NewHost()
	defer h.Close()
	p, c := newTestPlugin(t, h, map[string]any{"views_per_second": 1000, "view_burst": 1000, "dedupe_window": "1h"})
	for i := range maxSeenPerSocket + 10 {
		if why := p.admit("s", CountKey("Item", string(rune(i)))); why != "" && i < maxSeenPerSocket {
			t.Fatalf("view %d refused: %s", i, why)
		} else if why == "" && i >= maxSeenPerSocket {
			t.Fatalf("view %d admitted beyond the bound", i)
		}
		c.add(time.Millisecond)
	}
	c.add(time.Hour) // everything expired: pruned on the next view
	if why := p.admit("s", "new"); why != "" {
		t.Fatalf("after the window: %s", why)
	}
	p.mu.Lock()
	n := len(p.sockets["s"].seen)
	p.mu.Unlock()
	if n != 1 {
		t.Errorf("%d dedupe entries after pruning, want 1", n)
	}
}

func TestDescribe(t *testing.T) {
	d := New().Describe()
	if d.Name != "analytics" || len(d.Events) != 1 || d.Events[0] != EventViewCount || len(d.Routes) != 0 || len(d.Queues) != 0 {
		t.Fatalf("descriptor = %+v", d)
	}
	if f, ok := sdk.Lookup("analytics"); !ok || f() == nil {
		t.Error("analytics is not registered")
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
			if c.WritebackInterval.D != DefaultWritebackInterval || c.ViewsPerSecond != 1 || c.ViewBurst != 5 || c.DedupeWindow.D != DefaultDedupeWindow || c.GraphQLURL != "" {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "null gives defaults", raw: `null`},
		{name: "host-injected keys", raw: `{"graphql_url":"http://hasura:8080/v1/graphql","admin_secret":"a"}`, check: func(t *testing.T, c Config) {
			if c.GraphQLURL != "http://hasura:8080/v1/graphql" || c.AdminSecret != "a" {
				t.Errorf("parsed = %+v", c)
			}
		}},
		{name: "all keys", raw: `{"graphql_url":"https://h/v1/graphql","admin_secret":"a","writeback_interval":"5m","views_per_second":0.5,"view_burst":2,"dedupe_window":"0s"}`,
			check: func(t *testing.T, c Config) {
				if c.WritebackInterval.D != 5*time.Minute || c.ViewsPerSecond != 0.5 || c.ViewBurst != 2 || c.DedupeWindow.D != 0 || !c.DedupeWindow.Set {
					t.Errorf("parsed = %+v", c)
				}
			}},
		{name: "unknown key", raw: `{"graphql_uri":"x"}`, wantErr: "graphql_uri"},
		{name: "wrong type", raw: `{"view_burst":"5"}`, wantErr: "view_burst"},
		{name: "bad duration", raw: `{"writeback_interval":"often"}`, wantErr: "writeback_interval"},
		{name: "numeric duration", raw: `{"dedupe_window":60}`, wantErr: "dedupe_window"},
		{name: "interval too short", raw: `{"writeback_interval":"10ms"}`, wantErr: "writeback_interval"},
		{name: "negative rate", raw: `{"views_per_second":-1}`, wantErr: "views_per_second"},
		{name: "huge burst", raw: `{"view_burst":100000}`, wantErr: "view_burst"},
		{name: "negative window", raw: `{"dedupe_window":"-1s"}`, wantErr: "dedupe_window"},
		{name: "bad url", raw: `{"graphql_url":"hasura"}`, wantErr: "graphql_url"},
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
}
