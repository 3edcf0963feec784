package analytics

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// Counting, a failed round, a successful one and a restart's retry on a
// real Redis (the Lua scripts, SCAN and HSCAN replies, SET NX PX).
func TestRealRedis(t *testing.T) {
	rdb := sdktest.RealRedis(t, 13)
	ctx := context.Background()
	f := &fakeHasura{statuses: []int{500}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	base := sdktest.NewHost()
	defer base.Close()
	h := sdktest.RealRedisHost{Host: base, RealStore: sdktest.GoRedisStore{RDB: rdb}}
	p, _ := newTestPlugin(t, h, map[string]any{"graphql_url": srv.URL})

	countViews(t, p, map[string]int{"Item:" + item1: 3, "Room.HLSStream:" + room1: 2})
	if _, err := sdktest.Event(t, ctx, p, alice, EventViewCount, view(elem1, "Element")); err != nil {
		t.Fatal(err)
	}
	if _, err := sdktest.Event(t, ctx, p, alice, EventViewCount, view(elem1, "Element")); err != nil { // deduped
		t.Fatal(err)
	}
	if v := rdb.Get(ctx, CountKey("Item", item1)).Val(); v != "3" {
		t.Fatalf("item1 counter = %q", v)
	}
	if v := rdb.Get(ctx, CountKey("Element", elem1)).Val(); v != "1" {
		t.Fatalf("elem1 counter = %q", v)
	}
	if err := p.writebackRound(ctx); err == nil {
		t.Fatal("round with Hasura down: no error")
	}
	if m := rdb.HGetAll(ctx, InflightKey).Val(); len(m) != 3 || m[CountKey("Item", item1)] != "3" {
		t.Fatalf("in flight after a failure = %v", m)
	}
	if n := rdb.Exists(ctx, CountKey("Item", item1), LockKey).Val(); n != 0 {
		t.Errorf("%d of counter/lock left after the move", n)
	}
	countViews(t, p, map[string]int{"Item:" + item1: 1})
	if err := p.writebackRound(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.written()
	if got["Item:"+item1] != 4 || got["Room.HLSStream:"+room1] != 2 || got["Element:"+elem1] != 1 || len(got) != 3 {
		t.Errorf("written = %v", got)
	}
	if keys := rdb.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("keys left = %v", keys)
	}

	// A crash between a write and its clean-up: a new process retries.
	if err := rdb.HSet(ctx, InflightKey, CountKey("Item", item2), 5).Err(); err != nil {
		t.Fatal(err)
	}
	rounds := make(chan error, 1)
	p2 := New()
	p2.afterRound = func(err error) {
		select {
		case rounds <- err:
		default:
		}
	}
	sdktest.Start(t, ctx, p2, h, map[string]any{"graphql_url": srv.URL, "writeback_interval": "1h"})
	defer func() { _ = p2.Stop(ctx) }()
	select {
	case err := <-rounds:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no round after Start")
	}
	if got := f.written(); got["Item:"+item2] != 5 {
		t.Errorf("leftover not written: %v", got)
	}
	if n := rdb.Exists(ctx, InflightKey).Val(); n != 0 {
		t.Error("in flight left after the retry")
	}
}
