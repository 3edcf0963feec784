package directory

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

const (
	msgFlagged = "00000000-0000-0000-0000-0000000000a9"
	msgOther   = "00000000-0000-0000-0000-0000000000aa"
	msgMissing = "00000000-0000-0000-0000-0000000000ab"
)

// moderatorsHasura answers FlagInserted_GetModerators over a few messages
// (the shared fake knows only the other operations). A message maps to its
// conference's registrants' user ids as Hasura returns them (nil: a
// registrant without a user yet).
type moderatorsHasura struct {
	t        *testing.T
	mu       sync.Mutex
	requests int
	messages map[string]struct {
		slug  string
		users []*string
	}
	gqlErr string
}

func (f *moderatorsHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OperationName string         `json:"operationName"`
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("x-hasura-admin-secret") != secret {
		f.t.Errorf("bad request (secret %q): %v", r.Header.Get("x-hasura-admin-secret"), err)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	if req.OperationName != opMessageModerators || req.Query != queryMessageModerators {
		f.t.Errorf("operation %q, query:\n%s", req.OperationName, req.Query)
	}
	// The permission travels as a variable: it must be the one the
	// permission checks use, not some other name.
	want := map[string]any{"messageSId": req.Variables["messageSId"], "permission": "CONFERENCE_MODERATE_ATTENDEES"}
	if !reflect.DeepEqual(req.Variables, want) {
		f.t.Errorf("variables %v, want %v", req.Variables, want)
	}
	sid, _ := req.Variables["messageSId"].(string)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	w.Header().Set("Content-Type", "application/json")
	if f.gqlErr != "" {
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": f.gqlErr}}})
		return
	}
	msgs := []any{}
	if m, ok := f.messages[sid]; ok {
		regs := []any{}
		for _, u := range m.users {
			regs = append(regs, map[string]any{"userId": u})
		}
		msgs = append(msgs, map[string]any{"chat": map[string]any{"conference": map[string]any{"slug": m.slug, "registrants": regs}}})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"chat_Message": msgs}})
}

func (f *moderatorsHasura) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func newModeratorsHasura(t *testing.T) (*moderatorsHasura, *httptest.Server) {
	f := &moderatorsHasura{t: t, messages: map[string]struct {
		slug  string
		users []*string
	}{
		msgFlagged: {slug: "conf1", users: []*string{strp("mod"), nil, strp("manager"), strp("mod")}},
		msgOther:   {slug: "conf2"},
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestHasuraMessageModerators(t *testing.T) {
	ctx := context.Background()
	f, srv := newModeratorsHasura(t)
	h := newHasura(t, srv, newStore(t), time.Hour)

	tests := []struct {
		name     string
		sid      string
		want     sdk.ConferenceModerators
		found    bool
		requests int
	}{
		// Registrants without a user are skipped; a user with two
		// registrant rows in the answer is named once.
		{"moderators", msgFlagged, sdk.ConferenceModerators{ConferenceSlug: "conf1", UserIDs: []string{"mod", "manager"}}, true, 1},
		{"conference without moderators", msgOther, sdk.ConferenceModerators{ConferenceSlug: "conf2"}, true, 1},
		{"unknown message", msgMissing, sdk.ConferenceModerators{}, false, 1},
		{"not a uuid", "not-a-uuid", sdk.ConferenceModerators{}, false, 0},
	}
	for _, tc := range tests {
		before := f.count()
		got, found, err := h.MessageModerators(ctx, tc.sid)
		if err != nil || found != tc.found || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: MessageModerators = %+v, %v, %v; want %+v, %v, nil", tc.name, got, found, err, tc.want, tc.found)
		}
		if n := f.count() - before; n != tc.requests {
			t.Errorf("%s: %d requests, want %d", tc.name, n, tc.requests)
		}
	}
	// Uncached: moderators added since are named at the next flag.
	f.mu.Lock()
	m := f.messages[msgOther]
	m.users = []*string{strp("newmod")}
	f.messages[msgOther] = m
	f.mu.Unlock()
	if got, found, err := h.MessageModerators(ctx, msgOther); err != nil || !found || !reflect.DeepEqual(got.UserIDs, []string{"newmod"}) {
		t.Errorf("after adding a moderator: %+v, %v, %v", got, found, err)
	}
}

func TestHasuraMessageModeratorsErrors(t *testing.T) {
	ctx := context.Background()
	f, srv := newModeratorsHasura(t)
	h := newHasura(t, srv, newStore(t), time.Hour)
	f.gqlErr = "field 'chat_Message' not found"
	if _, found, err := h.MessageModerators(ctx, msgFlagged); err == nil || found || !strings.Contains(err.Error(), "chat_Message") {
		t.Errorf("GraphQL error: found=%v err=%v, want the error", found, err)
	}

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	h = newHasura(t, down, newStore(t), time.Hour)
	if _, found, err := h.MessageModerators(ctx, msgFlagged); err == nil || found || !strings.Contains(err.Error(), "503") {
		t.Errorf("Hasura down: found=%v err=%v, want a 503 error", found, err)
	}
	if err := h.Ready(ctx); err == nil {
		t.Error("Ready after a failed MessageModerators query = nil, want the failure")
	}
}

func TestStaticMessageModerators(t *testing.T) {
	var d Static
	if m, found, err := d.MessageModerators(context.Background(), msgFlagged); err != nil || found || !reflect.DeepEqual(m, sdk.ConferenceModerators{}) {
		t.Errorf("static MessageModerators = %+v, %v, %v; want not found", m, found, err)
	}
}
