package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// The read-up-to index in Hasura mode (graphql_url set): Redis is a cache of
// Hasura's chat_ReadUpToIndex, loaded on a miss and written back
// periodically (§6.3, lib/cache/readUpToIndex.ts and
// workers/chat/unreadCountWriteback.ts of the original). Without graphql_url
// (static mode) the index lives in Redis only.

const (
	// readUpToModifiedKey is the set of "<chatId>¬<userId>" whose index
	// changed since the last writeback (the original's key).
	readUpToModifiedKey = "caches:ReadUpToIndex:modified"
	// readUpToWritingKey is the ZSET of entries a writeback has popped and
	// not finished, "<batch>\n<entry>" scored by the claim's deadline (unix
	// ms): entries whose writer died mid-batch go back to the modified set
	// once their claim ran out.
	readUpToWritingKey = "caches:ReadUpToIndex:writing"
	// readUpToClaim is how long a batch's claim lasts: longer than a tick
	// (readUpToTickTimeout) plus the put-back after it.
	readUpToClaim = 2 * time.Minute
	// readUpToMissTTL is how long "Hasura has no index" is cached: the
	// original refetched a not-found index at most every 5 minutes.
	readUpToMissTTL = 5 * time.Minute
	// readUpToLoadTimeout bounds one load from Hasura, so an unresponsive
	// Hasura delays an unread count by at most this much.
	readUpToLoadTimeout = 5 * time.Second
	// readUpToBatch is the most entries one writeback mutation carries.
	readUpToBatch = 500
	// readUpToTickTimeout bounds one writeback tick.
	readUpToTickTimeout = time.Minute
)

// qReadUpToIndex is the original's ReadUpToIndex query
// (lib/cache/readUpToIndex.ts).
const qReadUpToIndex = `query ReadUpToIndex($chatId: uuid!, $userId: String!) {
  chat_ReadUpToIndex(where: {chatId: {_eq: $chatId}, registrant: {userId: {_eq: $userId}}}) {
    chatId
    registrantId
    messageSId
  }
}`

// qReadUpToRegistrants resolves users to their registrant in each chat's
// conference (the original's RegistrantIdsFromChatsAndUsers, in its later
// form that also returns the conference's chats: the 2021 one matched by
// userId alone, which picks a wrong registrant for a user registered in two
// conferences).
const qReadUpToRegistrants = `query RegistrantIdsFromChatsAndUsers($chatIds: [uuid!]!, $userIds: [String!]!) {
  registrant_Registrant(where: {userId: {_in: $userIds}, conference: {chats: {id: {_in: $chatIds}}}}) {
    id
    userId
    conference {
      chats(where: {id: {_in: $chatIds}}) {
        id
      }
    }
  }
}`

// mInsertReadUpToIndex is the original's upsert (InsertReadUpToIndex).
const mInsertReadUpToIndex = `mutation InsertReadUpToIndex($objects: [chat_ReadUpToIndex_insert_input!]!) {
  insert_chat_ReadUpToIndex(objects: $objects, on_conflict: {constraint: ReadUpToIndex_pkey, update_columns: [messageSId]}) {
    affected_rows
  }
}`

// setReadUpToScript writes the index and, in Hasura mode (ARGV[3] not
// empty), marks it modified, atomically so a writeback never misses a write.
const setReadUpToScript = `redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then redis.call('SADD', KEYS[2], ARGV[3]) end
return 1`

// claimReadUpToScript returns the entries of writers whose claim ran out
// (ARGV[1] = now) to the modified set, then pops up to ARGV[3] modified
// entries and claims them for batch ARGV[4] until ARGV[2], atomically, so
// an entry is always in one of the two keys until it was written.
const claimReadUpToScript = `local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 10000)
for _, m in ipairs(stale) do
  local nl = string.find(m, '\n', 1, true)
  if nl then redis.call('SADD', KEYS[1], string.sub(m, nl + 1)) end
  redis.call('ZREM', KEYS[2], m)
end
local popped = redis.call('SPOP', KEYS[1], ARGV[3])
for _, e in ipairs(popped) do
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4] .. '\n' .. e)
end
return popped`

// releaseReadUpToScript ends batch ARGV[1]'s claim on its entries
// (ARGV[3..]), putting the first ARGV[2] of them back into the modified set.
const releaseReadUpToScript = `local n = tonumber(ARGV[2])
for i = 3, #ARGV do
  if i < n + 3 then redis.call('SADD', KEYS[1], ARGV[i]) end
  redis.call('ZREM', KEYS[2], ARGV[1] .. '\n' .. ARGV[i])
end
return 1`

// hasuraMode reports whether the plugin has a Hasura endpoint.
func (p *Plugin) hasuraMode() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.GraphQLURL != ""
}

// readUpToMember is the modified-set member of an index.
func readUpToMember(chatID, userID string) string { return chatID + "¬" + userID }

