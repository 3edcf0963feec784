package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// defaultRetryBackoff is how long the writeback waits before handing a batch
// (or part of one) back for requeue (the bus redelivers at once; this avoids a hot loop
// while Hasura is down).
const defaultRetryBackoff = time.Second

// maxGraphQLResponse bounds a Hasura response body.
const maxGraphQLResponse = 1 << 20

// Tables of the writeback, by kind.
type wbTable struct {
	name       string // chat_Message
	constraint string // its sId unique constraint, for on_conflict
}

var (
	messageTable  = wbTable{name: "chat_Message", constraint: "Message_sId_key"}
	reactionTable = wbTable{name: "chat_Reaction", constraint: "Reaction_sId_key"}
)

// Columns written by the writeback. Only columns are sent, so superfluous
// client fields (remoteServiceId, ...) cannot fail the mutation (§6.4).
var (
	messageInsertColumns  = []string{"chatId", "data", "duplicatedMessageSId", "isPinned", "message", "sId", "senderId", "systemId", "type"}
	messageUpdateColumns  = []string{"data", "duplicatedMessageSId", "isPinned", "message", "systemId", "type"}
	reactionInsertColumns = []string{"chatId", "data", "duplicateSId", "sId", "senderId", "type", "messageSId", "symbol"}
	reactionUpdateColumns = []string{"data", "duplicateSId", "symbol", "type"}
)

// errGraphQL marks a response that carried GraphQL errors (Hasura refused the
// mutation: likely permanent).
var errGraphQL = errors.New("graphql error")

// emptyIsNull are the optional uuid columns that clients may send as ""
// (validation checks them only when non-empty, as the original did). A uuid
// column refuses "", which failed the original's writeback of such a row;
// it is written as null.
var emptyIsNull = map[string]bool{"duplicatedMessageSId": true, "duplicateSId": true}

// pick returns the columns cols of data that are present.
func pick(data map[string]json.RawMessage, cols []string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(cols))
	for _, c := range cols {
		if v, ok := data[c]; ok {
			if emptyIsNull[c] && string(v) == `""` {
				v = json.RawMessage(`null`)
			}
			out[c] = v
		}
	}
	return out
}

// writeback writes one delivery (OnDelivery: a host without batches).
func (p *Plugin) writeback(ctx context.Context, d sdk.Delivery, k kind) error {
	return p.writeBatch(ctx, []sdk.Delivery{d}, k)[0]
}

// OnDeliveries writes a batch of one writeback queue (sdk.BatchDeliveryHandler).
func (p *Plugin) OnDeliveries(ctx context.Context, ds []sdk.Delivery) []error {
	var k kind
	switch {
	case ds[0].Queue == QueueMessagesWriteback && p.cfg.Writeback:
		k = kindMessage
	case ds[0].Queue == QueueReactionsWriteback && p.cfg.Writeback:
		k = kindReaction
	default: // only the writeback queues are batched; one at a time otherwise
		errs := make([]error, len(ds))
		for i, d := range ds {
			errs[i] = p.OnDelivery(ctx, d)
		}
		return errs
	}
	return p.writeBatch(ctx, ds, k)
}

// wbItem is one valid delivery of a batch.
type wbItem struct {
	i int // index in the batch
	d sdk.Delivery
	a *action
}

// writeBatch writes the deliveries of one writeback queue in as few GraphQL
// requests as it can and returns one outcome per delivery: nil (ack) only
// for a row Hasura confirmed, an error wrapping sdk.ErrDrop for a message
// that is invalid or that Hasura refused on its own twice, a plain error
// (requeue, after one backoff per batch) otherwise.
func (p *Plugin) writeBatch(ctx context.Context, ds []sdk.Delivery, k kind) []error {
	errs := make([]error, len(ds))
	items := make([]wbItem, 0, len(ds))
	for i, d := range ds {
		a, err := parseAction(k, d.Body)
		if err != nil {
			p.log.Error("chat: invalid writeback message dropped", "queue", d.Queue, "err", err)
			errs[i] = fmt.Errorf("chat: writeback: %w: %w", err, sdk.ErrDrop)
			continue
		}
		items = append(items, wbItem{i: i, d: d, a: a})
	}
	w := &wbBatch{p: p, k: k, errs: errs}
	if len(items) > 0 {
		w.write(ctx, items)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, sdk.ErrDrop) {
			p.backoff(ctx)
			break
		}
	}
	return errs
}

