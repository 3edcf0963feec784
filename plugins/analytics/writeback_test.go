package analytics

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

var socketSeq atomic.Int64

// countViews sends views from distinct sockets (so neither dedupe nor the
// rate limit applies): n views per "<type>:<id>".
func countViews(t *testing.T, p *Plugin, views map[string]int) {
	t.Helper()
	for k, n := range views {
		ct, id, _ := strings.Cut(k, ":")
		for range n {
			s := sdktest.Socket(fmt.Sprintf("s%d", socketSeq.Add(1)), "u", "conf1")
			if _, err := sdktest.Event(t, context.Background(), p, s, EventViewCount, view(id, ct)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWritebackRounds(t *testing.T) {
	views := map[string]int{"Item:" + item1: 3, "Item:" + item2: 1, "Element:" + elem1: 2, "Room.HLSStream:" + room1: 4}
	want := map[string]float64{"Item:" + item1: 3, "Item:" + item2: 1, "Element:" + elem1: 2, "Room.HLSStream:" + room1: 4}
	tests := []struct {
		name     string
		statuses []int // per request, then 200
		rounds   int
		want     map[string]float64
		left     bool // counts must be left in flight
	}{
		{name: "success clears everything", rounds: 1, want: want},
		{name: "select fails: kept in flight", statuses: []int{500}, rounds: 1, want: map[string]float64{}, left: true},
		{name: "insert fails: kept in flight", statuses: []int{200, 502}, rounds: 1, want: map[string]float64{}, left: true},
		{name: "failure then success writes each count once", statuses: []int{500}, rounds: 2, want: want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHasura{statuses: tt.statuses}
			srv := httptest.NewServer(f)
			defer srv.Close()
			h := sdktest.NewHost()
			defer h.Close()
			p, _ := newTestPlugin(t, h, map[string]any{"graphql_url": srv.URL, "admin_secret": "adm"})
			countViews(t, p, views)
			for range tt.rounds {
				_ = p.writebackRound(context.Background())
			}
			if got := f.written(); !maps.Equal(got, tt.want) {
				t.Errorf("written = %v, want %v", got, tt.want)
			}
			for _, k := range h.Redis().Keys() {
				if strings.HasPrefix(k, CountPrefix) {
					t.Errorf("counter %s left after a round", k)
				}
			}
			if h.Redis().Exists(LockKey) {
				t.Error("lock not released")
			}
			inflight, _ := h.Redis().HKeys(InflightKey)
			if tt.left != (len(inflight) == 4) || (!tt.left && len(inflight) != 0) {
				t.Errorf("in flight = %v, want left=%v", inflight, tt.left)
			}
			for _, s := range f.secrets {
				if s != "adm" {
					t.Errorf("admin secret header = %q", s)
				}
			}
		})
	}
}

// Views counted while a write fails are added to what is in flight.
func TestWritebackFailureKeepsLaterCounts(t *testing.T) {
	f := &fakeHasura{statuses: []int{500}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	h := sdktest.NewHost()
	defer h.Close()
	p, _ := newTestPlugin(t, h, map[string]any{"graphql_url": srv.URL})
	countViews(t, p, map[string]int{"Item:" + item1: 2})
	if err := p.writebackRound(context.Background()); err == nil {
		t.Fatal("round with Hasura down: no error")
	}
	if v := h.Redis().HGet(InflightKey, CountKey("Item", item1)); v != "2" {
		t.Fatalf("in flight = %q, want 2", v)
	}
	countViews(t, p, map[string]int{"Item:" + item1: 3})
	if err := p.writebackRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.written(); got["Item:"+item1] != 5 || len(got) != 1 {
		t.Errorf("written = %v, want 5 views of item1", got)
	}
	if h.Redis().Exists(InflightKey) || h.Redis().Exists(CountKey("Item", item1)) {
		t.Errorf("keys left: %v", h.Redis().Keys())
	}
}

// A recent stats row gets the delta added, with its id (§4.5).
func TestWritebackAddsToRecentRow(t *testing.T) {
	rowID := "99999999-9999-4999-8999-999999999999"
	f := &fakeHasura{existing: `{"analytics_ContentItemStats":[{"id":"` + rowID + `","itemId":"` + item1 + `","viewCount":10}],` +
		`"analytics_ContentElementStats":[],"analytics_RoomStats":[{"id":"r","roomId":"` + strings.ToUpper(room1) + `","hlsViewCount":7}]}`}
	srv := httptest.NewServer(f)
	defer srv.Close()
	h := sdktest.NewHost()
	defer h.Close()
	p, _ := newTestPlugin(t, h, map[string]any{"graphql_url": srv.URL})
	countViews(t, p, map[string]int{"Item:" + item1: 2, "Item:" + item2: 1, "Room.HLSStream:" + room1: 1})
	if err := p.writebackRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.inserts) != 1 {
		t.Fatalf("%d inserts", len(f.inserts))
	}
	ins := f.inserts[0]
	byID := map[string]map[string]any{}
	for _, r := range ins["itemStats"] {
		byID[r["itemId"].(string)] = r
	}
	if r := byID[item1]; r["id"] != rowID || r["viewCount"].(float64) != 12 {
		t.Errorf("item1 row = %v, want id %s and 12 views", r, rowID)
	}
	if r := byID[item2]; r["id"] != nil || r["viewCount"].(float64) != 1 {
		t.Errorf("item2 row = %v, want a new row with 1 view", r)
	}
	if rs := ins["roomStats"]; len(rs) != 1 || rs[0]["id"] != "r" || rs[0]["hlsViewCount"].(float64) != 8 {
		t.Errorf("room rows = %v", rs)
	}
	if es := ins["elementStats"]; len(es) != 0 {
		t.Errorf("element rows = %v", es)
	}
}

// While another instance holds the lock, a round does nothing.
func TestWritebackLocked(t *testing.T) {
	f := &fakeHasura{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	h := sdktest.NewHost()
	defer h.Close()
	p, _ := newTestPlugin(t, h, map[string]any{"graphql_url": srv.URL})
	countViews(t, p, map[string]int{"Item:" + item1: 1})
	if err := h.Redis().Set(LockKey, "other/1"); err != nil {
		t.Fatal(err)
	}
	if err := p.writebackRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	n := f.requests
	f.mu.Unlock()
	if n != 0 || !h.Redis().Exists(CountKey("Item", item1)) {
		t.Errorf("requests = %d, keys = %v: the round ran under another's lock", n, h.Redis().Keys())
	}
	if v, _ := h.Redis().Get(LockKey); v != "other/1" {
		t.Errorf("lock = %q: another's lock was touched", v)
	}
}

// Unusable in-flight entries and counters are dropped or left, never written.
func TestWritebackOddEntries(t *testing.T) {
	f := &fakeHasura{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	h := sdktest.NewHost()
	defer h.Close()
	p, _ := newTestPlugin(t, h, map[string]any{"graphql_url": srv.URL})
	mr := h.Redis()
	mr.HSet(InflightKey, CountKey("Video", item1), "3", CountKey("Item", "x"), "1", CountKey("Item", item2), "zz", CountKey("Item", item1), "2")
	_ = mr.Set(CountKey("Item", elem1), "0")        // the original's GETSET leftovers
	_ = mr.Set(CountKey("Element", elem1), "-4")    // not ours: left alone
	_, _ = mr.SAdd(CountKey("Element", room1), "x") // wrong type: left alone
	if err := p.writebackRound(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.written(); len(got) != 1 || got["Item:"+item1] != 2 {
		t.Errorf("written = %v, want only item1's 2", got)
	}
	if mr.Exists(InflightKey) || mr.Exists(CountKey("Item", elem1)) {
		t.Errorf("keys = %v", mr.Keys())
	}
	if !mr.Exists(CountKey("Element", elem1)) || !mr.Exists(CountKey("Element", room1)) {
		t.Errorf("foreign keys were touched: %v", mr.Keys())
	}
}

// Counts left in flight by a process that died between its write and its
// clean-up are written by the first round after Start (at least once).
func TestWritebackRetriesLeftoversOnStart(t *testing.T) {
	f := &fakeHasura{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	h := sdktest.NewHost()
	defer h.Close()
	h.Redis().HSet(InflightKey, CountKey("Element", elem1), "7")
	rounds := make(chan error, 1)
	p := New()
	p.afterRound = func(err error) {
		select {
		case rounds <- err:
		default:
		}
	}
	sdktest.Start(t, context.Background(), p, h, map[string]any{"graphql_url": srv.URL, "writeback_interval": "1h"})
	select {
	case err := <-rounds:
		if err != nil {
			t.Fatalf("first round: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no round after Start")
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.written(); got["Element:"+elem1] != 7 {
		t.Errorf("written = %v", got)
	}
	if h.Redis().Exists(InflightKey) {
		t.Errorf("in flight left: %v", h.Redis().Keys())
	}
}

// Without graphql_url there is no writeback: counts stay in Redis.
func TestNoWritebackWithoutURL(t *testing.T) {
	h := sdktest.NewHost()
	defer h.Close()
	p := New()
	sdktest.Start(t, context.Background(), p, h, nil)
	countViews(t, p, map[string]int{"Item:" + item1: 1})
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.Redis().Get(CountKey("Item", item1)); v != "1" || h.Redis().Exists(InflightKey) {
		t.Errorf("keys = %v", h.Redis().Keys())
	}
	if p.cancel != nil {
		t.Error("a writeback loop was started")
	}
}

var _ sdk.Plugin = New()
