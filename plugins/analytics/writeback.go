package analytics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Redis keys of the writeback.
const (
	// InflightKey is the hash of counts taken out of their counters and not
	// yet confirmed by Hasura: field = counter key, value = count. It is
	// shared by all instances (the lock below makes one instance at a time
	// use it), so counts a crashed instance had in flight are retried by
	// whichever instance runs the next round.
	InflightKey = "rt:analytics:inflight"
	// LockKey makes one instance at a time run a round (value: the holder's
	// token; expires after lockTTL).
	LockKey = "rt:analytics:writeback.lock"
)

// Bounds of one round.
const (
	// roundTimeout bounds one round (Redis and Hasura calls).
	roundTimeout = 2 * time.Minute
	// lockTTL outlives roundTimeout, so two rounds never overlap.
	lockTTL = roundTimeout + 30*time.Second
	// scanCount is the COUNT hint of SCAN and HSCAN.
	scanCount = 500
	// maxKeysPerRound bounds the counters moved and the in-flight entries
	// written in one round; the rest waits for the next round.
	maxKeysPerRound = 20000
	// batchSize is the number of counts written per GraphQL mutation.
	batchSize = 500
	// maxGraphQLResponse bounds a Hasura response body.
	maxGraphQLResponse = 4 << 20
	// recentRow is how old a stats row may be for a delta to be added to it
	// instead of inserting a new row (the original's one hour).
	recentRow = time.Hour
)

// moveScript moves the counters KEYS[2..] into the in-flight hash KEYS[1]
// atomically: HINCRBY inflight key n; DECRBY key n (the key is deleted when
// it reaches 0). Counters that are not positive integers are left alone;
// a "0" left by the original's GETSET is deleted. Returns how many moved.
const moveScript = `
local moved = 0
for i = 2, #KEYS do
  local v = redis.pcall('GET', KEYS[i])
  if type(v) == 'string' then
    if v == '0' then
      redis.call('DEL', KEYS[i])
    elseif string.match(v, '^[1-9][0-9]*$') and string.len(v) < 16 then
      redis.call('HINCRBY', KEYS[1], KEYS[i], v)
      if redis.call('DECRBY', KEYS[i], v) == 0 then
        redis.call('DEL', KEYS[i])
      end
      moved = moved + 1
    end
  end
end
return moved
`

// ackScript subtracts written counts (ARGV: field, n, field, n, ...) from the
// in-flight hash KEYS[1], deleting fields that reach 0.
const ackScript = `
for i = 1, #ARGV, 2 do
  local left = redis.call('HINCRBY', KEYS[1], ARGV[i], '-' .. ARGV[i + 1])
  if left <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
`

