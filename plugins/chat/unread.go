package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/clowdr/realtime/plugins/push"
	"github.com/clowdr/realtime/plugins/sdk"
)

// maxUnread is the largest count; it shows as "10+" (lib/unreadCounts.ts).
const maxUnread = 10

// formatCount formats an unread count as the original: "" for 0, "10+" for
// 10 or more, else the number.
func formatCount(n int64) string {
	switch {
	case n <= 0:
		return ""
	case n >= maxUnread:
		return strconv.Itoa(maxUnread) + "+"
	}
	return strconv.FormatInt(n, 10)
}

// readUpTo is the stored read-up-to index.
type readUpTo struct {
	ChatID     string `json:"chatId"`
	UserID     string `json:"userId"`
	MessageSID string `json:"messageSId"`
}

// setReadUpTo stores the user's read-up-to index for the chat. In Hasura
// mode it also marks the index modified for the writeback (readupto.go), in
// the same script so a writeback never pops the mark without the value.
func (p *Plugin) setReadUpTo(ctx context.Context, chatID, userID, messageSID string) error {
	b, err := marshalJSON(readUpTo{ChatID: chatID, UserID: userID, MessageSID: messageSID})
	if err != nil {
		return err
	}
	store := p.host.Store()
	if !p.hasuraMode() {
		_, err = store.Do(ctx, "SET", readUpToKey(chatID, userID), string(b), "PX", readUpToTTL.Milliseconds())
	} else {
		_, err = store.Eval(ctx, setReadUpToScript, []string{readUpToKey(chatID, userID), readUpToModifiedKey},
			string(b), readUpToTTL.Milliseconds(), readUpToMember(chatID, userID))
	}
	if err != nil {
		return fmt.Errorf("store read-up-to index: %w", err)
	}
	return nil
}

// unreadCount computes the §6.3 rank: the read message's ZREVRANK among the
// chat's recent messages, or ZCARD when there is no index or the message is
// no longer among them. In Hasura mode a cache miss loads the index from
// Hasura (readupto.go).
func (p *Plugin) unreadCount(ctx context.Context, chatID, userID string) (int64, error) {
	store := p.host.Store()
	rk := recentMessagesKey(chatID)
	msgSID := ""
	v, err := sdk.String(store.Do(ctx, "GET", readUpToKey(chatID, userID)))
	switch {
	case errors.Is(err, sdk.ErrNil):
		if p.hasuraMode() {
			msgSID = p.loadReadUpTo(ctx, chatID, userID)
		}
	case err != nil:
		return 0, fmt.Errorf("load read-up-to index: %w", err)
	default:
		var r readUpTo
		if err := unmarshalJSON([]byte(v), &r); err != nil {
			p.log.Warn("chat: bad read-up-to index ignored", "chat", chatID, "user", userID, "err", err)
		}
		msgSID = r.MessageSID
	}
	if msgSID != "" {
		n, err := sdk.Int64(store.Do(ctx, "ZREVRANK", rk, msgSID))
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, sdk.ErrNil) {
			return 0, fmt.Errorf("rank of read message: %w", err)
		}
	}
	n, err := sdk.Int64(store.Do(ctx, "ZCARD", rk))
	if err != nil {
		return 0, fmt.Errorf("count recent messages: %w", err)
	}
	return n, nil
}

// sendUnreadCount emits chat.unreadCount.update(chatId, count) to every
// socket of the user.
func (p *Plugin) sendUnreadCount(ctx context.Context, chatID, userID string) error {
	n, err := p.unreadCount(ctx, chatID, userID)
	if err != nil {
		return err
	}
	return p.host.Emit(ctx, sdk.UserTarget(userID), "chat.unreadCount.update", chatID, formatCount(n))
}

// unreadRequest handles chat.unreadCount.request(chatId).
func (p *Plugin) unreadRequest(ctx context.Context, e sdk.Event) {
	chatID, ok := argString(e.Args, 0)
	if !ok {
		p.log.Info("chat.unreadCount.request: chatId is not a non-empty string", "socket", e.Socket.ID)
		return
	}
	if !p.canSelect(ctx, e, chatID) {
		return
	}
	p.waitAfterRuns(ctx, chatID)
	if err := p.sendUnreadCount(ctx, chatID, e.Socket.UserID); err != nil {
		p.log.Error("chat.unreadCount.request", "chat", chatID, "user", e.Socket.UserID, "err", err)
	}
}

