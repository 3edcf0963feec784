package presence

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Redis key names (see the package doc for the full layout).
const (
	// ListKeyPrefix + listId is the SET of userIds present on a page.
	ListKeyPrefix = "PresenceList:"
	// UserSessionsInfix: ListKeyPrefix + listId + UserSessionsInfix + userId is
	// the ZSET of that user's socketIds on the page, scored by deadline.
	UserSessionsInfix = ":UserSessions:"
	// SessionListsPrefix + socketId is the SET of listIds the socket is on.
	SessionListsPrefix = "SessionLists:"
	// SocketsKey is the ZSET of socketIds scored by deadline (the sweeper's index).
	SocketsKey = "Presence.Sockets"
	// SocketUserKey is the HASH socketId -> userId.
	SocketUserKey = "Presence.SocketUser"
)

// RoomPrefix + listId is the room of a page's observers.
const RoomPrefix = "PresenceQueue:"

var (
	//go:embed enter.lua
	enterScript string
	//go:embed exit.lua
	exitScript string
	//go:embed exitall.lua
	exitAllScript string
)

// ms is t as unix milliseconds, the unit of every score and ARGV time.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func socketKeys(socketID string) []string {
	return []string{SocketsKey, SocketUserKey, SessionListsPrefix + socketID}
}

// enter runs enter.lua for the socket on lists and returns the lists on which
// the user is new.
func (p *Plugin) enter(ctx context.Context, s sdk.Socket, lists []string) ([]string, error) {
	if len(lists) == 0 {
		return nil, nil
	}
	now := p.now()
	args := make([]any, 0, 5+len(lists))
	args = append(args, s.ID, s.UserID, ms(now.Add(p.cfg.Window)), ms(now),
		strconv.FormatInt(p.cfg.sessionListsTTL().Milliseconds(), 10))
	for _, l := range lists {
		args = append(args, l)
	}
	added, err := sdk.Strings(p.store.Eval(ctx, enterScript, socketKeys(s.ID), args...))
	if err != nil {
		return nil, fmt.Errorf("presence enter script: %w", err)
	}
	return added, nil
}

// exit runs exit.lua and reports whether the user left the list.
func (p *Plugin) exit(ctx context.Context, s sdk.Socket, listID string) (bool, error) {
	n, err := sdk.Int64(p.store.Eval(ctx, exitScript, socketKeys(s.ID), s.ID, s.UserID, ms(p.now()), listID))
	if err != nil {
		return false, fmt.Errorf("presence exit script: %w", err)
	}
	return n == 1, nil
}

// exitAll runs exitall.lua for socketID; with sweep it does nothing unless
// the socket's deadline has passed. It returns the user and the lists the
// user left.
func (p *Plugin) exitAll(ctx context.Context, socketID, userID string, sweep bool) (string, []string, error) {
	flag := "0"
	if sweep {
		flag = "1"
	}
	out, err := sdk.Strings(p.store.Eval(ctx, exitAllScript, socketKeys(socketID), socketID, ms(p.now()), flag, userID))
	if err != nil {
		return "", nil, fmt.Errorf("presence exitAll script: %w", err)
	}
	if len(out) == 0 {
		return "", nil, nil
	}
	return out[0], out[1:], nil
}

// members reads the userIds present on a list.
func (p *Plugin) members(ctx context.Context, listID string) ([]string, error) {
	ids, err := sdk.Strings(p.store.Do(ctx, "SMEMBERS", ListKeyPrefix+listID))
	if err != nil {
		return nil, fmt.Errorf("presence read %s%s: %w", ListKeyPrefix, listID, err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// sessionLists reads the lists Redis holds for a socket.
func (p *Plugin) sessionLists(ctx context.Context, socketID string) ([]string, error) {
	ids, err := sdk.Strings(p.store.Do(ctx, "SMEMBERS", SessionListsPrefix+socketID))
	if err != nil {
		return nil, fmt.Errorf("presence read %s%s: %w", SessionListsPrefix, socketID, err)
	}
	return ids, nil
}

// expired lists up to limit sockets whose deadline is before now.
func (p *Plugin) expired(ctx context.Context, limit int) ([]string, error) {
	ids, err := sdk.Strings(p.store.Do(ctx, "ZRANGEBYSCORE", SocketsKey, "-inf", "("+ms(p.now()), "LIMIT", 0, limit))
	if err != nil {
		return nil, fmt.Errorf("presence read expired sockets: %w", err)
	}
	return ids, nil
}
