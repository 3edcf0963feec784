package push

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/clowdr/realtime/plugins/internal/kit"
)

// gqlSubscriptions is the original's PushNotificationSubscriptions query
// (lib/cache/pushNotificationSubscriptions.ts), verbatim in substance.
const gqlSubscriptions = `query PushNotificationSubscriptions($userId: String!) {
  PushNotificationSubscription(where: {userId: {_eq: $userId}}) { userId endpoint p256dh auth }
}`

const (
	// maxGraphQLResponse bounds a Hasura response body.
	maxGraphQLResponse = 1 << 20
	// hasuraTimeout bounds one subscription lookup.
	hasuraTimeout = 10 * time.Second
	// loadedTTL is how long subscriptions loaded from Hasura are trusted
	// before the next delivery reloads (merges) them: the original's
	// refetchAfterMs. Webhooks keep the hash current meanwhile; the reload
	// only repairs missed INSERT events.
	loadedTTL = 7 * 24 * time.Hour
	// noneTTL is how long "Hasura has no subscription for this user" is
	// believed: the original's rateLimitPeriodMs for this cache. It bounds
	// the queries a user without subscriptions costs to one per noneTTL.
	noneTTL = 5 * time.Minute
	// touchedTTL is how long a webhook's change of an endpoint shields it
	// from loads: longer than a load can take (hasuraTimeout), so a load
	// whose answer predates the change cannot undo it.
	touchedTTL = time.Minute
)

// TouchedKey is the HASH of endpoints of a user that a webhook wrote or
// removed within touchedTTL (only with graphql_url).
func TouchedKey(userID string) string { return "push:touched:" + userID }

// mergeLoadedScript HSETs the loaded subscriptions into KEYS[1] except the
// endpoints in KEYS[2] (changed by a webhook since, or while, Hasura was
// asked), then sets the marker KEYS[3] = ARGV[1] for ARGV[2] seconds.
// ARGV[3..] are endpoint, subscription pairs.
const mergeLoadedScript = `for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
return 1`

// LoadedKey marks a user whose subscriptions were loaded from Hasura (only
// with graphql_url): while it exists, SubscriptionsKey(userID) is the whole
// truth, even when empty. Its value is the number of rows Hasura had.
func LoadedKey(userID string) string { return "push:loaded:" + userID }

// hasura reports whether subscriptions are looked up in Hasura.
func (p *Plugin) hasura() bool { return p.cfg.GraphQLURL != "" }

// loadSubscriptions queries Hasura for the user's subscriptions, merges
// them into SubscriptionsKey (so entries written by the webhook meanwhile
// stay) and sets LoadedKey. Concurrent calls for one user share one query.
func (p *Plugin) loadSubscriptions(ctx context.Context, userID string) error {
	return p.loads.do(ctx, userID, func() error {
		// The query is shared: it must not die with the first caller's
		// context (a waiter may still need it), only with its own timeout.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hasuraTimeout)
		defer cancel()
		return p.fetchSubscriptions(fctx, userID)
	})
}

func (p *Plugin) fetchSubscriptions(ctx context.Context, userID string) error {
	var out struct {
		Rows []json.RawMessage `json:"PushNotificationSubscription"`
	}
	h := kit.Hasura{Client: p.gqlClient, URL: p.cfg.GraphQLURL, AdminSecret: p.cfg.AdminSecret, MaxResponse: maxGraphQLResponse}
	if err := h.DoInto(ctx, gqlSubscriptions, map[string]any{"userId": userID}, &out); err != nil {
		return fmt.Errorf("query subscriptions of %s: %w", userID, err)
	}
	var pairs []any
	for _, raw := range out.Rows {
		// The same checks as the webhook's: a row that could never be sent
		// to is not worth storing (and the endpoint must be https).
		row, err := parseRow(raw)
		if err == nil && row.UserID != userID {
			err = fmt.Errorf("row of user %q", row.UserID)
		}
		if err == nil {
			err = validKeys(row.Auth, row.P256dh)
		}
		if err != nil {
			p.log.Warn("push: skipping an unusable subscription from Hasura", "user", userID, "err", err)
			continue
		}
		sub, err := json.Marshal(webpush.Subscription{
			Endpoint: row.Endpoint,
			Keys:     webpush.Keys{Auth: row.Auth, P256dh: row.P256dh},
		})
		if err != nil {
			return fmt.Errorf("encode subscription: %w", err)
		}
		pairs = append(pairs, row.Endpoint, string(sub))
	}
	n := len(pairs) / 2
	ttl := loadedTTL
	if n == 0 {
		ttl = noneTTL
	}
	args := append([]any{n, int(ttl / time.Second)}, pairs...)
	keys := []string{SubscriptionsKey(userID), TouchedKey(userID), LoadedKey(userID)}
	if _, err := p.host.Store().Eval(ctx, mergeLoadedScript, keys, args...); err != nil {
		return fmt.Errorf("store subscriptions of %s: %w", userID, err)
	}
	return nil
}

// touch marks the endpoints a webhook is about to change, before it changes
// them, so that a load merging an older answer leaves them alone.
func (p *Plugin) touch(ctx context.Context, userID string, endpoints ...string) error {
	if !p.hasura() {
		return nil
	}
	args := []any{"HSET", TouchedKey(userID)}
	for _, e := range endpoints {
		args = append(args, e, "1")
	}
	replies, err := p.host.Store().Pipeline(ctx, [][]any{args, {"PEXPIRE", TouchedKey(userID), touchedTTL.Milliseconds()}})
	if err == nil {
		for _, r := range replies {
			if err = r.Err; err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mark changed subscriptions of %s: %w", userID, err)
	}
	return nil
}

// flightGroup lets concurrent calls for one key share one execution (a
// minimal golang.org/x/sync/singleflight, which this module does not
// require).
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
	dups int // callers that joined instead of running fn (for tests)
}

// do runs fn once for all callers that ask for key while it runs. A caller
// whose ctx ends stops waiting (fn keeps running for the others).
func (g *flightGroup) do(ctx context.Context, key string, fn func() error) error {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight{}
	}
	if f, ok := g.m[key]; ok {
		f.dups++
		g.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	g.m[key] = f
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		delete(g.m, key)
		g.mu.Unlock()
		close(f.done)
	}()
	f.err = fn()
	return f.err
}

// waiting returns how many callers joined the running call for key.
func (g *flightGroup) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		return f.dups
	}
	return 0
}
