package chat

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

// subscribe handles chat.subscribe(chatId).
func (p *Plugin) subscribe(ctx context.Context, e sdk.Event) {
	chatID, ok := argString(e.Args, 0)
	if !ok {
		p.log.Info("chat.subscribe: chatId is not a non-empty string", "socket", e.Socket.ID)
		return
	}
	allowed, err := p.host.Directory().CanSelectChat(ctx, e.Socket, chatID)
	if err != nil {
		p.log.Error("chat.subscribe: permission check failed", "socket", e.Socket.ID, "chat", chatID, "err", err)
		return
	}
	if !allowed {
		p.log.Info("chat.subscribe: forbidden", "socket", e.Socket.ID, "user", e.Socket.UserID, "chat", chatID)
		return
	}
	if err := p.host.Join(ctx, e.Socket.ID, chatRoom(chatID)); err != nil {
		p.log.Error("chat.subscribe: join", "socket", e.Socket.ID, "chat", chatID, "err", err)
		return
	}
	p.track(e.Socket.ID, chatID, true)
	// The socket's chat set first: a listener entry whose socket set is
	// missing counts as stale (see listeningUsers).
	sk := socketChatsKey(e.Socket.ID)
	lk := listenersKey(chatID)
	if err := pipeline(ctx, p.host.Store(), [][]any{
		{"SADD", sk, chatID},
		{"PEXPIRE", sk, socketKeyTTL.Milliseconds()},
		{"SADD", lk, listenerMember(e.Socket.ID, e.Socket.UserID)},
		{"PEXPIRE", lk, listenersTTL.Milliseconds()},
	}); err != nil {
		p.log.Error("chat.subscribe: record listener", "socket", e.Socket.ID, "chat", chatID, "err", err)
	}
	if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "chat.subscribe.ack", chatID); err != nil {
		p.log.Error("chat.subscribe: emit ack", "socket", e.Socket.ID, "chat", chatID, "err", err)
	}
}

// unsubscribe handles chat.unsubscribe(chatId). Leaving needs no permission.
func (p *Plugin) unsubscribe(ctx context.Context, e sdk.Event) {
	chatID, ok := argString(e.Args, 0)
	if !ok {
		p.log.Info("chat.unsubscribe: chatId is not a non-empty string", "socket", e.Socket.ID)
		return
	}
	if err := p.host.Leave(ctx, e.Socket.ID, chatRoom(chatID)); err != nil {
		p.log.Error("chat.unsubscribe: leave", "socket", e.Socket.ID, "chat", chatID, "err", err)
	}
	p.track(e.Socket.ID, chatID, false)
	if err := pipeline(ctx, p.host.Store(), [][]any{
		{"SREM", listenersKey(chatID), listenerMember(e.Socket.ID, e.Socket.UserID)},
		{"SREM", socketChatsKey(e.Socket.ID), chatID},
	}); err != nil {
		p.log.Error("chat.unsubscribe: remove listener", "socket", e.Socket.ID, "chat", chatID, "err", err)
	}
}

// OnConnect remembers the socket as local and reloads the chats it had
// subscribed (after a plugin restart the host replays OnConnect), so the
// refresh loop keeps its keys alive.
func (p *Plugin) OnConnect(ctx context.Context, s sdk.Socket) error {
	chats, err := sdk.Strings(p.host.Store().Do(ctx, "SMEMBERS", socketChatsKey(s.ID)))
	p.mu.Lock()
	if p.local[s.ID] == nil {
		p.local[s.ID] = map[string]struct{}{}
	}
	for _, c := range chats {
		p.local[s.ID][c] = struct{}{}
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("chat: connect: load subscribed chats", "socket", s.ID, "err", err)
	}
	return nil
}

// OnDisconnect removes the socket's listener entries (§6.1).
func (p *Plugin) OnDisconnect(ctx context.Context, s sdk.Socket, _ string) error {
	p.mu.Lock()
	delete(p.local, s.ID)
	delete(p.limiters, s.ID)
	p.mu.Unlock()
	store := p.host.Store()
	sk := socketChatsKey(s.ID)
	chats, err := sdk.Strings(store.Do(ctx, "SMEMBERS", sk))
	if err != nil {
		p.log.Error("chat: disconnect: list chats", "socket", s.ID, "err", err)
		return nil
	}
	cmds := make([][]any, 0, len(chats)+1)
	for _, c := range chats {
		cmds = append(cmds, []any{"SREM", listenersKey(c), listenerMember(s.ID, s.UserID)})
	}
	cmds = append(cmds, []any{"DEL", sk})
	if err := pipeline(ctx, store, cmds); err != nil {
		p.log.Error("chat: disconnect: remove listeners", "socket", s.ID, "err", err)
	}
	return nil
}

