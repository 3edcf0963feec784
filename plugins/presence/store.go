package presence

import (
	"context"
	_ "embed"
	"errors"
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
	//go:embed expired.lua
	expiredScript string
)

// ms is t as unix milliseconds, the unit of every score and ARGV time.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func socketKeys(socketID string) []string {
	return []string{SocketsKey, SocketUserKey, SessionListsPrefix + socketID}
}

// enter runs enter.lua for the socket on lists and returns the lists on which
// the user is new. With refresh it only pushes the deadlines of the lists the
// user is on and returns the others, changing nothing on them (see refresh).
func (p *Plugin) enter(ctx context.Context, s sdk.Socket, lists []string, refresh bool) ([]string, error) {
	if len(lists) == 0 {
		return nil, nil
	}
	now := p.now()
	mode := "0"
	if refresh {
		mode = "1"
	}
	args := make([]any, 0, 6+len(lists))
	args = append(args, s.ID, s.UserID, ms(now.Add(p.cfg.Window)), ms(now),
		strconv.FormatInt(p.cfg.sessionListsTTL().Milliseconds(), 10), mode)
	for _, l := range lists {
		args = append(args, l)
	}
	out, err := sdk.Strings(p.store.Eval(ctx, enterScript, socketKeys(s.ID), args...))
	if err != nil {
		return nil, fmt.Errorf("presence enter script: %w", err)
	}
	return out, nil
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

// expiredSocket is a socket whose deadline has passed, with the lists Redis
// held for it when the sweeper read it.
type expiredSocket struct {
	id    string
	lists []string
}

// expired lists up to limit sockets whose deadline is before now, with their
// lists (one round trip for the batch).
func (p *Plugin) expired(ctx context.Context, limit int) ([]expiredSocket, error) {
	v, err := sdk.Strings(p.store.Eval(ctx, expiredScript, []string{SocketsKey}, ms(p.now()), limit))
	if err != nil {
		return nil, fmt.Errorf("presence read expired sockets: %w", err)
	}
	var out []expiredSocket
	for len(v) >= 2 {
		n, err := strconv.Atoi(v[1])
		if err != nil || n < 0 || n > len(v)-2 {
			return nil, fmt.Errorf("presence read expired sockets: bad reply at %q", v[0])
		}
		out = append(out, expiredSocket{id: v[0], lists: v[2 : 2+n]})
		v = v[2+n:]
	}
	if len(v) != 0 {
		return nil, errors.New("presence read expired sockets: truncated reply")
	}
	return out, nil
}
