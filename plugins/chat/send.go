package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// errForbidden marks a refused permission check.
var errForbidden = errors.New("forbidden")

// record is what the plugin remembers about a message or reaction on INSERT,
// to check UPDATE and DELETE against the stored sender.
type record struct {
	ChatID   string `json:"chatId"`
	SenderID string `json:"senderId"`
}

// send handles chat.messages.send and chat.reactions.send.
func (p *Plugin) send(ctx context.Context, e sdk.Event, k kind) {
	var raw json.RawMessage
	if len(e.Args) > 0 {
		raw = e.Args[0]
	}
	sID, hasSID := sIDOf(raw)
	a, err := p.sendAction(ctx, e.Socket, k, raw)
	if err != nil {
		p.log.Info("chat: send refused", "kind", k.String(), "socket", e.Socket.ID, "user", e.Socket.UserID, "sId", sID, "err", err)
		if k == kindMessage {
			var arg any // null when there is no string sId
			if hasSID {
				arg = sID
			}
			if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "chat.messages.send.nack", arg); err != nil {
				p.log.Error("chat: emit nack", "socket", e.Socket.ID, "err", err)
			}
		}
		return
	}
	if k == kindMessage {
		if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "chat.messages.send.ack", a.SID); err != nil {
			p.log.Error("chat: emit ack", "socket", e.Socket.ID, "err", err)
		}
		p.afterPublish(ctx, e.Socket, a)
	}
}

// sendAction checks, stamps and publishes one action; nil error means the
// broker confirmed it.
func (p *Plugin) sendAction(ctx context.Context, s sdk.Socket, k kind, raw json.RawMessage) (*action, error) {
	if !p.allowSend(s.ID) {
		return nil, errors.New("rate limited")
	}
	if len(raw) > p.cfg.MaxMessageBytes {
		return nil, fmt.Errorf("%w: action is %d bytes, limit %d", errInvalid, len(raw), p.cfg.MaxMessageBytes)
	}
	a, err := parseAction(k, raw)
	if err != nil {
		return nil, err
	}
	if err := p.authorizeWrite(ctx, s, a); err != nil {
		return nil, err
	}
	if err := a.stamp(p.now()); err != nil {
		return nil, fmt.Errorf("stamp: %w", err)
	}
	body, err := a.body()
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	exchange := ExchangeMessages
	if k == kindReaction {
		exchange = ExchangeReactions
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := p.host.Publish(pctx, exchange, a.ChatID, body); err != nil {
		return nil, fmt.Errorf("publish to %s: %w", exchange, err)
	}
	return a, nil
}

// authorizeWrite checks the write permission (§7.3 with the §14.2 #7 fix):
// INSERT checks the payload's sender and records it; UPDATE and DELETE check
// the recorded sender (moderator rights when there is no record) and force
// it into the payload.
func (p *Plugin) authorizeWrite(ctx context.Context, s sdk.Socket, a *action) error {
	dir := p.host.Directory()
	store := p.host.Store()
	key := recordKey(a.kind, a.SID)
	if a.Op == opInsert {
		ok, err := dir.CanWriteChat(ctx, s, a.ChatID, a.SenderID)
		if err != nil {
			return fmt.Errorf("permission check: %w", err)
		}
		if !ok {
			return fmt.Errorf("%w: may not write to chat %s as sender %q", errForbidden, a.ChatID, a.SenderID)
		}
		rec, err := marshalJSON(record{ChatID: a.ChatID, SenderID: a.SenderID})
		if err != nil {
			return fmt.Errorf("record: %w", err)
		}
		res, err := store.Do(ctx, "SET", key, string(rec), "NX", "PX", p.cfg.MessageRecordTTL.D.Milliseconds())
		if err != nil && !errors.Is(err, sdk.ErrNil) {
			return fmt.Errorf("record sender: %w", err)
		}
		if res == nil || errors.Is(err, sdk.ErrNil) { // sId already recorded
			old, found, err := p.loadRecord(ctx, a.kind, a.SID)
			if err != nil {
				return err
			}
			if found && (old.ChatID != a.ChatID || old.SenderID != a.SenderID) {
				return fmt.Errorf("%w: sId %s already belongs to another sender or chat", errForbidden, a.SID)
			}
		}
		return nil
	}
	rec, found, err := p.loadRecord(ctx, a.kind, a.SID)
	if err != nil {
		return err
	}
	sender := ""
	if found {
		if rec.ChatID != a.ChatID {
			return fmt.Errorf("%w: %s %s belongs to chat %s, not %s", errForbidden, a.kind, a.SID, rec.ChatID, a.ChatID)
		}
		sender = rec.SenderID
	}
	ok, err := dir.CanWriteChat(ctx, s, a.ChatID, sender)
	if err != nil {
		return fmt.Errorf("permission check: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: may not %s %s %s (stored sender %q, record found %v)", errForbidden, a.Op, a.kind, a.SID, sender, found)
	}
	if found {
		if err := a.setSender(sender); err != nil {
			return err
		}
	}
	return nil
}

// loadRecord reads the sender record of sID.
func (p *Plugin) loadRecord(ctx context.Context, k kind, sID string) (record, bool, error) {
	v, err := sdk.String(p.host.Store().Do(ctx, "GET", recordKey(k, sID)))
	if errors.Is(err, sdk.ErrNil) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("load sender record: %w", err)
	}
	var r record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return record{}, false, fmt.Errorf("load sender record: %w", err)
	}
	return r, true, nil
}