// setReadUpToEvent handles chat.unreadCount.setReadUpTo(chatId, messageSId).
func (p *Plugin) setReadUpToEvent(ctx context.Context, e sdk.Event) {
	chatID, ok1 := argString(e.Args, 0)
	msgSID, ok2 := argString(e.Args, 1)
	if !ok1 || !ok2 {
		p.log.Info("chat.unreadCount.setReadUpTo: chatId and messageSId must be non-empty strings", "socket", e.Socket.ID)
		return
	}
	if !p.canSelect(ctx, e, chatID) {
		return
	}
	p.waitAfterRuns(ctx, chatID)
	if err := p.setReadUpTo(ctx, chatID, e.Socket.UserID, msgSID); err != nil {
		p.log.Error("chat.unreadCount.setReadUpTo", "chat", chatID, "user", e.Socket.UserID, "err", err)
		return
	}
	if err := p.sendUnreadCount(ctx, chatID, e.Socket.UserID); err != nil {
		p.log.Error("chat.unreadCount.setReadUpTo: send count", "chat", chatID, "user", e.Socket.UserID, "err", err)
	}
}

// canSelect runs CanSelectChat and logs refusals.
func (p *Plugin) canSelect(ctx context.Context, e sdk.Event, chatID string) bool {
	ok, err := p.host.Directory().CanSelectChat(ctx, e.Socket, chatID)
	if err != nil {
		p.log.Error("chat: permission check failed", "event", e.Name, "chat", chatID, "err", err)
		return false
	}
	if !ok {
		p.log.Info("chat: forbidden", "event", e.Name, "user", e.Socket.UserID, "chat", chatID)
	}
	return ok
}

// followUp is what the delayed work after an INSERT needs.
type followUp struct {
	chatID, sID, senderID, typ, text, slug string
}

// registrantUsers resolves registrant ids to distinct user ids (bounded by
// maxFanout), skipping unknown registrants and the registrant skip.
func (p *Plugin) registrantUsers(ctx context.Context, ids []string, skip string) []string {
	if len(ids) > maxFanout {
		p.log.Warn("chat: too many registrants; truncated", "count", len(ids), "limit", maxFanout)
		ids = ids[:maxFanout]
	}
	seen := map[string]bool{}
	var users []string
	for _, id := range ids {
		if id == "" || id == skip {
			continue
		}
		if ctx.Err() != nil {
			return users
		}
		r, found, err := p.host.Directory().Registrant(ctx, id)
		if err != nil {
			p.log.Warn("chat: resolve registrant", "registrant", id, "err", err)
			continue
		}
		if !found || r.UserID == "" || seen[r.UserID] {
			continue
		}
		seen[r.UserID] = true
		users = append(users, r.UserID)
	}
	return users
}

// updateUnreadCounts sends the chat's unread count to every user who pinned
// it; first, when the sender pinned the chat, it marks the message read for
// them (updateRecentMessagesAndUnreadCounts, §6.2).
func (p *Plugin) updateUnreadCounts(ctx context.Context, chatID, senderID, sID string) {
	pins, err := sdk.Strings(p.host.Store().Do(ctx, "SMEMBERS", pinsKey(chatID)))
	if err != nil {
		p.log.Error("chat: list pins", "chat", chatID, "err", err)
		return
	}
	if senderID != "" && sID != "" {
		for _, id := range pins {
			if id != senderID {
				continue
			}
			if users := p.registrantUsers(ctx, []string{senderID}, ""); len(users) == 1 {
				if err := p.setReadUpTo(ctx, chatID, users[0], sID); err != nil {
					p.log.Error("chat: mark sender's message read", "chat", chatID, "err", err)
				}
			}
			break
		}
	}
	for _, uid := range p.registrantUsers(ctx, pins, "") {
		if err := p.sendUnreadCount(ctx, chatID, uid); err != nil {
			p.log.Error("chat: send unread count", "chat", chatID, "user", uid, "err", err)
		}
	}
}

// Notification is the payload of the notification event (types/chat.ts).
type Notification struct {
	Title       string `json:"title"`
	Subtitle    string `json:"subtitle,omitempty"`
	Description string `json:"description"`
	ChatID      string `json:"chatId,omitempty"`
	LinkURL     string `json:"linkURL,omitempty"`
}

// typeWord names a message type in a notification title.
func typeWord(t string) string {
	switch t {
	case "ANSWER":
		return "answer"
	case "QUESTION":
		return "question"
	case "EMOTE":
		return "emote"
	case "DUPLICATION_MARKER":
		// Never reached today (markers get no notification), kept as §6.2.
		return "event"
	}
	return "message"
}

