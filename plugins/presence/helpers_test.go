package presence

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// testHost is a recording host whose Store can be shared with other
// testHosts (= several host instances on one Redis). It also records Joins
// and Emits in one ordered log.
type testHost struct {
	*sdktest.Host
	store sdk.Store

	// emitDelay, if set, runs before each Emit is recorded (widens races).
	emitDelay func()

	mu  sync.Mutex
	seq []string
}

func (h *testHost) Store() sdk.Store { return h.store }

func (h *testHost) Join(ctx context.Context, socketID, room string) error {
	h.mu.Lock()
	h.seq = append(h.seq, "join "+room)
	h.mu.Unlock()
	return h.Host.Join(ctx, socketID, room)
}

func (h *testHost) Emit(ctx context.Context, to sdk.Target, event string, args ...any) error {
	if h.emitDelay != nil {
		h.emitDelay()
	}
	h.mu.Lock()
	h.seq = append(h.seq, "emit "+event)
	h.mu.Unlock()
	return h.Host.Emit(ctx, to, event, args...)
}

func (h *testHost) sequence() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seq)
}

// deltas returns the recorded deltas of event ("entered" or "left"),
// checking each went to its list's room.
func (h *testHost) deltas(t testing.TB, event string) []Delta {
	t.Helper()
	var out []Delta
	for _, e := range h.Emits() {
		if e.Event != event {
			continue
		}
		var d Delta
		if err := e.Arg(0, &d); err != nil {
			t.Fatalf("%s payload: %v", event, err)
		}
		if want := sdk.RoomTarget(RoomPrefix + d.ListID); e.To != want {
			t.Fatalf("%s sent to %+v, want %+v", event, e.To, want)
		}
		out = append(out, d)
	}
	return out
}

// backend is a Redis the scenario tests run against.
type backend struct {
	name string
	// newHost returns a host on a fresh, empty store.
	newHost func(t *testing.T) *testHost
}

// peers numbers the instance ids of peer.
var peers atomic.Int64

// peer returns another host instance on h's store.
func peer(t *testing.T, h *testHost) *testHost {
	t.Helper()
	sh := sdktest.NewHost()
	t.Cleanup(sh.Close)
	sh.ID = fmt.Sprintf("peer-%d", peers.Add(1))
	return &testHost{Host: sh, store: h.store}
}

func miniredisBackend() backend {
	return backend{name: "miniredis", newHost: func(t *testing.T) *testHost {
		sh := sdktest.NewHost()
		t.Cleanup(sh.Close)
		if sh.Redis() == nil {
			t.Fatal("sdktest: no embedded redis")
		}
		return &testHost{Host: sh, store: sh.Store()}
	}}
}

// realRedisDB is the database the integration tests own (the presence keys
// have fixed names, so a key prefix cannot isolate them). They FLUSHDB it.
const realRedisDB = 9

// realRedisClient connects to the machine's Redis, database realRedisDB, and
// flushes it now and when the test ends (or skips when there is no Redis).
func realRedisClient(t testing.TB) *redis.Client {
	t.Helper()
	u, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: u.Host, DB: realRedisDB, Protocol: 2, DisableIdentity: true})
	ctx := context.Background()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		rdb.Close()
		testenv.Unavailable(t, "redis at %s: %v", u.Host, err)
	}
	t.Cleanup(func() {
		_ = rdb.FlushDB(context.Background()).Err()
		_ = rdb.Close()
	})
	return rdb
}

func realRedisBackend() backend {
	return backend{name: "redis", newHost: func(t *testing.T) *testHost {
		rdb := realRedisClient(t)
		sh := sdktest.NewHost()
		t.Cleanup(sh.Close)
		return &testHost{Host: sh, store: sdktest.GoRedisStore{RDB: rdb}}
	}}
}

// clock is a settable clock for the plugin (unix ms).
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	return c
}

func (c *clock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// quietConfig has background loops too slow to run during a test: tests
// drive refresh and sweep by hand. Rechecks are off (no emits a second
// later); recheck_test.go turns them on.
var quietConfig = map[string]any{
	"window": "45s", "refresh_interval": "15s", "sweep_interval": "1h",
	"events_per_second": 1e6, "event_burst": 1 << 20, "recheck": "0s",
}

// startPlugin starts a plugin on h with clk (nil = real time) and config
// (nil = quietConfig), stopped when the test ends.
func startPlugin(t testing.TB, h sdk.Host, clk *clock, config map[string]any) *Plugin {
	t.Helper()
	p := New()
	if clk != nil {
		p.now = clk.Now
	}
	if config == nil {
		config = quietConfig
	}
	sdktest.Start(t, context.Background(), p, h, config)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return p
}

// members returns the sorted members of a SET or ZSET key ("" if none).
func smembers(t testing.TB, s sdk.Store, key string) []string {
	t.Helper()
	v, err := sdk.Strings(s.Do(context.Background(), "SMEMBERS", key))
	if err != nil {
		t.Fatalf("SMEMBERS %s: %v", key, err)
	}
	slices.Sort(v)
	return v
}

func exists(t testing.TB, s sdk.Store, key string) bool {
	t.Helper()
	n, err := sdk.Int64(s.Do(context.Background(), "EXISTS", key))
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// keys lists every key of the store, sorted.
func allKeys(t testing.TB, s sdk.Store) []string {
	t.Helper()
	v, err := sdk.Strings(s.Do(context.Background(), "KEYS", "*"))
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	slices.Sort(v)
	return v
}

// event sends one event and fails the test on an error.
func event(t testing.TB, p *Plugin, s sdk.Socket, name string, args ...any) {
	t.Helper()
	if _, err := sdktest.Event(t, context.Background(), p, s, name, args...); err != nil {
		t.Fatalf("%s%v: %v", name, args, err)
	}
}

func connect(t testing.TB, p *Plugin, s sdk.Socket) {
	t.Helper()
	if err := p.OnConnect(context.Background(), s); err != nil {
		t.Fatalf("connect %s: %v", s.ID, err)
	}
}

func disconnect(t testing.TB, p *Plugin, s sdk.Socket) {
	t.Helper()
	if err := p.OnDisconnect(context.Background(), s, "client namespace disconnect"); err != nil {
		t.Fatalf("disconnect %s: %v", s.ID, err)
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
