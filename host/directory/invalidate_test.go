package directory

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

const eventSecret = "ev-secret"

// invalidateCall posts body to h with the given secret header ("" = none)
// and returns the status and decoded JSON answer.
func invalidateCall(t *testing.T, h http.Handler, method, secretHdr, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, InvalidatePath, strings.NewReader(body))
	if secretHdr != "" {
		req.Header.Set("x-hasura-event-secret", secretHdr)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: answer %d %q is not JSON: %v", method, body, rec.Code, rec.Body.String(), err)
	}
	return rec.Code, out
}

// wantInvalidated checks a 200 {"ok":true,"invalidated":n}.
func wantInvalidated(t *testing.T, code int, out map[string]any, n int) {
	t.Helper()
	if code != http.StatusOK || out["ok"] != true || out["invalidated"] != float64(n) {
		t.Fatalf("answer %d %v, want 200 {ok:true, invalidated:%d}", code, out, n)
	}
}

func TestInvalidateRouteExplicit(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Hour, WithRefetchInterval(time.Hour))
	route := InvalidateHandler(h, eventSecret, nil)

	for range 2 {
		if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || !ok {
			t.Fatalf("CanSelectChat = %v, %v", ok, err)
		}
	}
	if c := f.count("ChatInfo"); c != 1 {
		t.Fatalf("ChatInfo requests = %d before the route, want 1 (cached)", c)
	}
	// The chat becomes private: only dropping the entry lets alice see it
	// before the hour-long TTL (her positive answer is never refetched).
	f.update(func(w *world) { w.chats[chatPublic] = chat{slug: "conf1", rooms: []room{{mode: "PRIVATE"}}} })
	code, out := invalidateCall(t, route, http.MethodPost, eventSecret, `{"cache":"ChatInfo","key":"`+chatPublic+`"}`)
	wantInvalidated(t, code, out, 1)
	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || ok {
		t.Fatalf("after invalidate = %v, %v; want denied", ok, err)
	}
	if c := f.count("ChatInfo"); c != 2 {
		t.Fatalf("ChatInfo requests = %d after the route, want 2", c)
	}
	// A key with no entry drops nothing.
	code, out = invalidateCall(t, route, http.MethodPost, eventSecret, `{"cache":"EventInfo","key":"nope"}`)
	wantInvalidated(t, code, out, 0)
}

