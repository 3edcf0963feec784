package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// defaultRetryBackoff is how long the writeback waits before handing a delivery
// back for requeue (the bus redelivers at once; this avoids a hot loop
// while Hasura is down).
const defaultRetryBackoff = time.Second

// maxGraphQLResponse bounds a Hasura response body.
const maxGraphQLResponse = 1 << 20

// GraphQL documents of the writeback (§6.4, one row per delivery: deliveries
// of a queue reach the plugin one at a time).
const (
	gqlInsertMessage = `mutation InsertChatMessages($objects: [chat_Message_insert_input!]!) {
  insert_chat_Message(objects: $objects, on_conflict: {constraint: Message_sId_key, update_columns: [updated_at]}) {
    returning { sId }
  }
}`
	gqlUpdateMessage = `mutation UpdateChatMessage($sId: uuid!, $set: chat_Message_set_input!) {
  update_chat_Message(where: {sId: {_eq: $sId}}, _set: $set) { affected_rows }
}`
	gqlDeleteMessage = `mutation DeleteChatMessage($sId: uuid!) {
  delete_chat_Message(where: {sId: {_eq: $sId}}) { affected_rows }
}`
	gqlInsertReaction = `mutation InsertChatReactions($objects: [chat_Reaction_insert_input!]!) {
  insert_chat_Reaction(objects: $objects, on_conflict: {constraint: Reaction_sId_key, update_columns: [updated_at]}) {
    returning { sId }
  }
}`
	gqlUpdateReaction = `mutation UpdateChatReaction($sId: uuid!, $set: chat_Reaction_set_input!) {
  update_chat_Reaction(where: {sId: {_eq: $sId}}, _set: $set) { affected_rows }
}`
	gqlDeleteReaction = `mutation DeleteChatReaction($sId: uuid!) {
  delete_chat_Reaction(where: {sId: {_eq: $sId}}) { affected_rows }
}`
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

func pick(data map[string]json.RawMessage, cols []string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(cols))
	for _, c := range cols {
		if v, ok := data[c]; ok {
			out[c] = v
		}
	}
	return out
}

// writeback writes one action to Hasura. It returns nil (ack) only when
// Hasura confirmed the row; transient failures return an error (requeue);
// a message Hasura refuses twice, or an update/delete of a row that is still
// missing on redelivery, is dropped with an error log.
func (p *Plugin) writeback(ctx context.Context, d sdk.Delivery, k kind) error {
	a, err := parseAction(k, d.Body)
	if err != nil {
		p.log.Error("chat: invalid writeback message dropped", "queue", d.Queue, "err", err)
		return fmt.Errorf("chat: writeback: %w: %w", err, sdk.ErrDrop)
	}
	insertQ, updateQ, deleteQ := gqlInsertMessage, gqlUpdateMessage, gqlDeleteMessage
	insertCols, updateCols := messageInsertColumns, messageUpdateColumns
	root := "chat_Message"
	if k == kindReaction {
		insertQ, updateQ, deleteQ = gqlInsertReaction, gqlUpdateReaction, gqlDeleteReaction
		insertCols, updateCols = reactionInsertColumns, reactionUpdateColumns
		root = "chat_Reaction"
	}
	var (
		query string
		vars  map[string]any
		field string
	)
	switch a.Op {
	case opInsert:
		query, field = insertQ, "insert_"+root
		vars = map[string]any{"objects": []any{pick(a.data, insertCols)}}
	case opUpdate:
		query, field = updateQ, "update_"+root
		vars = map[string]any{"sId": a.SID, "set": pick(a.data, updateCols)}
	case opDelete:
		query, field = deleteQ, "delete_"+root
		vars = map[string]any{"sId": a.SID}
	}
	res, err := p.graphql(ctx, query, vars)
	if err != nil {
		if errors.Is(err, errGraphQL) && d.Redelivered {
			p.log.Error("chat: writeback refused twice by Hasura; dropped", "kind", k.String(), "op", a.Op, "sId", a.SID, "err", err)
			return fmt.Errorf("chat: writeback: %w: %w", err, sdk.ErrDrop)
		}
		p.log.Warn("chat: writeback failed; requeued", "kind", k.String(), "op", a.Op, "sId", a.SID, "err", err)
		p.backoff(ctx)
		return fmt.Errorf("chat: writeback %s %s: %w", a.Op, a.SID, err)
	}
	var out map[string]struct {
		Returning []struct {
			SID string `json:"sId"`
		} `json:"returning"`
		AffectedRows *int `json:"affected_rows"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		p.backoff(ctx)
		return fmt.Errorf("chat: writeback: decode data: %w", err)
	}
	r := out[field]
	if a.Op == opInsert {
		for _, row := range r.Returning {
			if row.SID == a.SID {
				return nil
			}
		}
		p.log.Warn("chat: writeback insert not confirmed; requeued", "kind", k.String(), "sId", a.SID)
		p.backoff(ctx)
		return fmt.Errorf("chat: writeback insert %s: row not returned", a.SID)
	}
	if r.AffectedRows == nil {
		p.backoff(ctx)
		return fmt.Errorf("chat: writeback %s %s: no affected_rows in the answer", a.Op, a.SID)
	}
	if *r.AffectedRows == 0 {
		if d.Redelivered {
			p.log.Warn("chat: writeback found no row twice; dropped", "kind", k.String(), "op", a.Op, "sId", a.SID)
			return nil
		}
		p.backoff(ctx)
		return fmt.Errorf("chat: writeback %s %s: no row affected", a.Op, a.SID)
	}
	return nil
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
