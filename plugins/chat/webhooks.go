package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// checkSecret compares the x-hasura-event-secret header with event_secret in
// constant time. An empty event_secret refuses everything.
func (p *Plugin) checkSecret(h http.Header) bool { return kit.EventSecretOK(h, p.cfg.EventSecret) }

// hasuraEvent is a Hasura event trigger payload (types/hasura.ts).
type hasuraEvent struct {
	Op       string
	Old, New json.RawMessage // null when absent
}

// parseHasuraEvent validates a Hasura event payload. session_variables may be
// null or absent (Hasura sends null for changes without a session).
func parseHasuraEvent(body []byte) (hasuraEvent, error) {
	top, ok := objectOf(body)
	if !ok {
		return hasuraEvent{}, invalidf("body must be an object")
	}
	ev, ok := objectOf(top["event"])
	if !ok {
		return hasuraEvent{}, invalidf("event must be an object")
	}
	op, _ := kit.JSONString(ev["op"])
	switch op {
	case "INSERT", "UPDATE", "DELETE", "MANUAL":
	default:
		return hasuraEvent{}, invalidf("event.op %s is not INSERT, UPDATE, DELETE or MANUAL", ev["op"])
	}
	data, ok := objectOf(ev["data"])
	if !ok {
		return hasuraEvent{}, invalidf("event.data must be an object")
	}
	oldRaw, okOld := data["old"]
	newRaw, okNew := data["new"]
	if !okOld || !okNew {
		return hasuraEvent{}, invalidf("event.data must have keys old and new")
	}
	if sv, present := ev["session_variables"]; present && !isNull(sv) {
		m, ok := objectOf(sv)
		if !ok {
			return hasuraEvent{}, invalidf("event.session_variables must be an object or null")
		}
		for k, v := range m {
			if _, ok := kit.JSONString(v); !ok {
				return hasuraEvent{}, invalidf("event.session_variables.%s must be a string", k)
			}
		}
	}
	return hasuraEvent{Op: op, Old: oldRaw, New: newRaw}, nil
}

// chatRow is a chat.Subscription or chat.Pin row.
type chatRow struct {
	ChatID       string
	RegistrantID string
}

func parseChatRow(raw json.RawMessage) (chatRow, error) {
	m, ok := objectOf(raw)
	if !ok {
		return chatRow{}, invalidf("row must be an object")
	}
	c, ok1 := kit.JSONString(m["chatId"])
	r, ok2 := kit.JSONString(m["registrantId"])
	if !ok1 || !ok2 || c == "" || r == "" {
		return chatRow{}, invalidf("row needs string chatId and registrantId")
	}
	return chatRow{ChatID: c, RegistrantID: r}, nil
}

// OnHTTP serves the Hasura webhooks.
func (p *Plugin) OnHTTP(ctx context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	switch r.Path {
	case RouteSubscriptionChanged, RoutePinChanged, RouteFlagInserted:
	default:
		return kit.TextResponse(http.StatusNotFound, "Not found"), nil
	}
	if !p.checkSecret(r.Header) {
		p.log.Warn("chat: webhook with a missing or wrong event secret", "path", r.Path, "remote", r.RemoteAddr)
		return sdk.HTTPResponse{Status: http.StatusUnauthorized, Header: kit.JSONHeader(), Body: []byte("{}")}, nil
	}
	if r.Method != http.MethodPost {
		return kit.TextResponse(http.StatusMethodNotAllowed, "Method not allowed"), nil
	}
	if len(r.Body) > maxWebhookBody {
		return kit.TextResponse(http.StatusRequestEntityTooLarge, "Payload too large"), nil
	}
	ev, err := parseHasuraEvent(r.Body)
	if err != nil {
		p.log.Warn("chat: unexpected webhook payload", "path", r.Path, "err", err)
		return kit.TextResponse(http.StatusInternalServerError, "Unexpected payload"), nil
	}
	switch r.Path {
	case RouteSubscriptionChanged:
		err = p.rowChanged(ctx, ev, subscriptionsKey, "chat:chat.subscriptions.", "chat.subscribed", "chat.unsubscribed")
	case RoutePinChanged:
		err = p.rowChanged(ctx, ev, pinsKey, "chat:chat.pins.", "chat.pinned", "chat.unpinned")
	case RouteFlagInserted:
		err = p.flagInserted(ctx, ev)
	}
	if errors.Is(err, errInvalid) {
		p.log.Warn("chat: unexpected webhook payload", "path", r.Path, "err", err)
		return kit.TextResponse(http.StatusInternalServerError, "Unexpected payload"), nil
	}
	if err != nil {
		p.log.Error("chat: webhook failed", "path", r.Path, "err", err)
		return kit.TextResponse(http.StatusInternalServerError, "Internal error"), nil
	}
	return kit.TextResponse(http.StatusOK, "OK"), nil
}

