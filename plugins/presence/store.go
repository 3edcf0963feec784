package presence

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// DeltaMarkPrefix + listId + ":" + userId is a STRING with a TTL: the id
	// of the host instance that last sent that user's delta on that page
	// (mark.lua, recheck.go).
	DeltaMarkPrefix = "PresenceDelta:"
)

// RoomPrefix + listId is the room of a page's observers.
const RoomPrefix = "PresenceQueue:"

// The scripts as sent: compactLua drops their comments, which every call
// would otherwise carry to the host (over gRPC in subprocess mode) and the
// host would hash to find the script's SHA1.
var (
	enterScript   = compactLua(markSrc + enterSrc)
	exitScript    = compactLua(markSrc + exitSrc)
	exitAllScript = compactLua(markSrc + exitAllSrc)
	recheckScript = compactLua(markSrc + recheckSrc)
	expiredScript = compactLua(expiredSrc)
	refreshScript = compactLua(refreshSrc)
)

var (
	//go:embed mark.lua
	markSrc string
	//go:embed recheck.lua
	recheckSrc string
	//go:embed enter.lua
	enterSrc string
	//go:embed exit.lua
	exitSrc string
	//go:embed exitall.lua
	exitAllSrc string
	//go:embed expired.lua
	expiredSrc string
	//go:embed refresh.lua
	refreshSrc string
)

// compactLua drops comment lines, blank lines and indentation. The scripts
// have no multi-line strings, so no line starting with "--" is data.
func compactLua(src string) string {
	var b strings.Builder
	for line := range strings.Lines(src) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// ms is t as unix milliseconds, the unit of every score and ARGV time.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func socketKeys(socketID string) []string {
	return []string{SocketsKey, SocketUserKey, SessionListsPrefix + socketID}
}

// enterArgs builds enter.lua's arguments for the socket on lists; callers
// build them before taking the lists' locks, so that the locks cover only
// the round trip and the emit.
func (p *Plugin) enterArgs(s sdk.Socket, lists []string) []any {
	now := p.now()
	args := make([]any, 0, enterFixedArgs+len(lists))
	args = append(args, s.ID, s.UserID, ms(now.Add(p.cfg.Window)), ms(now),
		strconv.FormatInt(p.cfg.sessionListsTTL().Milliseconds(), 10), p.token, p.markTTL())
	for _, l := range lists {
		args = append(args, l)
	}
	return args
}

// enterFixedArgs is the number of enter.lua's arguments before the lists.
const enterFixedArgs = 7

// markTTL is mark.lua's px argument: the mark's TTL in ms, "0" when
// rechecks are off.
func (p *Plugin) markTTL() string {
	return strconv.FormatInt(p.cfg.RecheckMark().Milliseconds(), 10)
}

// enter runs enter.lua with args from enterArgs and returns the lists on
// which the user is new, and those of them due a recheck.
func (p *Plugin) enter(ctx context.Context, socketID string, args []any) (added, recheck []string, err error) {
	if len(args) <= enterFixedArgs {
		return nil, nil, nil
	}
	out, err := sdk.Strings(p.store.Eval(ctx, enterScript, socketKeys(socketID), args...))
	if err != nil {
		return nil, nil, fmt.Errorf("presence enter script: %w", err)
	}
	added, recheck, err = splitMarked(out)
	if err != nil {
		return nil, nil, fmt.Errorf("presence enter script: %w", err)
	}
	return added, recheck, nil
}

// splitMarked parses {listId, recheck, ...} ('1' = due a recheck) into the
// lists and those due a recheck.
func splitMarked(v []string) (lists, recheck []string, err error) {
	if len(v)%2 != 0 {
		return nil, nil, errors.New("odd reply")
	}
	lists = make([]string, 0, len(v)/2)
	for i := 0; i < len(v); i += 2 {
		lists = append(lists, v[i])
		if v[i+1] == "1" {
			recheck = append(recheck, v[i])
		}
	}
	return lists, recheck, nil
}