// track records (or forgets) a local socket's chat subscription.
func (p *Plugin) track(socketID, chatID string, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.local[socketID]
	if add {
		if m == nil {
			m = map[string]struct{}{}
			p.local[socketID] = m
		}
		m[chatID] = struct{}{}
		return
	}
	delete(m, chatID)
}

// refreshLoop keeps the per-socket and listener keys of live local sockets
// from expiring.
func (p *Plugin) refreshLoop() {
	defer p.wg.Done()
	t := time.NewTicker(socketKeyRefresh)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
			p.refreshKeys(ctx)
			cancel()
		}
	}
}

// refreshKeys extends the TTLs of the keys of the local sockets.
func (p *Plugin) refreshKeys(ctx context.Context) {
	p.mu.Lock()
	var cmds [][]any
	chats := map[string]struct{}{}
	for id, cs := range p.local {
		cmds = append(cmds, []any{"PEXPIRE", socketChatsKey(id), socketKeyTTL.Milliseconds()})
		for c := range cs {
			chats[c] = struct{}{}
		}
	}
	p.mu.Unlock()
	for c := range chats {
		cmds = append(cmds, []any{"PEXPIRE", listenersKey(c), listenersTTL.Milliseconds()})
	}
	const batch = 500
	for len(cmds) > 0 {
		n := min(batch, len(cmds))
		if err := pipeline(ctx, p.host.Store(), cmds[:n]); err != nil {
			p.log.Warn("chat: refresh key TTLs", "err", err)
			return
		}
		cmds = cmds[n:]
	}
}

// registrantRoom handles chat.subscriptions.changed.on/off and
// chat.pins.changed.on/off: the socket joins or leaves prefix+registrantId
// when the registrant is the socket's user.
func (p *Plugin) registrantRoom(ctx context.Context, e sdk.Event, prefix string, join bool) {
	regID, ok := argString(e.Args, 0)
	if !ok {
		p.log.Info("chat: registrantId is not a non-empty string", "event", e.Name, "socket", e.Socket.ID)
		return
	}
	r, found, err := p.host.Directory().Registrant(ctx, regID)
	if err != nil {
		p.log.Error("chat: resolve registrant", "event", e.Name, "registrant", regID, "err", err)
		return
	}
	if !found || r.UserID == "" || r.UserID != e.Socket.UserID {
		p.log.Info("chat: registrant is not the socket's user", "event", e.Name, "registrant", regID, "user", e.Socket.UserID)
		return
	}
	room := prefix + regID
	if join {
		err = p.host.Join(ctx, e.Socket.ID, room)
	} else {
		err = p.host.Leave(ctx, e.Socket.ID, room)
	}
	if err != nil {
		p.log.Error("chat: join/leave registrant room", "event", e.Name, "room", room, "err", err)
	}
}

// listeningUsers returns the users that have a live socket listening to the
// chat. Entries whose socket's chat set has expired (a crashed instance) are
// removed.
func (p *Plugin) listeningUsers(ctx context.Context, chatID string) (map[string]bool, error) {
	store := p.host.Store()
	lk := listenersKey(chatID)
	members, err := sdk.Strings(store.Do(ctx, "SMEMBERS", lk))
	if err != nil {
		return nil, err
	}
	users := map[string]bool{}
	if len(members) == 0 {
		return users, nil
	}
	cmds := make([][]any, len(members))
	for i, m := range members {
		sid, _, _ := strings.Cut(m, "¬")
		cmds[i] = []any{"EXISTS", socketChatsKey(sid)}
	}
	replies, err := store.Pipeline(ctx, cmds)
	if err != nil {
		return nil, err
	}
	var stale []any
	for i, m := range members {
		_, uid, ok := strings.Cut(m, "¬")
		if !ok {
			stale = append(stale, m)
			continue
		}
		if i < len(replies) {
			if n, err := sdk.Int64(replies[i].Value, replies[i].Err); err == nil && n == 0 {
				stale = append(stale, m)
				continue
			}
		}
		users[uid] = true
	}
	if len(stale) > 0 {
		if _, err := store.Do(ctx, append([]any{"SREM", lk}, stale...)...); err != nil {
			p.log.Warn("chat: remove stale listeners", "chat", chatID, "err", err)
		}
	}
	return users, nil
}

// pipeline runs cmds and returns the first error.
func pipeline(ctx context.Context, store sdk.Store, cmds [][]any) error {
	if len(cmds) == 0 {
		return nil
	}
	replies, err := store.Pipeline(ctx, cmds)
	if err != nil {
		return err
	}
	for _, r := range replies {
		if r.Err != nil && !errors.Is(r.Err, sdk.ErrNil) {
			return r.Err
		}
	}
	return nil
}
