package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Cache names: the Redis key of an entry is caches:<Name>:<key>.
const (
	CacheConferenceSlugs = "ConferenceSlugs" // key: user id
	CacheUserPermission  = "UserPermission"  // key: user id
	CacheChatInfo        = "ChatInfo"        // key: chat id
	CacheRegistrantInfo  = "RegistrantInfo"  // key: registrant id
	CacheEventInfo       = "EventInfo"       // key: event id
	CacheEventChairs     = "EventChairs"     // key: event id
)

// notFound is the stored value of a cached "does not exist", as the original.
const notFound = "undefined"

// entry is the JSON stored at caches:<Name>:<key>: the original service's
// format, {fetchedAt: unix ms, value: JSON text of the value or "undefined"}.
type entry struct {
	FetchedAt int64  `json:"fetchedAt"`
	Value     string `json:"value"`
}

// fetchFunc loads a value from the source; found is false when it does not exist.
type fetchFunc func(ctx context.Context) (value any, found bool, err error)

func cacheKey(name, key string) string { return "caches:" + name + ":" + key }

// result is one cache lookup.
type result struct {
	raw   json.RawMessage // the value's JSON, nil when not found
	found bool
	fresh bool // fetched from the source during this call
}

// get returns the cached value of name/key, loading it with fetch on a miss.
// With force it refetches even when an entry exists, at most once per
// refetchEvery per entry (a marker key rate-limits it across instances);
// a rate-limited forced get returns the cached entry. Concurrent loads of
// the same entry in this process share one fetch. A Store failure is logged
// and bypassed: the source is asked directly.
//
// Each call counts one realtime_directory_cache_total: a hit when the answer
// came from the Store (a waiter on another caller's fetch counts a miss).
// It is counted here rather than in lookup, which runs twice on a miss.
func (h *Hasura) get(ctx context.Context, name, key string, force bool, fetch fetchFunc) (result, error) {
	r, err := h.load(ctx, name, key, force, fetch)
	h.metrics.looked(name, err == nil && !r.fresh)
	return r, err
}

func (h *Hasura) load(ctx context.Context, name, key string, force bool, fetch fetchFunc) (result, error) {
	k := cacheKey(name, key)
	if force && !h.claimRefetch(ctx, k) {
		force = false
	}
	if !force {
		if r, ok := h.lookup(ctx, k); ok {
			return r, nil
		}
	}
	return h.flight.do(k, func() (result, error) {
		// A caller that missed the cache just after another's fetch ended
		// finds that fetch's entry here instead of asking Hasura again.
		if !force {
			if r, ok := h.lookup(ctx, k); ok {
				return r, nil
			}
		}
		// A detached, bounded context: one caller giving up must not fail
		// the others waiting on the same fetch.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
		defer cancel()
		v, found, err := fetch(fctx)
		if err != nil {
			return result{}, err
		}
		r := result{found: found, fresh: true}
		e := entry{FetchedAt: time.Now().UnixMilli(), Value: notFound}
		ttl := h.negTTL
		if found {
			raw, err := json.Marshal(v)
			if err != nil {
				return result{}, fmt.Errorf("directory: encode %s: %w", name, err)
			}
			r.raw, e.Value, ttl = raw, string(raw), h.ttl
		}
		if b, err := json.Marshal(e); err == nil {
			if _, err := h.store.Do(fctx, "SET", k, string(b), "PX", ttl.Milliseconds()); err != nil {
				h.logger.Warn("directory: cache write failed", "key", k, "err", err)
			}
		}
		return r, nil
	})
}

// lookup reads a cache entry; ok is false on a miss, a bad entry or a Store error.
func (h *Hasura) lookup(ctx context.Context, k string) (result, bool) {
	s, err := sdk.String(h.store.Do(ctx, "GET", k))
	if err != nil {
		if !errors.Is(err, sdk.ErrNil) {
			h.logger.Warn("directory: cache read failed; asking Hasura", "key", k, "err", err)
		}
		return result{}, false
	}
	var e entry
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		return result{}, false
	}
	if e.Value == notFound {
		return result{}, true
	}
	if !json.Valid([]byte(e.Value)) {
		return result{}, false
	}
	return result{raw: json.RawMessage(e.Value), found: true}, true
}

// claimRefetch reports whether a forced refetch of k may run now.
func (h *Hasura) claimRefetch(ctx context.Context, k string) bool {
	_, err := h.store.Do(ctx, "SET", k+":refetch", strconv.FormatInt(time.Now().UnixMilli(), 10), "NX", "PX", h.refetchEvery.Milliseconds())
	switch {
	case err == nil:
		return true
	case errors.Is(err, sdk.ErrNil):
		return false // refetched recently
	default:
		return true // store trouble: don't block on it
	}
}

// Invalidate drops one cache entry, so the next lookup asks Hasura. name is
// one of the Cache* names. The host route POST /directory/invalidate
// (InvalidateHandler) does the same for Hasura event triggers.
func (h *Hasura) Invalidate(ctx context.Context, name, key string) error {
	if name == "" || key == "" {
		return errors.New("directory: invalidate: empty name or key")
	}
	if _, err := h.store.Do(ctx, "DEL", cacheKey(name, key)); err != nil {
		return fmt.Errorf("directory: invalidate %s:%s: %w", name, key, err)
	}
	return nil
}

// flightGroup runs one fetch per key at a time; concurrent callers wait for
// and share its result.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	r    result
	err  error
}

func (g *flightGroup) do(key string, fn func() (result, error)) (result, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*flightCall)
	}
	if c, ok := g.m[key]; ok {
		g.mu.Unlock()
		<-c.done
		return c.r, c.err
	}
	c := &flightCall{done: make(chan struct{})}
	g.m[key] = c
	g.mu.Unlock()

	c.r, c.err = fn()
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	close(c.done)
	return c.r, c.err
}
