package directory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"

	"github.com/clowdr/realtime/plugins/sdk"
)

const (
	// InvalidatePath is the host route that drops directory cache entries.
	InvalidatePath = "/directory/invalidate"
	// EventSecretHeader carries EVENT_SECRET on Hasura's event-trigger calls.
	EventSecretHeader = "X-Hasura-Event-Secret"
	// maxInvalidateBody bounds a request body, as the plugins' webhooks do
	// (their maxWebhookBody): a Hasura event of one row is far smaller.
	maxInvalidateBody = 100 << 10
	// maxCacheKey bounds an explicit key (keys are ids, used in Redis keys).
	maxCacheKey = maxUserID
)

// cacheNames are the valid Cache* names.
var cacheNames = []string{CacheConferenceSlugs, CacheUserPermission, CacheChatInfo, CacheRegistrantInfo, CacheEventInfo, CacheEventChairs}

// InvalidateHandler serves POST /directory/invalidate: it drops the cache
// entries that a changed row makes stale, so the next lookup asks Hasura
// instead of waiting out directory.cache_ttl. The header x-hasura-event-secret
// must equal eventSecret (compared in constant time; an empty eventSecret
// refuses everything): else 401 {}. The body (at most 100 KiB, else 413) is
// either
//
//	{"cache": "<a Cache* name>", "key": "<id>"}
//
// or a Hasura event-trigger payload {"event":{"op","data":{"old","new"}},
// "table":{"schema","name"}} for one of these tables (schema_name, or the
// name alone in schema public), whose old and new rows give the entries:
//
//	registrant_Registrant  RegistrantInfo:<id>, ConferenceSlugs:<userId>, UserPermission:<userId>
//	chat_Chat              ChatInfo:<id>
//	schedule_Event         EventInfo:<id>, EventChairs:<id>
//
// Another table is answered 200 with nothing dropped (and a debug log): Hasura
// retries non-2xx answers, and an extra trigger must not become a retry loop.
// The answer is 200 {"ok":true,"invalidated":N}, N the entries that existed
// and were dropped (0 for the static directory, which caches nothing); a bad
// body is 400, a Store failure 500 (so Hasura retries).
func InvalidateHandler(d sdk.Directory, eventSecret string, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h, _ := d.(*Hasura)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !eventSecretOK(r.Header, eventSecret) {
			logger.Warn("directory: invalidate with a missing or wrong event secret", "remote", r.RemoteAddr)
			writeJSON(w, http.StatusUnauthorized, map[string]any{})
			return
		}
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"ok": false, "error": "POST only"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInvalidateBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"ok": false, "error": "body too large"})
				return
			}
			writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "cannot read body"})
			return
		}
		keys, table, err := invalidationKeys(body)
		if err != nil {
			logger.Warn("directory: bad invalidate request", "err", err)
			writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": err.Error()})
			return
		}
		if table != "" && keys == nil {
			logger.Debug("directory: invalidate: no cache for this table", "table", table)
		}
		n := 0
		if h != nil && len(keys) > 0 {
			n, err = h.invalidate(r.Context(), keys)
			if err != nil {
				logger.Error("directory: invalidate failed", "err", err)
				writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": "store unavailable"})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "invalidated": n})
	})
}

// eventSecretOK reports whether hdr carries exactly one x-hasura-event-secret
// equal to secret, compared in constant time over hashes (so the length does
// not leak either), as the plugins' webhooks do (plugins/internal/kit, which
// the host cannot import). An empty secret refuses everything.
func eventSecretOK(hdr http.Header, secret string) bool {
	if secret == "" {
		return false
	}
	got := hdr.Values(EventSecretHeader)
	if len(got) != 1 {
		return false
	}
	g := sha256.Sum256([]byte(got[0]))
	s := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(g[:], s[:]) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// invalidateRequest is either form of the body.
type invalidateRequest struct {
	Cache *string `json:"cache"`
	Key   *string `json:"key"`
	Event *struct {
		Op   string `json:"op"`
		Data *struct {
			Old map[string]json.RawMessage `json:"old"`
			New map[string]json.RawMessage `json:"new"`
		} `json:"data"`
	} `json:"event"`
	Table *struct {
		Schema string `json:"schema"`
		Name   string `json:"name"`
	} `json:"table"`
}

// invalidationKeys returns the cache keys (caches:<Name>:<key>) that body
// names, deduplicated. For an event payload, table is the table it names and
// keys is nil when no cache depends on that table.
func invalidationKeys(body []byte) (keys []string, table string, err error) {
	var req invalidateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, "", fmt.Errorf("body is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, "", errors.New("body has data after the JSON object")
	}
	explicit := req.Cache != nil || req.Key != nil
	switch {
	case explicit && req.Event != nil:
		return nil, "", errors.New("give either cache and key, or a Hasura event, not both")
	case explicit:
		if req.Cache == nil || !slices.Contains(cacheNames, *req.Cache) {
			return nil, "", fmt.Errorf("cache must be one of %v", cacheNames)
		}
		if req.Key == nil || *req.Key == "" || len(*req.Key) > maxCacheKey {
			return nil, "", fmt.Errorf("key must be a non-empty string of at most %d bytes", maxCacheKey)
		}
		return []string{cacheKey(*req.Cache, *req.Key)}, "", nil
	case req.Event == nil:
		return nil, "", errors.New("want {cache, key} or a Hasura event payload {event, table}")
	}
	if req.Event.Data == nil {
		return nil, "", errors.New("event.data must be an object")
	}
	if req.Table == nil || req.Table.Name == "" {
		return nil, "", errors.New("table.name must be a non-empty string")
	}
	// Hasura names a table of schema s "s_Name" in GraphQL; Clowdr's
	// registrant_Registrant is schema registrant, table Registrant. A table
	// named so in schema public is accepted too.
	table = req.Table.Name
	if req.Table.Schema != "" && req.Table.Schema != "public" {
		table = req.Table.Schema + "_" + req.Table.Name
	}
	rows := []map[string]json.RawMessage{req.Event.Data.Old, req.Event.Data.New}
	add := func(name, field string) {
		for _, row := range rows {
			var v string
			// A missing or null field (a registrant without a user yet) is skipped.
			if json.Unmarshal(row[field], &v) != nil || v == "" || len(v) > maxCacheKey {
				continue
			}
			if k := cacheKey(name, v); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	switch table {
	case "registrant_Registrant":
		add(CacheRegistrantInfo, "id")
		add(CacheConferenceSlugs, "userId")
		add(CacheUserPermission, "userId")
	case "chat_Chat":
		add(CacheChatInfo, "id")
	case "schedule_Event":
		add(CacheEventInfo, "id")
		add(CacheEventChairs, "id")
	default:
		return nil, table, nil
	}
	if keys == nil {
		keys = []string{} // a known table whose rows name nothing
	}
	return keys, table, nil
}

// invalidate deletes the given cache keys (caches:<Name>:<key>) and returns
// how many existed. One DEL per key: the keys may hash to different slots.
func (h *Hasura) invalidate(ctx context.Context, keys []string) (int, error) {
	n := 0
	for _, k := range keys {
		c, err := sdk.Int64(h.store.Do(ctx, "DEL", k))
		if err != nil {
			return n, fmt.Errorf("directory: invalidate %s: %w", k, err)
		}
		n += int(c)
	}
	return n, nil
}