// rowChanged applies a subscription or pin change to its set and tells the
// registrant's listeners.
func (p *Plugin) rowChanged(ctx context.Context, ev hasuraEvent, setKey func(string) string, roomPrefix, onEvent, offEvent string) error {
	store := p.host.Store()
	switch ev.Op {
	case "INSERT", "MANUAL", "UPDATE":
		row, err := parseChatRow(ev.New)
		if err != nil {
			return err
		}
		if ev.Op == "UPDATE" && !isNull(ev.Old) {
			if old, err := parseChatRow(ev.Old); err == nil && old != row {
				if _, err := store.Do(ctx, "SREM", setKey(old.ChatID), old.RegistrantID); err != nil {
					return fmt.Errorf("update set: %w", err)
				}
			}
		}
		if _, err := store.Do(ctx, "SADD", setKey(row.ChatID), row.RegistrantID); err != nil {
			return fmt.Errorf("update set: %w", err)
		}
		if ev.Op == "UPDATE" {
			return nil
		}
		return p.host.Emit(ctx, sdk.RoomTarget(roomPrefix+row.RegistrantID), onEvent, row.ChatID)
	case "DELETE":
		row, err := parseChatRow(ev.Old)
		if err != nil {
			return err
		}
		if _, err := store.Do(ctx, "SREM", setKey(row.ChatID), row.RegistrantID); err != nil {
			return fmt.Errorf("update set: %w", err)
		}
		return p.host.Emit(ctx, sdk.RoomTarget(roomPrefix+row.RegistrantID), offEvent, row.ChatID)
	}
	return nil
}

// flagInserted notifies the moderators of a reported message (§8.3): the
// conference's moderators from the directory (Directory.MessageModerators),
// with a link to its moderation hub, as the original. When the directory
// cannot say (the static directory, an unknown message, an error, a host
// older than MessageModerators) the configured moderators get the
// notification instead, without a link: the plugin does not know the
// message's conference.
func (p *Plugin) flagInserted(ctx context.Context, ev hasuraEvent) error {
	if ev.Op != "INSERT" && ev.Op != "MANUAL" {
		return nil
	}
	row, ok := objectOf(ev.New)
	if !ok {
		return invalidf("flag row must be an object")
	}
	typ, ok := kit.JSONString(row["type"])
	if !ok {
		return invalidf("flag row needs a string type")
	}
	n := Notification{
		Title:       "Message reported",
		Description: "A message has been reported. Please go to the moderation hub to resolve it.",
		Subtitle:    "Reason: " + typ,
	}
	users := p.cfg.Moderators
	if sid, _ := kit.JSONString(row["messageSId"]); sid != "" {
		m, found, err := p.host.Directory().MessageModerators(ctx, sid)
		switch {
		case err != nil:
			p.log.Warn("chat: message moderators unavailable; notifying the configured moderators", "message", sid, "err", err)
		case !found:
			p.log.Info("chat: reported message unknown to the directory; notifying the configured moderators", "message", sid)
		default:
			// As the original: the conference's moderators only, even
			// when it has none.
			users = m.UserIDs
			if m.ConferenceSlug != "" {
				n.LinkURL = "/conference/" + m.ConferenceSlug + "/manage/chats/moderation"
			}
			if len(users) == 0 {
				p.log.Warn("chat: reported message's conference has no moderators", "message", sid, "conference", m.ConferenceSlug)
			}
		}
	}
	var errs []error
	for _, uid := range users {
		if err := p.notify(ctx, uid, n); err != nil {
			errs = append(errs, fmt.Errorf("notify %s: %w", uid, err))
		}
	}
	return errors.Join(errs...)
}