// refreshBatch runs refresh.lua for several sockets at once (one round trip)
// and returns, per socket id, the lists its user is missing from: refresh.lua
// left those alone, the caller enters them. socks[i] is on lists[i].
func (p *Plugin) refreshBatch(ctx context.Context, socks []sdk.Socket, lists [][]string) (map[string][]string, error) {
	now := p.now()
	n := 3
	for _, ls := range lists {
		n += 3 + len(ls)
	}
	args := make([]any, 0, n)
	args = append(args, ms(now.Add(p.cfg.Window)), ms(now),
		strconv.FormatInt(p.cfg.sessionListsTTL().Milliseconds(), 10))
	for i, s := range socks {
		args = append(args, s.ID, s.UserID, strconv.Itoa(len(lists[i])))
		for _, l := range lists[i] {
			args = append(args, l)
		}
	}
	v, err := sdk.Strings(p.store.Eval(ctx, refreshScript, []string{SocketsKey, SocketUserKey}, args...))
	if err != nil {
		return nil, fmt.Errorf("presence refresh script: %w", err)
	}
	groups, err := splitGroups(v)
	if err != nil {
		return nil, fmt.Errorf("presence refresh script: %w", err)
	}
	missing := make(map[string][]string, len(groups))
	for _, g := range groups {
		missing[g.id] = g.lists
	}
	return missing, nil
}

// exit runs exit.lua and reports whether the user left the list and
// whether that is due a recheck; now is ms(p.now()), read before the list's
// lock was taken.
func (p *Plugin) exit(ctx context.Context, s sdk.Socket, listID, now string) (left, recheck bool, err error) {
	n, err := sdk.Int64(p.store.Eval(ctx, exitScript, socketKeys(s.ID), s.ID, s.UserID, now, listID, p.token, p.markTTL()))
	if err != nil {
		return false, false, fmt.Errorf("presence exit script: %w", err)
	}
	return n >= 1, n == 2, nil
}

// exitAll runs exitall.lua for socketID; with sweep it does nothing unless
// the socket's deadline has passed. It returns the user, the lists the user
// left and those of them due a recheck. An older now (read before waiting
// for locks) is safe: the sweep check only gets stricter, and entries
// expired at now are expired later.
func (p *Plugin) exitAll(ctx context.Context, socketID, userID string, sweep bool) (string, []string, []string, error) {
	return p.exitAllAt(ctx, socketID, userID, sweep, ms(p.now()))
}

func (p *Plugin) exitAllAt(ctx context.Context, socketID, userID string, sweep bool, now string) (uid string, left, recheck []string, err error) {
	flag := "0"
	if sweep {
		flag = "1"
	}
	out, err := sdk.Strings(p.store.Eval(ctx, exitAllScript, socketKeys(socketID), socketID, now, flag, userID, p.token, p.markTTL()))
	if err != nil {
		return "", nil, nil, fmt.Errorf("presence exitAll script: %w", err)
	}
	if len(out) == 0 {
		return "", nil, nil, nil
	}
	left, recheck, err = splitMarked(out[1:])
	if err != nil {
		return "", nil, nil, fmt.Errorf("presence exitAll script: %w", err)
	}
	return out[0], left, recheck, nil
}

// present runs recheck.lua: whether the user is on the list, marking the
// delta the caller will send.
func (p *Plugin) present(ctx context.Context, listID, userID string) (bool, error) {
	n, err := sdk.Int64(p.store.Eval(ctx, recheckScript, nil, listID, userID, p.token, p.markTTL()))
	if err != nil {
		return false, fmt.Errorf("presence recheck script: %w", err)
	}
	return n == 1, nil
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
// held for it when the sweeper read it (also a socket and the lists its user
// is missing from, in refreshBatch).
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
	out, err := splitGroups(v)
	if err != nil {
		return nil, fmt.Errorf("presence read expired sockets: %w", err)
	}
	return out, nil
}

// splitGroups parses {id, n, item * n, id, n, ...}.
func splitGroups(v []string) ([]expiredSocket, error) {
	var out []expiredSocket
	for len(v) >= 2 {
		n, err := strconv.Atoi(v[1])
		if err != nil || n < 0 || n > len(v)-2 {
			return nil, fmt.Errorf("bad reply at %q", v[0])
		}
		out = append(out, expiredSocket{id: v[0], lists: v[2 : 2+n]})
		v = v[2+n:]
	}
	if len(v) != 0 {
		return nil, errors.New("truncated reply")
	}
	return out, nil
}