func TestInvalidateRouteHasuraEvents(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	st := newStore(t)
	h := newHasura(t, srv, st, time.Hour, WithRefetchInterval(time.Hour))
	route := InvalidateHandler(h, eventSecret, nil)

	fill := func() {
		t.Helper()
		if _, found, err := h.Registrant(ctx, regAlice); err != nil || !found {
			t.Fatalf("Registrant = %v, %v", found, err)
		}
		for _, u := range []string{"alice", "bob"} {
			if _, err := h.ConferenceSlugs(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := h.userPermissions(ctx, "alice", false); err != nil {
			t.Fatal(err)
		}
		if _, err := h.CanAccessEvent(ctx, sock("alice"), eventPublic); err != nil {
			t.Fatal(err)
		}
		// Directly: IsEventChair would refetch carol's (negative) permissions.
		if _, _, err := h.eventChairs(ctx, eventPublic, false); err != nil {
			t.Fatal(err)
		}
	}
	fill()
	before := map[string]int{}
	for op := range operations {
		before[op] = f.count(op)
	}
	fill()
	for op, n := range before {
		if f.count(op) != n {
			t.Fatalf("%s requests %d -> %d: second fill should be cached", op, n, f.count(op))
		}
	}

	// A registrant moves from alice to bob: its entry and both users' slugs
	// and permissions go (bob's permissions were not cached: 4 of 5).
	code, out := invalidateCall(t, route, http.MethodPost, eventSecret, `{
		"event": {"op": "UPDATE", "session_variables": null,
			"data": {"old": {"id": "`+regAlice+`", "userId": "alice"}, "new": {"id": "`+regAlice+`", "userId": "bob"}}},
		"table": {"schema": "registrant", "name": "Registrant"}}`)
	wantInvalidated(t, code, out, 4)
	for _, k := range []string{"RegistrantInfo:" + regAlice, "ConferenceSlugs:alice", "ConferenceSlugs:bob", "UserPermission:alice"} {
		if n, _ := sdk.Int64(st.Do(ctx, "EXISTS", "caches:"+k)); n != 0 {
			t.Errorf("caches:%s still cached", k)
		}
	}
	// An event row (table in schema public, named as in GraphQL): both event entries.
	code, out = invalidateCall(t, route, http.MethodPost, eventSecret, `{
		"event": {"op": "DELETE", "data": {"old": {"id": "`+eventPublic+`"}, "new": null}},
		"table": {"schema": "public", "name": "schedule_Event"}}`)
	wantInvalidated(t, code, out, 2)

	fill()
	for _, op := range []string{"RegistrantInfo", "GetUserConferenceSlugs", "UserPermissions", "EventInfo", "EventChairs"} {
		if f.count(op) <= before[op] {
			t.Errorf("%s: no new request after the route (%d)", op, f.count(op))
		}
	}
	if got, want := f.count("GetUserConferenceSlugs"), before["GetUserConferenceSlugs"]+2; got != want {
		t.Errorf("GetUserConferenceSlugs requests = %d, want %d (alice and bob)", got, want)
	}

	// A chat row: ChatInfo:<id>.
	if _, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil {
		t.Fatal(err)
	}
	code, out = invalidateCall(t, route, http.MethodPost, eventSecret, `{
		"event": {"op": "UPDATE", "data": {"old": {"id": "`+chatPublic+`"}, "new": {"id": "`+chatPublic+`"}}},
		"table": {"schema": "chat", "name": "Chat"}}`)
	wantInvalidated(t, code, out, 1)

	// A table no cache depends on: 200, nothing dropped (Hasura retries non-2xx).
	code, out = invalidateCall(t, route, http.MethodPost, eventSecret, `{
		"event": {"op": "INSERT", "data": {"old": null, "new": {"id": "`+chatPublic+`"}}},
		"table": {"schema": "chat", "name": "Message"}}`)
	wantInvalidated(t, code, out, 0)
}

func TestInvalidateRouteRefuses(t *testing.T) {
	_, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Hour)
	route := InvalidateHandler(h, eventSecret, nil)
	ok := `{"cache":"ChatInfo","key":"` + chatPublic + `"}`

	for _, tc := range []struct {
		name, method, secret, body string
		want                       int
	}{
		{"wrong secret", http.MethodPost, "nope", ok, http.StatusUnauthorized},
		{"no secret", http.MethodPost, "", ok, http.StatusUnauthorized},
		{"GET", http.MethodGet, eventSecret, ok, http.StatusMethodNotAllowed},
		{"bad JSON", http.MethodPost, eventSecret, `{"cache":`, http.StatusBadRequest},
		{"not an object", http.MethodPost, eventSecret, `[1]`, http.StatusBadRequest},
		{"trailing data", http.MethodPost, eventSecret, ok + ok, http.StatusBadRequest},
		{"empty object", http.MethodPost, eventSecret, `{}`, http.StatusBadRequest},
		{"unknown cache", http.MethodPost, eventSecret, `{"cache":"Nope","key":"x"}`, http.StatusBadRequest},
		{"empty key", http.MethodPost, eventSecret, `{"cache":"ChatInfo","key":""}`, http.StatusBadRequest},
		{"both forms", http.MethodPost, eventSecret, `{"cache":"ChatInfo","key":"x","event":{"data":{}},"table":{"name":"chat_Chat"}}`, http.StatusBadRequest},
		{"event without data", http.MethodPost, eventSecret, `{"event":{"op":"INSERT"},"table":{"name":"chat_Chat"}}`, http.StatusBadRequest},
		{"event without table", http.MethodPost, eventSecret, `{"event":{"op":"INSERT","data":{"old":null,"new":{}}}}`, http.StatusBadRequest},
		{"too large", http.MethodPost, eventSecret, `{"cache":"ChatInfo","key":"` + strings.Repeat("x", maxInvalidateBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := invalidateCall(t, route, tc.method, tc.secret, tc.body)
			if code != tc.want || out["ok"] == true {
				t.Fatalf("answer %d %v, want %d", code, out, tc.want)
			}
		})
	}

	// No EVENT_SECRET configured: everything is refused, even an empty header.
	code, _ := invalidateCall(t, InvalidateHandler(h, "", nil), http.MethodPost, "", ok)
	if code != http.StatusUnauthorized {
		t.Fatalf("no configured secret: %d, want 401", code)
	}
}

func TestInvalidateRouteStatic(t *testing.T) {
	route := InvalidateHandler(NewStatic(config.DirectoryConfig{}), eventSecret, nil)
	code, out := invalidateCall(t, route, http.MethodPost, eventSecret, `{"cache":"ChatInfo","key":"c"}`)
	wantInvalidated(t, code, out, 0)
	if code, _ := invalidateCall(t, route, http.MethodPost, "wrong", `{"cache":"ChatInfo","key":"c"}`); code != http.StatusUnauthorized {
		t.Fatalf("static, wrong secret: %d, want 401", code)
	}
}

// A Store failure is a 500, so Hasura retries the event.
func TestInvalidateRouteStoreDown(t *testing.T) {
	_, srv := newFake(t)
	st := newStore(t)
	h := newHasura(t, srv, st, time.Hour)
	_ = st.Close()
	code, out := invalidateCall(t, InvalidateHandler(h, eventSecret, nil), http.MethodPost, eventSecret, `{"cache":"ChatInfo","key":"c"}`)
	if code != http.StatusInternalServerError || out["ok"] != false {
		t.Fatalf("store down: %d %v, want 500", code, out)
	}
}
