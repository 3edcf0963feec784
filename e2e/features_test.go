package e2e

import (
	"context"
	"maps"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// countsWithin bounds the wait for the analytics plugin to have handled the
// views the node test sent: the plugin answers nothing, so the only sign is
// the counters in Redis.
const countsWithin = 10 * time.Second

// uuid8 is uuid@8's validate (spec §4.0): versions 1-5, RFC variant, or nil.
var uuid8 = regexp.MustCompile(`(?i)^(?:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|00000000-0000-0000-0000-000000000000)$`)

// TestFeatures runs the hand-raise and analytics plugins (both on by
// default) on one server with a private Redis, so the test can read what
// the plugins keep there: the static directory with conference "demo" and
// one chair, and EVENT_SECRET for POST /event/ended.
func TestFeatures(t *testing.T) {
	t.Parallel()
	requireNode(t)
	redisURL, rdb := startRedis(t)
	chair := uuid4(t)
	secret := "event-" + randHex(t, 8)
	s := launch(t, serverOpts{
		args: []string{"--set", "directory.conferences=demo", "--set", "directory.chairs=" + chair},
		env:  map[string]string{"REDIS_URL": redisURL, "EVENT_SECRET": secret},
	})

	t.Run("handraise", func(t *testing.T) {
		t.Parallel()
		runNode(t, "handraise.test.mjs", map[string]string{
			"SERVER_URL":       s.URL,
			"E2E_EVENT_SECRET": secret,
			"CHAIR_ID":         chair,
		})
		// The node test raised hands for ids that are not UUIDs (and left
		// one valid hand raised): only UUID events may have a key.
		keys := scanKeys(t, rdb, "event:event.*.handRaise.users")
		if len(keys) == 0 {
			t.Fatalf("no hand-raise key in Redis after the node test; the key layout is not event:event.<eventId>.handRaise.users")
		}
		for _, k := range keys {
			id := strings.TrimSuffix(strings.TrimPrefix(k, "event:event."), ".handRaise.users")
			if !uuid8.MatchString(id) {
				t.Errorf("hand-raise key %q: its event id is not a UUID, so a raise with a bad eventId was stored", k)
			}
		}
	})

	t.Run("analytics", func(t *testing.T) {
		t.Parallel()
		item, element, hls, barrierA, barrierB, bad := uuid4(t), uuid4(t), uuid4(t), uuid4(t), uuid4(t), uuid4(t)
		runNode(t, "analytics.test.mjs", map[string]string{
			"SERVER_URL": s.URL,
			"ITEM_ID":    item,
			"ELEMENT_ID": element,
			"HLS_ID":     hls,
			// Each socket's last view: per-socket events reach the plugin in
			// order, so once both are counted every earlier view was handled.
			"BARRIER_A_ID": barrierA,
			"BARRIER_B_ID": barrierB,
			// The identifier of the invalid views (with bad content types).
			"BAD_ID": bad,
		})
		const p = "analytics.view.count:"
		want := map[string]string{
			p + "Item:" + item:               "2", // users A and B; A's repeat is deduplicated
			p + "Element:" + element:         "1",
			p + "Room.HLSStream:" + hls:      "1",
			p + "Element:" + barrierA:        "1",
			p + "Room.HLSStream:" + barrierB: "1",
		}
		ctx, cancel := context.WithTimeout(context.Background(), countsWithin+5*time.Second)
		defer cancel()
		deadline := time.Now().Add(countsWithin)
		for {
			n, err := rdb.Exists(ctx, p+"Element:"+barrierA, p+"Room.HLSStream:"+barrierB).Result()
			if err != nil {
				t.Fatalf("redis EXISTS: %v", err)
			}
			if n == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the last views of the node test's sockets were not counted within %v; counters: %v", countsWithin, counters(t, rdb))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := counters(t, rdb); !maps.Equal(got, want) {
			t.Fatalf("view counters in Redis:\n got %v\nwant %v", got, want)
		}
	})
}

// scanKeys returns the keys matching pattern.
func scanKeys(t *testing.T, rdb *redis.Client, pattern string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	iter := rdb.Scan(ctx, 0, pattern, 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("redis SCAN %s: %v", pattern, err)
	}
	return keys
}

// counters returns every analytics.view.count:* key with its value.
func counters(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]string{}
	for _, k := range scanKeys(t, rdb, "analytics.view.count:*") {
		v, err := rdb.Get(ctx, k).Result()
		if err != nil {
			t.Fatalf("redis GET %s: %v", k, err)
		}
		out[k] = v
	}
	return out
}
