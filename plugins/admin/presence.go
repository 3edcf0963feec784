package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/clowdr/realtime/plugins/sdk"
)

// presenceListPrefix is the presence plugin's page key (the original's name).
const presenceListPrefix = "PresenceList:"

// flushPatterns are the presence plugin's keys (see plugins/presence's
// package doc); a flush removes them all.
var flushPatterns = []string{"PresenceList:*", "SessionLists:*"}

// flushKeys are single presence keys a flush removes.
var flushKeys = []string{"Presence.Sockets", "Presence.SocketUser", "Presence.SessionAndUserIds"}

// scanBatch is the COUNT hint of each SCAN.
const scanBatch = 1000

// scan calls fn with each batch of keys matching pattern, until done or ctx ends.
func scan(ctx context.Context, st sdk.Store, pattern string, fn func([]string) error) error {
	cursor := "0"
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		v, err := st.Do(ctx, "SCAN", cursor, "MATCH", pattern, "COUNT", scanBatch)
		if err != nil {
			return err
		}
		arr, ok := v.([]any)
		if !ok || len(arr) != 2 {
			return errors.New("admin: unexpected SCAN reply")
		}
		cursor, _ = sdk.String(arr[0], nil)
		keys, err := sdk.Strings(arr[1], nil)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if cursor == "0" || cursor == "" {
			return nil
		}
	}
}

// isPageKey keeps PresenceList:<listId> and drops PresenceList:<listId>:UserSessions:<user>
// (the original's "last colon right after PresenceList" rule).
func isPageKey(k string) bool {
	return strings.HasPrefix(k, presenceListPrefix) && !strings.Contains(k[len(presenceListPrefix):], ":")
}

// Summary is the JSON Hasura's presence_Summary action expects.
type Summary struct {
	TotalUniqueTabs    int            `json:"total_unique_tabs"`
	TotalUniqueUserIDs int            `json:"total_unique_user_ids"`
	Pages              map[string]int `json:"pages"`
}

// Summarize reads the presence state from the store.
func Summarize(ctx context.Context, st sdk.Store) (Summary, error) {
	s := Summary{Pages: map[string]int{}}
	users := map[string]struct{}{}
	err := scan(ctx, st, presenceListPrefix+"*", func(keys []string) error {
		var pages []string
		var cmds [][]any
		for _, k := range keys {
			if isPageKey(k) {
				pages = append(pages, k)
				cmds = append(cmds, []any{"SMEMBERS", k})
			}
		}
		if len(cmds) == 0 {
			return nil
		}
		replies, err := st.Pipeline(ctx, cmds)
		if err != nil {
			return err
		}
		for i, r := range replies {
			if r.Err != nil {
				if errors.Is(r.Err, sdk.ErrNil) {
					continue
				}
				return r.Err
			}
			members, err := sdk.Strings(r.Value, nil)
			if err != nil {
				return err
			}
			if len(members) == 0 {
				continue
			}
			s.Pages[pages[i]] = len(members)
			s.TotalUniqueTabs += len(members)
			for _, u := range members {
				users[u] = struct{}{}
			}
		}
		return nil
	})
	s.TotalUniqueUserIDs = len(users)
	return s, err
}

func (p *Plugin) summary(ctx context.Context) sdk.HTTPResponse {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	s, err := Summarize(ctx, p.host.Store())
	if err != nil {
		p.host.Logger().Error("admin: summary failed", "err", err)
		if errors.Is(err, context.DeadlineExceeded) {
			return jsonResp(http.StatusServiceUnavailable, map[string]string{"error": "summary timed out"})
		}
		return jsonResp(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	return jsonResp(http.StatusOK, s)
}

// Flush removes every presence key.
func Flush(ctx context.Context, st sdk.Store) (int, error) {
	removed := 0
	del := func(keys []string) error {
		args := make([]any, 0, len(keys)+1)
		args = append(args, "UNLINK")
		for _, k := range keys {
			args = append(args, k)
		}
		n, err := sdk.Int64(st.Do(ctx, args...))
		removed += int(n)
		return err
	}
	for _, pat := range flushPatterns {
		if err := scan(ctx, st, pat, del); err != nil {
			return removed, err
		}
	}
	return removed, del(flushKeys)
}

func (p *Plugin) flush(ctx context.Context) sdk.HTTPResponse {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	n, err := Flush(ctx, p.host.Store())
	if err != nil {
		p.host.Logger().Error("admin: flush failed", "err", err, "removed", n)
		return jsonResp(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	p.host.Logger().Info("admin: presence state flushed; live instances re-announce within one refresh period", "keys", n)
	return jsonResp(http.StatusOK, map[string]string{"ok": "OK"})
}
