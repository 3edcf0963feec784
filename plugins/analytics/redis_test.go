package analytics

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// realRedisHost is an sdktest.Host whose Store is a real Redis.
type realRedisHost struct {
	*sdktest.Host
	store sdk.Store
}

func (h realRedisHost) Store() sdk.Store { return h.store }

// goRedisStore is sdk.Store over go-redis (RESP2, as the host's).
type goRedisStore struct{ rdb *redis.Client }

func conv(v any, err error) (any, error) {
	if errors.Is(err, redis.Nil) {
		return nil, sdk.ErrNil
	}
	return v, err
}

func (s goRedisStore) Do(ctx context.Context, args ...any) (any, error) {
	return conv(s.rdb.Do(ctx, args...).Result())
}

func (s goRedisStore) Pipeline(ctx context.Context, cmds [][]any) ([]sdk.Reply, error) {
	pipe := s.rdb.Pipeline()
	rs := make([]*redis.Cmd, len(cmds))
	for i, c := range cmds {
		rs[i] = pipe.Do(ctx, c...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]sdk.Reply, len(rs))
	for i, r := range rs {
		out[i].Value, out[i].Err = conv(r.Result())
	}
	return out, nil
}

func (s goRedisStore) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	return conv(redis.NewScript(script).Run(ctx, s.rdb, keys, args...).Result())
}

// realRedis connects to the machine's Redis, DB 13, flushed before and after.
func realRedis(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.Protocol = 2
	opt.DB = 13
	rdb := redis.NewClient(opt)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	t.Cleanup(func() {
		_ = rdb.FlushDB(context.Background()).Err()
		_ = rdb.Close()
	})
	return rdb
}

// Counting, a failed round, a successful one and a restart's retry on a
// real Redis (the Lua scripts, SCAN and HSCAN replies, SET NX PX).
func TestRealRedis(t *testing.T) {
	rdb := realRedis(t)
	ctx := context.Background()
	f := &fakeHasura{statuses: []int{500}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	base := sdktest.NewHost()
	defer base.Close()
	h := realRedisHost{Host: base, store: goRedisStore{rdb}}
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
