package reliability

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"
)

// stormClient is one user of the reconnect storm: it reconnects to the
// surviving instance when its socket drops.
type stormClient struct {
	user, page string
	mu         sync.Mutex
	c          *sioclient.Client
}

func (sc *stormClient) set(c *sioclient.Client) {
	sc.mu.Lock()
	sc.c = c
	sc.mu.Unlock()
}

func (sc *stormClient) close() {
	sc.mu.Lock()
	c := sc.c
	sc.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// TestReconnectStorm connects 5,000 sockets to one of two instances sharing
// a Redis, each present on one of 50 pages, then SIGKILLs that instance:
// all 5,000 drop at once and reconnect (with socket.io-client-like jitter)
// to the other instance and enter their page again. It checks that every
// client is back, and that presence is exactly right afterwards: each
// page lists its 100 users, Redis holds 5,000 live sockets once the dead
// instance's entries expired, and each observer's view built from the
// snapshot and the entered/left deltas matches.
func TestReconnectStorm(t *testing.T) {
	t.Parallel()
	const (
		sockets = 5000
		pages   = 50
		// The production presence timing (the plugin's defaults): one
		// refresh round re-runs a Redis script per socket, one after the
		// other, and with 5,000 sockets under -race on two shared cores a
		// round can take over 20 s, so shorter windows make live users
		// expire (see RELIABILITY.md).
		window  = 45 * time.Second
		refresh = 15 * time.Second
		sweep   = 5 * time.Second
	)
	redis := testserver.StartRedis(t)
	opts := func(name string) serverOpts {
		return serverOpts{name: name, plugins: []string{"presence"}, env: map[string]string{"REDIS_URL": redis.URL()}, args: []string{
			"--set", "plugins.presence.config.window=" + window.String(),
			"--set", "plugins.presence.config.refresh_interval=" + refresh.String(),
			"--set", "plugins.presence.config.sweep_interval=" + sweep.String(),
			// Presence as deployed: a subprocess (RELIABILITY.md finding 5:
			// its refresh is batched since it could not keep up here).
			"--log-level", "warn",
		}}
	}
	a := launch(t, opts("storm-a"))
	b := launch(t, opts("storm-b"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pagePath := func(i int) string { return "/conference/demo/room/storm-" + strconv.Itoa(i) }

	// One observer per page, on the surviving instance.
	type observer struct {
		c    *sioclient.Client
		rec  *recorder
		base int // index of the snapshot event the view starts from
	}
	obs := make([]observer, pages)
	for i := range obs {
		c, rec := dial(ctx, t, b.URL, "observer-"+strconv.Itoa(i))
		defer c.Close()
		if _, err := snapshot(ctx, c, rec, pagePath(i)); err != nil {
			t.Fatal(err)
		}
		obs[i] = observer{c: c, rec: rec}
	}

	clients := make([]*stormClient, sockets)
	want := make([][]string, pages)
	for i := range clients {
		clients[i] = &stormClient{user: "storm-" + strconv.Itoa(i), page: pagePath(i % pages)}
		want[i%pages] = append(want[i%pages], clients[i].user)
	}
	defer func() {
		for _, sc := range clients {
			sc.close()
		}
	}()
	var dropped, back, failed atomic.Int64
	var reasonsMu sync.Mutex
	reasons := map[string]int{}
	reconnect := func(sc *stormClient) {
		// socket.io-client: first retry after ~1s with 0.5 randomization.
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		for attempt := 0; attempt < 30 && ctx.Err() == nil; attempt++ {
			c, err := enterStorm(ctx, b.URL, sc, nil)
			if err == nil {
				sc.set(c)
				back.Add(1)
				return
			}
			time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		}
		failed.Add(1)
	}
	// Connect everybody to A, 100 at a time.
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	var connectErr atomic.Value
	start := time.Now()
	for _, sc := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := enterStorm(ctx, a.URL, sc, func(reason string) {
				dropped.Add(1)
				reasonsMu.Lock()
				reasons[reason]++
				reasonsMu.Unlock()
				go reconnect(sc)
			})
			if err != nil {
				connectErr.Store(err)
				return
			}
			sc.set(c)
		}()
	}
	wg.Wait()
	if err, _ := connectErr.Load().(error); err != nil {
		t.Fatalf("initial connect: %v", err)
	}
	t.Logf("%d sockets connected to %s and present in %v", sockets, a.Name, time.Since(start).Round(time.Millisecond))
	if n := dropped.Load(); n > 0 {
		reasonsMu.Lock()
		t.Logf("%d sockets dropped while the others connected: %v", n, reasons)
		reasonsMu.Unlock()
	}
	for i := range obs {
		var diff string
		if !within(2*refresh, func() bool {
			got, err := snapshot(ctx, obs[i].c, obs[i].rec, pagePath(i))
			var ok bool
			ok, diff = sameSet(got, want[i])
			return err == nil && ok
		}) {
			t.Fatalf("page %d before the storm: %s", i, diff)
		}
		obs[i].rec.mu.Lock()
		for j, e := range obs[i].rec.events {
			if e.name == "presences" {
				obs[i].base = j
			}
		}
		obs[i].rec.mu.Unlock()
	}

	if n := dropped.Load(); n > 0 {
		reasonsMu.Lock()
		t.Errorf("%d sockets dropped before the kill: %v", n, reasons)
		reasonsMu.Unlock()
	}
	killedAt := time.Now()
	a.kill(t)
	if !within(3*time.Minute, func() bool { return back.Load()+failed.Load() >= sockets }) {
		t.Fatalf("after 3 minutes: %d of %d sockets dropped, %d back, %d gave up", dropped.Load(), sockets, back.Load(), failed.Load())
	}
	allBack := time.Since(killedAt)
	t.Logf("%d sockets dropped, %d back on %s (%d gave up) %v after the kill", dropped.Load(), back.Load(), b.Name, failed.Load(), allBack.Round(time.Millisecond))
	if dropped.Load() != sockets || back.Load() != sockets {
		t.Fatalf("%d dropped, %d back, want %d", dropped.Load(), back.Load(), sockets)
	}

	// Let the dead instance's socket entries expire and be swept.
	time.Sleep(max(0, window+2*sweep-time.Since(killedAt)))
	var zcard string
	if !within(30*time.Second, func() bool {
		r, err := redis.Do("ZCARD", "Presence.Sockets")
		zcard = strings.TrimSpace(r)
		return err == nil && zcard == ":"+strconv.Itoa(sockets)
	}) {
		t.Errorf("Redis Presence.Sockets holds %s sockets, want %d", zcard, sockets)
	}
	if n := b.metrics(t).sum("realtime_socketio_connections"); n != sockets+pages {
		t.Errorf("%s has %v connections, want %d", b.Name, n, sockets+pages)
	}
	var lefts, entereds int
	for i := range obs {
		got, err := snapshot(ctx, obs[i].c, obs[i].rec, pagePath(i))
		if err != nil {
			t.Fatal(err)
		}
		if ok, diff := sameSet(got, want[i]); !ok {
			// A live socket whose refresh came late may have been swept;
			// its own instance's next refresh re-enters it. Presence must
			// converge within two refresh rounds.
			dumpPresence(t, redis, pagePath(i), got, want[i])
			healed := within(2*refresh, func() bool {
				got, err := snapshot(ctx, obs[i].c, obs[i].rec, pagePath(i))
				ok, _ := sameSet(got, want[i])
				return err == nil && ok
			})
			if !healed {
				t.Errorf("page %d after the storm, still after %v: %s", i, 2*refresh, diff)
			} else {
				t.Logf("page %d after the storm: %s; converged within %v", i, diff, 2*refresh)
			}
		}
		// The observer's incremental view: snapshot, then deltas in order.
		view := map[string]bool{}
		for _, u := range want[i] {
			view[u] = true
		}
		obs[i].rec.mu.Lock()
		all := obs[i].rec.events[obs[i].base+1:]
		for _, e := range all {
			if len(e.args) == 0 {
				continue
			}
			_, u := presenceDelta(e.args[0])
			switch e.name {
			case "entered":
				view[u] = true
				entereds++
			case "left":
				delete(view, u)
				lefts++
			}
		}
		obs[i].rec.mu.Unlock()
		var v []string
		for u := range view {
			v = append(v, u)
		}
		if ok, diff := sameSet(v, want[i]); !ok {
			t.Errorf("page %d: observer's view from deltas: %s", i, diff)
		}
	}
	t.Logf("observers saw %d left and %d entered during the storm", lefts, entereds)
	if d := fmt.Sprint(obs[0].rec.disconnects()); d != "[]" {
		t.Errorf("an observer was disconnected: %s", d)
	}
}

// enterStorm connects sc's user to url and enters its page.
func enterStorm(ctx context.Context, url string, sc *stormClient, onDisconnect func(string)) (*sioclient.Client, error) {
	tok := stormToken(sc.user)
	c, err := sioclient.Dial(ctx, url, sioclient.Options{Token: tok, OnDisconnect: onDisconnect, ConnectTimeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := c.EmitWithAck(actx, "enterPage", sc.page)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("enterPage: %w", err)
	}
	if msg := ackError(ack); msg != "" {
		c.Close()
		return nil, fmt.Errorf("enterPage of %s answered with an error: %s", sc.user, msg)
	}
	return c, nil
}

// stormTokens caches one token per user (RSA signing 10,000 tokens would
// dominate the test).
var (
	stormTokensMu sync.Mutex
	stormTokens   = map[string]string{}
)

func stormToken(user string) string {
	stormTokensMu.Lock()
	defer stormTokensMu.Unlock()
	if tok, ok := stormTokens[user]; ok {
		return tok
	}
	tok := signToken(panicTB{}, testKey, testKeyKid, user)
	stormTokens[user] = tok
	return tok
}

// panicTB is a testing.TB for helpers called off the test goroutine; it
// panics on Fatal (signing never fails with a valid key).
type panicTB struct{ testing.TB }

func (panicTB) Helper()                        {}
func (panicTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// dumpPresence logs the Redis presence state of the users missing from a
// page, for diagnosis.
func dumpPresence(t *testing.T, redis *testserver.Redis, path string, got, want []string) {
	listID := fmt.Sprintf("%x", sha256.Sum256([]byte("demo"+path)))
	have := map[string]bool{}
	for _, u := range got {
		have[u] = true
	}
	for _, u := range want {
		if have[u] {
			continue
		}
		member, _ := redis.Do("SISMEMBER", "PresenceList:"+listID, u)
		sessions, _ := redis.Do("ZRANGE", "PresenceList:"+listID+":UserSessions:"+u, "0", "-1", "WITHSCORES")
		t.Logf("missing %s: now %d ms; SISMEMBER %q; UserSessions %q", u, time.Now().UnixMilli(), member, sessions)
	}
}