// unlockScript deletes the lock only if this round still holds it.
const unlockScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`

// GraphQL documents of the writeback (the original's SelectViewCounts and
// InsertViewCounts, §4.5): a delta is added to a row of the same content
// created within the last hour, else a new row is inserted.
const (
	gqlSelectViewCounts = `query SelectViewCounts($cutoff: timestamptz!, $itemIds: [uuid!]!, $elementIds: [uuid!]!, $roomIds: [uuid!]!) {
  analytics_ContentItemStats(where: {itemId: {_in: $itemIds}, created_at: {_gt: $cutoff}}) { id itemId viewCount }
  analytics_ContentElementStats(where: {elementId: {_in: $elementIds}, created_at: {_gt: $cutoff}}) { id elementId viewCount }
  analytics_RoomStats(where: {roomId: {_in: $roomIds}, created_at: {_gt: $cutoff}}) { id roomId hlsViewCount }
}`
	gqlInsertViewCounts = `mutation InsertViewCounts($itemStats: [analytics_ContentItemStats_insert_input!]!, $elementStats: [analytics_ContentElementStats_insert_input!]!, $roomStats: [analytics_RoomStats_insert_input!]!) {
  insert_analytics_ContentItemStats(objects: $itemStats, on_conflict: {constraint: ContentItemStats_pkey, update_columns: [viewCount]}) { affected_rows }
  insert_analytics_ContentElementStats(objects: $elementStats, on_conflict: {constraint: ContentElementStats_pkey, update_columns: [viewCount]}) { affected_rows }
  insert_analytics_RoomStats(objects: $roomStats, on_conflict: {constraint: RoomStats_pkey, update_columns: [hlsViewCount]}) { affected_rows }
}`
)

// pending is one in-flight count.
type pending struct {
	field       string // the counter key, as stored in the in-flight hash
	contentType string
	identifier  string
	count       int64
}

// writebackLoop runs a round at once, then every writeback_interval.
func (p *Plugin) writebackLoop(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.WritebackInterval.D)
	defer t.Stop()
	for {
		err := p.writebackRound(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.Error("analytics: writeback round failed; counts stay in flight and are retried next round", "err", err)
		}
		if p.afterRound != nil {
			p.afterRound(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writebackRound moves the counters into the in-flight hash and writes the
// in-flight counts to Hasura, removing each batch from the hash only once
// Hasura confirmed it. It does nothing while another instance holds the lock.
func (p *Plugin) writebackRound(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, roundTimeout)
	defer cancel()
	store := p.host.Store()
	token := p.host.InstanceID() + "/" + kit.RandomHex()
	_, err := store.Do(ctx, "SET", LockKey, token, "NX", "PX", lockTTL.Milliseconds())
	if errors.Is(err, sdk.ErrNil) {
		p.log.Debug("analytics: another instance is writing back")
		return nil
	}
	if err != nil {
		return fmt.Errorf("take the writeback lock: %w", err)
	}
	defer func() {
		// A fresh context: the round's may be over, the lock must still go.
		uctx, ucancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ucancel()
		if _, err := store.Eval(uctx, unlockScript, []string{LockKey}, token); err != nil {
			p.log.Warn("analytics: release the writeback lock (it expires on its own)", "err", err)
		}
	}()

	if err := p.moveCounters(ctx, store); err != nil {
		return err
	}
	items, err := p.readInflight(ctx, store)
	if err != nil {
		return err
	}
	for start := 0; start < len(items); start += batchSize {
		batch := items[start:min(start+batchSize, len(items))]
		if err := p.writeBatch(ctx, batch); err != nil {
			return fmt.Errorf("write %d counts: %w", len(batch), err)
		}
		args := make([]any, 0, 2*len(batch))
		for _, it := range batch {
			args = append(args, it.field, it.count)
		}
		if _, err := store.Eval(ctx, ackScript, []string{InflightKey}, args...); err != nil {
			// Written but still in flight: the next round writes them again.
			return fmt.Errorf("clear %d written counts: %w", len(batch), err)
		}
	}
	if len(items) > 0 {
		p.log.Info("analytics: view counts written back", "counts", len(items))
	}
	return nil
}

// moveCounters SCANs the counters and moves them into the in-flight hash,
// one script call per SCAN page, up to maxKeysPerRound counters.
func (p *Plugin) moveCounters(ctx context.Context, store sdk.Store) error {
	cursor, seen := "0", 0
	for {
		reply, err := store.Do(ctx, "SCAN", cursor, "MATCH", CountPrefix+"*", "COUNT", scanCount)
		if err != nil {
			return fmt.Errorf("scan counters: %w", err)
		}
		next, keys, err := scanReply(reply)
		if err != nil {
			return fmt.Errorf("scan counters: %w", err)
		}
		if len(keys) > 0 {
			if _, err := store.Eval(ctx, moveScript, append([]string{InflightKey}, keys...)); err != nil {
				return fmt.Errorf("move counters: %w", err)
			}
			seen += len(keys)
		}
		if next == "0" || seen >= maxKeysPerRound {
			return nil
		}
		cursor = next
	}
}

// readInflight HSCANs the in-flight hash (up to maxKeysPerRound entries).
// Entries that can never be written (unknown type, bad identifier or count)
// are deleted with an error log.
func (p *Plugin) readInflight(ctx context.Context, store sdk.Store) ([]pending, error) {
	var out []pending
	var bad []any
	cursor := "0"
	for {
		reply, err := store.Do(ctx, "HSCAN", InflightKey, cursor, "COUNT", scanCount)
		if err != nil {
			return nil, fmt.Errorf("read in-flight counts: %w", err)
		}
		next, kv, err := scanReply(reply)
		if err != nil {
			return nil, fmt.Errorf("read in-flight counts: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			it, ok := parsePending(kv[i], kv[i+1])
			if !ok {
				p.log.Error("analytics: unusable in-flight count dropped", "field", kv[i], "value", kv[i+1])
				bad = append(bad, kv[i])
				continue
			}
			out = append(out, it)
		}
		if next == "0" || len(out) >= maxKeysPerRound {
			break
		}
		cursor = next
	}
	if len(bad) > 0 {
		if _, err := store.Do(ctx, append([]any{"HDEL", InflightKey}, bad...)...); err != nil {
			return nil, fmt.Errorf("drop unusable in-flight counts: %w", err)
		}
	}
	// HSCAN may return a field twice; keep the first.
	seen := make(map[string]bool, len(out))
	uniq := out[:0]
	for _, it := range out {
		if !seen[it.field] {
			seen[it.field] = true
			uniq = append(uniq, it)
		}
	}
	return uniq, nil
}

// parsePending parses one in-flight entry "analytics.view.count:<type>:<id>" = n.
func parsePending(field, value string) (pending, bool) {
	rest, ok := strings.CutPrefix(field, CountPrefix)
	if !ok {
		return pending{}, false
	}
	ct, id, ok := strings.Cut(rest, ":")
	if !ok || !validContentType(ct) || !kit.ValidUUID(id) {
		return pending{}, false
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil || n <= 0 {
		return pending{}, false
	}
	return pending{field: field, contentType: ct, identifier: id, count: n}, true
}

// scanReply decodes a SCAN/HSCAN reply [cursor, [elements...]].
func scanReply(v any) (string, []string, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return "", nil, fmt.Errorf("unexpected scan reply %T", v)
	}
	cursor, err := sdk.String(arr[0], nil)
	if err != nil {
		return "", nil, fmt.Errorf("scan cursor: %w", err)
	}
	elems, err := sdk.Strings(arr[1], nil)
	if err != nil {
		return "", nil, fmt.Errorf("scan elements: %w", err)
	}
	return cursor, elems, nil
}

// statsRow is one row of the three stats tables as the writeback sees it.
type statsRow struct {
	ID    string `json:"id"`
	Item  string `json:"itemId"`
	Elem  string `json:"elementId"`
	Room  string `json:"roomId"`
	Views int64  `json:"viewCount"`
	HLS   int64  `json:"hlsViewCount"`
}

// writeBatch adds the batch's counts to Hasura (§4.5): rows created within
// the last hour get the delta added, other contents get a new row.
func (p *Plugin) writeBatch(ctx context.Context, batch []pending) error {
	ids := map[string][]string{ContentItem: {}, ContentElement: {}, ContentHLSStream: {}}
	for _, it := range batch {
		ids[it.contentType] = append(ids[it.contentType], it.identifier)
	}
	var existing struct {
		Items    []statsRow `json:"analytics_ContentItemStats"`
		Elements []statsRow `json:"analytics_ContentElementStats"`
		Rooms    []statsRow `json:"analytics_RoomStats"`
	}
	err := p.graphql(ctx, gqlSelectViewCounts, map[string]any{
		"cutoff":     p.now().Add(-recentRow).UTC().Format("2006-01-02T15:04:05.000Z"),
		"itemIds":    ids[ContentItem],
		"elementIds": ids[ContentElement],
		"roomIds":    ids[ContentHLSStream],
	}, &existing)
	if err != nil {
		return fmt.Errorf("select view counts: %w", err)
	}
	index := func(rows []statsRow, key func(statsRow) string) map[string]statsRow {
		m := make(map[string]statsRow, len(rows))
		for _, r := range rows {
			k := strings.ToLower(key(r))
			if _, dup := m[k]; !dup {
				m[k] = r
			}
		}
		return m
	}
	items := index(existing.Items, func(r statsRow) string { return r.Item })
	elems := index(existing.Elements, func(r statsRow) string { return r.Elem })
	rooms := index(existing.Rooms, func(r statsRow) string { return r.Room })
	itemStats, elementStats, roomStats := []map[string]any{}, []map[string]any{}, []map[string]any{}
	for _, it := range batch {
		id := strings.ToLower(it.identifier)
		switch it.contentType {
		case ContentItem:
			itemStats = append(itemStats, statsObject(items, id, "itemId", "viewCount", it.identifier, it.count, func(r statsRow) int64 { return r.Views }))
		case ContentElement:
			elementStats = append(elementStats, statsObject(elems, id, "elementId", "viewCount", it.identifier, it.count, func(r statsRow) int64 { return r.Views }))
		case ContentHLSStream:
			roomStats = append(roomStats, statsObject(rooms, id, "roomId", "hlsViewCount", it.identifier, it.count, func(r statsRow) int64 { return r.HLS }))
		}
	}
	var res map[string]struct {
		AffectedRows *int `json:"affected_rows"`
	}
	err = p.graphql(ctx, gqlInsertViewCounts, map[string]any{
		"itemStats": itemStats, "elementStats": elementStats, "roomStats": roomStats,
	}, &res)
	if err != nil {
		return fmt.Errorf("insert view counts: %w", err)
	}
	for _, f := range []string{"insert_analytics_ContentItemStats", "insert_analytics_ContentElementStats", "insert_analytics_RoomStats"} {
		if r, ok := res[f]; !ok || r.AffectedRows == nil {
			return fmt.Errorf("insert view counts: no %s.affected_rows in the answer", f)
		}
	}
	return nil
}

// statsObject is one insert object: the recent row's id and count plus the
// delta, or a new row.
func statsObject(existing map[string]statsRow, key, idCol, countCol, identifier string, delta int64, count func(statsRow) int64) map[string]any {
	obj := map[string]any{idCol: identifier, countCol: delta}
	if r, ok := existing[key]; ok && r.ID != "" {
		obj["id"] = r.ID
		obj[countCol] = count(r) + delta
	}
	return obj
}

// graphql posts one request to graphql_url and decodes its data into out.
func (p *Plugin) graphql(ctx context.Context, query string, vars map[string]any, out any) error {
	h := kit.Hasura{Client: p.httpClient, URL: p.cfg.GraphQLURL, AdminSecret: p.cfg.AdminSecret, MaxResponse: maxGraphQLResponse}
	return h.DoInto(ctx, query, vars, out)
}