// afterPublish runs the once-per-message bookkeeping on the sending instance:
// recent messages now, unread counts and notifications after the notify
// delay (§6.2 steps 2 and 4).
func (p *Plugin) afterPublish(ctx context.Context, s sdk.Socket, a *action) {
	counted := a.Type != "DUPLICATION_MARKER" && a.Type != "EMOTE"
	store := p.host.Store()
	rk := recentMessagesKey(a.ChatID)
	switch a.Op {
	case opInsert:
		p.countMessage(ctx)
		if !counted {
			return
		}
		created, _ := kit.JSONString(a.data["created_at"])
		t, err := time.Parse(time.RFC3339Nano, created)
		if err != nil {
			t = p.now()
		}
		if err := pipeline(ctx, store, [][]any{
			{"ZADD", rk, t.UnixMilli(), a.SID},
			{"ZREMRANGEBYRANK", rk, 0, -11},
		}); err != nil {
			p.log.Error("chat: record recent message", "chat", a.ChatID, "err", err)
		}
		f := followUp{chatID: a.ChatID, sID: a.SID, senderID: a.SenderID, typ: a.Type, text: a.Message}
		if len(s.ConferenceSlugs) > 0 {
			f.slug = s.ConferenceSlugs[0]
		}
		p.schedule("insert", func(ctx context.Context) { p.followUpInsert(ctx, f) })
	case opDelete:
		if _, err := store.Do(ctx, "ZREM", rk, a.SID); err != nil {
			p.log.Error("chat: forget recent message", "chat", a.ChatID, "err", err)
		}
		if counted {
			chatID := a.ChatID
			p.schedule("delete", func(ctx context.Context) { p.updateUnreadCounts(ctx, chatID, "", "") })
		}
	}
}

// StatsKeyPrefix + <unix minute> counts the messages sent in that minute,
// across instances; the admin page charts the last ten minutes.
const StatsKeyPrefix = "rt:stats:chat.messages:"

func (p *Plugin) countMessage(ctx context.Context) {
	k := StatsKeyPrefix + strconv.FormatInt(p.now().Unix()/60, 10)
	if err := pipeline(ctx, p.host.Store(), [][]any{{"INCR", k}, {"EXPIRE", k, 3600}}); err != nil {
		p.log.Debug("chat: count message", "err", err)
	}
}