// loadReadUpTo loads the index from Hasura after a cache miss and caches it
// (a missing one for readUpToMissTTL). It returns the read message's sId, ""
// for none. A Hasura failure is logged and gives "" uncached, as without
// Hasura.
func (p *Plugin) loadReadUpTo(ctx context.Context, chatID, userID string) string {
	ctx, cancel := context.WithTimeout(ctx, readUpToLoadTimeout)
	defer cancel()
	data, err := p.graphql(ctx, qReadUpToIndex, map[string]any{"chatId": chatID, "userId": userID})
	var out struct {
		Rows []struct {
			MessageSID *string `json:"messageSId"`
		} `json:"chat_ReadUpToIndex"`
	}
	if err == nil {
		err = json.Unmarshal(data, &out)
	}
	if err != nil {
		p.log.Warn("chat: load read-up-to index from Hasura; counting without it", "chat", chatID, "user", userID, "err", err)
		return ""
	}
	r := readUpTo{ChatID: chatID, UserID: userID}
	ttl := readUpToMissTTL
	if len(out.Rows) > 0 && out.Rows[0].MessageSID != nil {
		r.MessageSID = *out.Rows[0].MessageSID
		ttl = readUpToTTL
	}
	b, err := marshalJSON(r)
	if err != nil {
		return r.MessageSID
	}
	// NX: a setReadUpTo that ran while Hasura answered is newer; keep it.
	if _, err := p.host.Store().Do(ctx, "SET", readUpToKey(chatID, userID), string(b), "PX", ttl.Milliseconds(), "NX"); err != nil {
		p.log.Warn("chat: cache read-up-to index", "chat", chatID, "user", userID, "err", err)
	}
	return r.MessageSID
}

// readUpToLoop runs the writeback every interval until Stop.
func (p *Plugin) readUpToLoop(interval time.Duration) {
	defer p.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(p.ctx, readUpToTickTimeout)
		if err := p.writeBackReadUpTo(ctx); err != nil && p.ctx.Err() == nil {
			p.log.Error("chat: read-up-to writeback failed; retried next time", "err", err)
		}
		cancel()
	}
}

// writeBackReadUpTo writes the modified indices to Hasura, readUpToBatch at
// a time, until the set is empty or a batch failed (its entries are back in
// the set then).
func (p *Plugin) writeBackReadUpTo(ctx context.Context) error {
	for {
		n, err := p.writeBackReadUpToBatch(ctx)
		if err != nil || n < readUpToBatch {
			return err
		}
	}
}