// followUpInsert runs unread counts and notifications for a new message.
func (p *Plugin) followUpInsert(ctx context.Context, f followUp) {
	p.updateUnreadCounts(ctx, f.chatID, f.senderID, f.sID)
	p.notifySubscribers(ctx, f)
}

// notifySubscribers sends a notification to the chat's subscribed users,
// except the sender and users with a socket listening to the chat
// (distributeMessageToSubscribedUsers, §6.2).
func (p *Plugin) notifySubscribers(ctx context.Context, f followUp) {
	subs, err := sdk.Strings(p.host.Store().Do(ctx, "SMEMBERS", subscriptionsKey(f.chatID)))
	if err != nil {
		p.log.Error("chat: list subscriptions", "chat", f.chatID, "err", err)
		return
	}
	if len(subs) == 0 {
		return
	}
	users := p.registrantUsers(ctx, subs, f.senderID)
	if len(users) == 0 {
		return
	}
	listening, err := p.listeningUsers(ctx, f.chatID)
	if err != nil {
		p.log.Error("chat: list listeners", "chat", f.chatID, "err", err)
		return
	}
	users = slices.DeleteFunc(users, func(uid string) bool { return listening[uid] })
	if len(users) == 0 {
		return // spare the directory lookups
	}
	n := p.notification(ctx, f)
	for _, uid := range users {
		if err := p.notify(ctx, uid, n); err != nil {
			p.log.Error("chat: notification", "user", uid, "err", err)
		}
	}
}

// notification builds the notification of a new message (§6.2). With the
// chat's details (Directory.ChatDetails) it is the original's:
//
//	title     "<conference short name>: New <type>" ("<short name>: " omitted when empty)
//	linkURL   /conference/<chat's conference slug>/chat/<chatId>
//	subtitle  "from <sender display name>" when the chat's first room is a DM
//	          and the sender is known, else "in <chat title or 'Unknown chat'>"
//
// Without them (a directory error, an unknown chat, or a host that predates
// ChatDetails) it falls back to what the plugin knows itself: title
// "New <type>", linkURL with the sender socket's first conference slug
// (omitted without one), subtitle "from <sender>" when the sender is known.
func (p *Plugin) notification(ctx context.Context, f followUp) Notification {
	n := Notification{Title: "New " + typeWord(f.typ), Description: f.text, ChatID: f.chatID}
	d, found, err := p.host.Directory().ChatDetails(ctx, f.chatID)
	if err != nil {
		p.log.Warn("chat: chat details unavailable; notification without them", "chat", f.chatID, "err", err)
	}
	if err != nil || !found {
		if f.slug != "" {
			n.LinkURL = "/conference/" + f.slug + "/chat/" + f.chatID
		}
		if name := p.senderName(ctx, f.senderID); name != "" {
			n.Subtitle = "from " + name
		}
		return n
	}
	if d.ConferenceShortName != "" {
		n.Title = d.ConferenceShortName + ": " + n.Title
	}
	slug := d.ConferenceSlug
	if slug == "" {
		slug = f.slug
	}
	if slug != "" {
		n.LinkURL = "/conference/" + slug + "/chat/" + f.chatID
	}
	if d.IsDM {
		if name := p.senderName(ctx, f.senderID); name != "" {
			n.Subtitle = "from " + name
			return n
		}
	}
	title := d.Title
	if title == "" {
		title = "Unknown chat"
	}
	n.Subtitle = "in " + title
	return n
}

// senderName is the display name of the sender registrant, "" when there is
// none or it can't be resolved (a failed lookup is logged).
func (p *Plugin) senderName(ctx context.Context, senderID string) string {
	if senderID == "" {
		return ""
	}
	r, found, err := p.host.Directory().Registrant(ctx, senderID)
	if err != nil {
		p.log.Warn("chat: resolve sender for notification", "registrant", senderID, "err", err)
		return ""
	}
	if !found {
		return ""
	}
	return r.DisplayName
}

// notify sends a notification to a user: through the push plugin when
// web_push is on, else as the notification event to the user's sockets.
func (p *Plugin) notify(ctx context.Context, userID string, n Notification) error {
	p.mu.Lock()
	wp := p.cfg.WebPush
	p.mu.Unlock()
	if wp {
		return push.Publish(ctx, p.host, userID, push.Notification(n))
	}
	return p.host.Emit(ctx, sdk.UserTarget(userID), "notification", n)
}
