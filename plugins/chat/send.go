package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
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
		p.afterPublishInOrder(ctx, e.Socket, a)
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
		// One round trip: record the sender, or read the record already there.
		res, err := store.Eval(ctx, recordScript, []string{key}, string(rec), p.cfg.MessageRecordTTL.D.Milliseconds())
		if err != nil {
			return fmt.Errorf("record sender: %w", err)
		}
		switch v := res.(type) {
		case int64: // recorded now
		case string: // sId already recorded
			old, err := parseRecord(v)
			if err != nil {
				return err
			}
			if old.ChatID != a.ChatID || old.SenderID != a.SenderID {
				return fmt.Errorf("%w: sId %s already belongs to another sender or chat", errForbidden, a.SID)
			}
		default:
			return fmt.Errorf("record sender: unexpected reply %T", res)
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
	r, err := parseRecord(v)
	if err != nil {
		return record{}, false, err
	}
	return r, true, nil
}

func parseRecord(v string) (record, error) {
	var r record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return record{}, fmt.Errorf("load sender record: %w", err)
	}
	return r, nil
}

// recordScript records a sender (KEYS[1], ARGV[1], PX ARGV[2]) unless the sId
// already has a record: 1 when it was recorded, else the existing record.
const recordScript = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return redis.call('GET', KEYS[1])`

// afterPublish runs the once-per-message bookkeeping on the sending instance:
// the message count and recent messages now, in one round trip, and unread
// counts and notifications after the notify delay (§6.2 steps 2 and 4).
func (p *Plugin) afterPublish(ctx context.Context, s sdk.Socket, a *action) {
	counted := a.Type != "DUPLICATION_MARKER" && a.Type != "EMOTE"
	rk := recentMessagesKey(a.ChatID)
	var cmds [][]any
	switch a.Op {
	case opInsert:
		sk := StatsKeyPrefix + strconv.FormatInt(p.now().Unix()/60, 10)
		cmds = [][]any{{"INCR", sk}, {"EXPIRE", sk, 3600}}
		if counted {
			created, _ := kit.JSONString(a.data["created_at"])
			t, err := time.Parse(time.RFC3339Nano, created)
			if err != nil {
				t = p.now()
			}
			cmds = append(cmds, []any{"ZADD", rk, t.UnixMilli(), a.SID}, []any{"ZREMRANGEBYRANK", rk, 0, -11})
		}
	case opDelete:
		cmds = [][]any{{"ZREM", rk, a.SID}}
	default:
		return
	}
	replies, err := p.host.Store().Pipeline(ctx, cmds)
	if err == nil {
		for i, r := range replies {
			if r.Err == nil {
				continue
			}
			if a.Op == opInsert && i < 2 { // the admin page's counter only
				p.log.Debug("chat: count message", "err", r.Err)
				continue
			}
			err = r.Err
			break
		}
	}
	if err != nil {
		p.log.Error("chat: update recent messages", "chat", a.ChatID, "op", a.Op, "err", err)
	}
	if !counted {
		return
	}
	switch a.Op {
	case opInsert:
		f := followUp{chatID: a.ChatID, sID: a.SID, senderID: a.SenderID, typ: a.Type, text: a.Message}
		if len(s.ConferenceSlugs) > 0 {
			f.slug = s.ConferenceSlugs[0]
		}
		p.schedule("insert", func(ctx context.Context) { p.followUpInsert(ctx, f) })
	case opDelete:
		chatID := a.ChatID
		p.schedule("delete", func(ctx context.Context) { p.updateUnreadCounts(ctx, chatID, "", "") })
	}
}

// StatsKeyPrefix + <unix minute> counts the messages sent in that minute,
// across instances; the admin page charts the last ten minutes.
const StatsKeyPrefix = "rt:stats:chat.messages:"

// afterTimeout bounds one afterPublish run (it is not canceled by Stop, which
// waits for it, so what was acked before a shutdown is still counted).
const afterTimeout = 10 * time.Second

// maxAfterInFlight bounds the afterPublish runs waiting in the background per
// process; beyond it a send runs its own inline (backpressure, nothing lost).
const maxAfterInFlight = 1024

// afterRuns orders and bounds the background afterPublish runs of a Plugin.
type afterRuns struct {
	// slots is the semaphore of background runs.
	slots chan struct{}
	mu    sync.Mutex
	// tails holds, per chat, the done channel of the newest run, so the
	// runs of one chat happen in publish order (an INSERT's ZADD before a
	// later DELETE's ZREM). An entry is removed when its run was the last.
	tails map[string]chan struct{}
}

func newAfterRuns() afterRuns {
	return afterRuns{slots: make(chan struct{}, maxAfterInFlight), tails: map[string]chan struct{}{}}
}

// waitAfterRuns waits (bounded by ctx) until the bookkeeping of every send
// of chatID this process has acked so far is done: a count asked for right
// after an ack then includes that message. Runs of one chat are chained, so
// waiting for the newest waits for all of them.
func (p *Plugin) waitAfterRuns(ctx context.Context, chatID string) {
	p.after.mu.Lock()
	tail := p.after.tails[chatID]
	p.after.mu.Unlock()
	if tail == nil {
		return
	}
	select {
	case <-tail:
	case <-ctx.Done():
	}
}

// afterPublishInOrder runs afterPublish after the previous runs of the same
// chat, in the background: the send has been acked, and the socket's next
// event need not wait for this round trip. Stop waits for these runs
// (p.tasks); before Start or after Stop they run inline.
func (p *Plugin) afterPublishInOrder(ctx context.Context, s sdk.Socket, a *action) {
	ar, k := &p.after, a.ChatID
	done := make(chan struct{})
	ar.mu.Lock()
	prev := ar.tails[k]
	ar.tails[k] = done
	ar.mu.Unlock()
	run := func() {
		if prev != nil {
			<-prev
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterTimeout)
		defer cancel()
		p.afterPublish(actx, s, a)
		ar.mu.Lock()
		if ar.tails[k] == done {
			delete(ar.tails, k)
		}
		ar.mu.Unlock()
		close(done)
	}
	p.mu.Lock()
	background := p.started && !p.stopped
	if background {
		select {
		case ar.slots <- struct{}{}:
			p.tasks.Add(1)
		default:
			background = false
		}
	}
	p.mu.Unlock()
	if !background {
		run()
		return
	}
	go func() {
		defer p.tasks.Done()
		defer func() { <-ar.slots }()
		run()
	}()
}