// wbBatch is one writeBatch call.
type wbBatch struct {
	p    *Plugin
	k    kind
	errs []error
	// down is set once a request failed for a transient reason: what is
	// left of the batch is requeued without more requests.
	down error
}

// wbField is one mutation field of a request: an insert of consecutive
// INSERTs, or one UPDATE or DELETE.
type wbField struct {
	op    string
	items []wbItem
}

// write writes items with one request. When Hasura refuses the request
// (GraphQL errors: it ran the fields in one transaction and rolled it back),
// it writes each half separately, down to the one row it refuses, so the
// good rows of the batch are written.
func (w *wbBatch) write(ctx context.Context, items []wbItem) {
	if w.down != nil {
		for _, it := range items {
			w.errs[it.i] = fmt.Errorf("chat: writeback %s %s: not tried: %w", it.a.Op, it.a.SID, w.down)
		}
		return
	}
	fields := wbFields(items)
	query, vars := wbDocument(w.k, fields)
	res, err := w.p.graphql(ctx, query, vars)
	switch {
	case err != nil && errors.Is(err, errGraphQL) && len(items) > 1:
		w.p.log.Info("chat: writeback batch refused by Hasura; writing its halves apart", "kind", w.k.String(), "rows", len(items), "err", err)
		w.write(ctx, items[:len(items)/2])
		w.write(ctx, items[len(items)/2:])
		return
	case err != nil && errors.Is(err, errGraphQL):
		it := items[0]
		if it.d.Redelivered {
			w.p.log.Error("chat: writeback refused twice by Hasura; dropped", "kind", w.k.String(), "op", it.a.Op, "sId", it.a.SID, "err", err)
			w.errs[it.i] = fmt.Errorf("chat: writeback: %w: %w", err, sdk.ErrDrop)
			return
		}
		w.p.log.Warn("chat: writeback refused by Hasura; requeued once", "kind", w.k.String(), "op", it.a.Op, "sId", it.a.SID, "err", err)
		w.errs[it.i] = fmt.Errorf("chat: writeback %s %s: %w", it.a.Op, it.a.SID, err)
		return
	case err != nil:
		w.p.log.Warn("chat: writeback failed; requeued", "kind", w.k.String(), "rows", len(items), "err", err)
		w.down = err
		for _, it := range items {
			w.errs[it.i] = fmt.Errorf("chat: writeback %s %s: %w", it.a.Op, it.a.SID, err)
		}
		return
	}
	var out map[string]struct {
		Returning []struct {
			SID string `json:"sId"`
		} `json:"returning"`
		AffectedRows *int `json:"affected_rows"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		for _, it := range items {
			w.errs[it.i] = fmt.Errorf("chat: writeback: decode data: %w", err)
		}
		return
	}
	for f, fd := range fields {
		r := out[wbAlias(f)]
		if fd.op == opInsert {
			returned := make(map[string]bool, len(r.Returning))
			for _, row := range r.Returning {
				returned[row.SID] = true
			}
			for _, it := range fd.items {
				if !returned[it.a.SID] {
					w.p.log.Warn("chat: writeback insert not confirmed; requeued", "kind", w.k.String(), "sId", it.a.SID)
					w.errs[it.i] = fmt.Errorf("chat: writeback insert %s: row not returned", it.a.SID)
				}
			}
			continue
		}
		it := fd.items[0]
		switch {
		case r.AffectedRows == nil:
			w.errs[it.i] = fmt.Errorf("chat: writeback %s %s: no affected_rows in the answer", it.a.Op, it.a.SID)
		case *r.AffectedRows == 0 && it.d.Redelivered:
			w.p.log.Warn("chat: writeback found no row twice; dropped", "kind", w.k.String(), "op", it.a.Op, "sId", it.a.SID)
		case *r.AffectedRows == 0:
			w.errs[it.i] = fmt.Errorf("chat: writeback %s %s: no row affected", it.a.Op, it.a.SID)
		}
	}
}

// wbFields groups items, in order, into mutation fields: consecutive
// INSERTs share one insert (a new one starts when an sId repeats, which one
// insert with on_conflict cannot take twice); each UPDATE and DELETE is its
// own field, so it runs after the INSERTs before it.
func wbFields(items []wbItem) []wbField {
	var fields []wbField
	var sids map[string]bool
	for _, it := range items {
		if it.a.Op == opInsert {
			if n := len(fields); n > 0 && fields[n-1].op == opInsert && !sids[it.a.SID] {
				fields[n-1].items = append(fields[n-1].items, it)
				sids[it.a.SID] = true
				continue
			}
			sids = map[string]bool{it.a.SID: true}
		}
		fields = append(fields, wbField{op: it.a.Op, items: []wbItem{it}})
	}
	return fields
}

func wbAlias(f int) string { return "f" + strconv.Itoa(f) }

// wbDocument builds one mutation with a field per wbField, aliased f0, f1,
// ... in order (Hasura runs them one after the other in one transaction),
// and its variables: o<f> (insert objects), s<f> (sId) and set<f> (_set).
// Only the table's columns are sent (§6.4).
func wbDocument(k kind, fields []wbField) (string, map[string]any) {
	t, insertCols, updateCols := messageTable, messageInsertColumns, messageUpdateColumns
	if k == kindReaction {
		t, insertCols, updateCols = reactionTable, reactionInsertColumns, reactionUpdateColumns
	}
	vars := make(map[string]any, 2*len(fields))
	var decl, body strings.Builder
	for f, fd := range fields {
		if f > 0 {
			decl.WriteString(", ")
		}
		n := strconv.Itoa(f)
		switch fd.op {
		case opInsert:
			objs := make([]any, len(fd.items))
			for i, it := range fd.items {
				objs[i] = pick(it.a.data, insertCols)
			}
			vars["o"+n] = objs
			fmt.Fprintf(&decl, "$o%s: [%s_insert_input!]!", n, t.name)
			fmt.Fprintf(&body, "  f%s: insert_%s(objects: $o%s, on_conflict: {constraint: %s, update_columns: [updated_at]}) { returning { sId } }\n", n, t.name, n, t.constraint)
		case opUpdate:
			a := fd.items[0].a
			vars["s"+n], vars["set"+n] = a.SID, pick(a.data, updateCols)
			fmt.Fprintf(&decl, "$s%s: uuid!, $set%s: %s_set_input!", n, n, t.name)
			fmt.Fprintf(&body, "  f%s: update_%s(where: {sId: {_eq: $s%s}}, _set: $set%s) { affected_rows }\n", n, t.name, n, n)
		case opDelete:
			vars["s"+n] = fd.items[0].a.SID
			fmt.Fprintf(&decl, "$s%s: uuid!", n)
			fmt.Fprintf(&body, "  f%s: delete_%s(where: {sId: {_eq: $s%s}}) { affected_rows }\n", n, t.name, n)
		}
	}
	return "mutation ChatWriteback(" + decl.String() + ") {\n" + body.String() + "}", vars
}

func (p *Plugin) backoff(ctx context.Context) {
	if p.retryBackoff <= 0 {
		return
	}
	t := time.NewTimer(p.retryBackoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// graphql posts one GraphQL request to Hasura and returns its data. An
// answer with GraphQL errors gives errGraphQL.
func (p *Plugin) graphql(ctx context.Context, query string, vars map[string]any) (json.RawMessage, error) {
	h := kit.Hasura{Client: p.httpClient, URL: p.cfg.GraphQLURL, AdminSecret: p.cfg.AdminSecret, MaxResponse: maxGraphQLResponse}
	data, err := h.Do(ctx, query, vars)
	var ge *kit.GraphQLError
	if errors.As(err, &ge) {
		return nil, fmt.Errorf("%w: %s", errGraphQL, ge.Message)
	}
	return data, err
}
