package sdktest

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
)

// GoRedisStore is an sdk.Store over a go-redis client, for plugin tests
// against a real Redis. The client should speak RESP2 (Protocol: 2), as the
// host's does, so that replies have the same Go types. redis.Nil becomes
// sdk.ErrNil.
type GoRedisStore struct {
	// RDB is the client the commands go to.
	RDB *redis.Client
}

var _ sdk.Store = GoRedisStore{}

// goRedisReply maps go-redis's nil reply to sdk.ErrNil.
func goRedisReply(v any, err error) (any, error) {
	if errors.Is(err, redis.Nil) {
		return nil, sdk.ErrNil
	}
	return v, err
}

// Do runs one command.
func (s GoRedisStore) Do(ctx context.Context, args ...any) (any, error) {
	return goRedisReply(s.RDB.Do(ctx, args...).Result())
}

// Pipeline runs cmds in one round trip; each reply carries its own error.
func (s GoRedisStore) Pipeline(ctx context.Context, cmds [][]any) ([]sdk.Reply, error) {
	pipe := s.RDB.Pipeline()
	rs := make([]*redis.Cmd, len(cmds))
	for i, c := range cmds {
		rs[i] = pipe.Do(ctx, c...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]sdk.Reply, len(rs))
	for i, r := range rs {
		out[i].Value, out[i].Err = goRedisReply(r.Result())
	}
	return out, nil
}

// Eval runs a Lua script (EVALSHA, falling back to EVAL).
func (s GoRedisStore) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	return goRedisReply(redis.NewScript(script).Run(ctx, s.RDB, keys, args...).Result())
}

// RealRedis connects (RESP2) to the machine's Redis (testenv.RedisURL: the
// test skips without one, and fails under CI=true), selects database db and
// flushes it now and when the test ends. Tests that use it must own db.
func RealRedis(t testing.TB, db int) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.Protocol = 2
	opt.DB = db
	rdb := redis.NewClient(opt)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		_ = rdb.Close()
		t.Fatalf("flush: %v", err)
	}
	t.Cleanup(func() {
		_ = rdb.FlushDB(context.Background()).Err()
		_ = rdb.Close()
	})
	return rdb
}

// RealRedisHost is a Host whose Store is RealStore (e.g. a GoRedisStore) instead
// of the embedded Redis; everything else is the embedded Host's.
type RealRedisHost struct {
	*Host
	// RealStore is what Store returns.
	RealStore sdk.Store
}

// Store returns the real store.
func (h RealRedisHost) Store() sdk.Store { return h.RealStore }