// writeBackReadUpToBatch pops up to readUpToBatch modified entries (SPOP is
// atomic: two instances never pop the same entry) and claims them for
// readUpToClaim, reads their cached indices, resolves each user to their
// registrant in the chat's conference and upserts the rows with one
// mutation. The entries of a failed request are added back; should this
// process die before it released the claim, the next writeback after the
// claim ran out (on any instance) adds them back. It returns how many
// entries it popped.
func (p *Plugin) writeBackReadUpToBatch(ctx context.Context) (int, error) {
	store := p.host.Store()
	batch := kit.RandomHex() // names this batch's claim
	now := p.now()
	members, err := sdk.Strings(store.Eval(ctx, claimReadUpToScript, []string{readUpToModifiedKey, readUpToWritingKey},
		now.UnixMilli(), now.Add(readUpToClaim).UnixMilli(), readUpToBatch, batch))
	if err != nil {
		return 0, fmt.Errorf("pop modified read-up-to indices: %w", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	rows, err := p.readUpToRows(ctx, members)
	var back []string
	if err != nil {
		back = members
	} else if len(rows) > 0 {
		w := &rutWrite{p: p}
		w.write(ctx, rows)
		back, err = w.back, w.err
	}
	// Not ctx: it may be what failed the request. Re-adding an entry that a
	// setReadUpTo added meanwhile is harmless (a set).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	back = slices.Compact(slices.Sorted(slices.Values(back)))
	args := make([]any, 0, 2+len(members)+len(back))
	args = append(args, batch, len(back))
	for _, m := range back {
		args = append(args, m)
	}
	for _, m := range members {
		if _, found := slices.BinarySearch(back, m); !found {
			args = append(args, m)
		}
	}
	if _, rerr := store.Eval(rctx, releaseReadUpToScript, []string{readUpToModifiedKey, readUpToWritingKey}, args...); rerr != nil {
		p.log.Error("chat: read-up-to writeback: could not release the batch; its entries return to the modified set when the claim runs out",
			"count", len(members), "back", len(back), "claim", readUpToClaim, "err", rerr)
	}
	return len(members), err
}

// rutRow is one row of the upsert; member is its modified-set entry.
type rutRow struct {
	RegistrantID string `json:"registrantId"`
	ChatID       string `json:"chatId"`
	MessageSID   string `json:"messageSId"`
	member       string
}

// readUpToRows reads the cached indices of members and resolves their
// registrants. Entries whose cache expired, that are malformed, or whose
// user has no registrant in the chat's conference are skipped (the
// original skipped the last too): there is nothing to write for them.
func (p *Plugin) readUpToRows(ctx context.Context, members []string) ([]rutRow, error) {
	keys := make([]any, 0, len(members)+1)
	keys = append(keys, "MGET")
	for _, m := range members {
		keys = append(keys, "caches:ReadUpToIndex:"+m)
	}
	vals, err := sdk.Strings(p.host.Store().Do(ctx, keys...))
	if err != nil {
		return nil, fmt.Errorf("read cached read-up-to indices: %w", err)
	}
	var idx []rutRow
	chats, users := map[string]bool{}, map[string]bool{}
	for i, v := range vals {
		if v == "" {
			continue
		}
		var r readUpTo
		if err := unmarshalJSON([]byte(v), &r); err != nil || r.ChatID == "" || r.UserID == "" || r.MessageSID == "" {
			p.log.Warn("chat: read-up-to writeback: bad cached index skipped", "entry", members[i], "err", err)
			continue
		}
		idx = append(idx, rutRow{ChatID: r.ChatID, MessageSID: r.MessageSID, member: readUpToMember(r.ChatID, r.UserID)})
		chats[r.ChatID], users[r.UserID] = true, true
	}
	if len(idx) == 0 {
		return nil, nil
	}
	var regs struct {
		Registrants []struct {
			ID         string `json:"id"`
			UserID     string `json:"userId"`
			Conference struct {
				Chats []struct {
					ID string `json:"id"`
				} `json:"chats"`
			} `json:"conference"`
		} `json:"registrant_Registrant"`
	}
	data, err := p.graphql(ctx, qReadUpToRegistrants, map[string]any{"chatIds": sortedKeys(chats), "userIds": sortedKeys(users)})
	if err == nil {
		err = json.Unmarshal(data, &regs)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve registrants: %w", err)
	}
	regOf := map[string]string{} // chatId¬userId -> registrantId
	for _, r := range regs.Registrants {
		for _, c := range r.Conference.Chats {
			regOf[readUpToMember(c.ID, r.UserID)] = r.ID
		}
	}
	rows := idx[:0]
	for _, r := range idx {
		if r.RegistrantID = regOf[r.member]; r.RegistrantID == "" {
			p.log.Warn("chat: read-up-to writeback: no registrant for the user in the chat's conference; skipped", "entry", r.member)
			continue
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// rutWrite is the upsert of one batch.
type rutWrite struct {
	p    *Plugin
	back []string // entries to put back into the modified set
	err  error    // first failure
	// down is set once a request failed for a reason other than a
	// refusal: the rest of the batch is put back untried.
	down error
}

// write upserts rows with one mutation. When Hasura refuses it (a GraphQL
// error rolls the whole mutation back; typically a foreign-key violation for
// a message not yet written back), the halves are written apart down to the
// refused row, which is put back once (its message may yet be written back)
// and dropped when refused again with the same messageSId. Any other
// failure puts the rows back untried.
func (w *rutWrite) write(ctx context.Context, rows []rutRow) {
	fail := func(err error) {
		if w.err == nil {
			w.err = err
		}
		for _, r := range rows {
			w.back = append(w.back, r.member)
		}
	}
	if w.down != nil {
		fail(w.down)
		return
	}
	_, err := w.p.graphql(ctx, mInsertReadUpToIndex, map[string]any{"objects": rows})
	switch {
	case err == nil:
		for _, r := range rows {
			w.p.forgetRefused(r.member)
		}
	case errors.Is(err, errGraphQL) && len(rows) > 1:
		w.write(ctx, rows[:len(rows)/2])
		w.write(ctx, rows[len(rows)/2:])
	case errors.Is(err, errGraphQL):
		r := rows[0]
		if w.p.refusedBefore(r.member, r.MessageSID) {
			w.p.log.Error("chat: read-up-to index refused twice by Hasura; dropped", "entry", r.member, "messageSId", r.MessageSID, "err", err)
			return
		}
		w.p.log.Warn("chat: read-up-to index refused by Hasura; retried next time", "entry", r.member, "messageSId", r.MessageSID, "err", err)
		fail(fmt.Errorf("upsert read-up-to index %s: %w", r.member, err))
	default:
		w.down = fmt.Errorf("upsert %d read-up-to indices: %w", len(rows), err)
		fail(w.down)
	}
}

// refusedBefore reports whether Hasura refused member with messageSID
// before, and records this refusal otherwise. The record is per instance
// and bounded: losing it only costs one more try.
func (p *Plugin) refusedBefore(member, messageSID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rutRefused[member] == messageSID {
		delete(p.rutRefused, member)
		return true
	}
	if p.rutRefused == nil || len(p.rutRefused) >= 10000 {
		p.rutRefused = map[string]string{}
	}
	p.rutRefused[member] = messageSID
	return false
}

func (p *Plugin) forgetRefused(member string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.rutRefused, member)
}

// sortedKeys returns the keys of m, sorted (stable requests).
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
