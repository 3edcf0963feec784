package directory

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/host/store"
	"github.com/clowdr/realtime/plugins/sdk"
)

const (
	secret = "s3cret"

	chatPublic     = "00000000-0000-0000-0000-0000000000c1"
	chatPrivate    = "00000000-0000-0000-0000-0000000000c2"
	chatNoRooms    = "00000000-0000-0000-0000-0000000000c3"
	chatRestricted = "00000000-0000-0000-0000-0000000000c4"
	chatOtherConf  = "00000000-0000-0000-0000-0000000000c5"
	chatMissing    = "00000000-0000-0000-0000-0000000000c9"

	regAlice  = "00000000-0000-0000-0000-0000000000a1"
	regBob    = "00000000-0000-0000-0000-0000000000b1"
	regNoUser = "00000000-0000-0000-0000-0000000000f1"
	regGone   = "00000000-0000-0000-0000-0000000000f9"

	eventPublic  = "00000000-0000-0000-0000-0000000000e1"
	eventPrivate = "00000000-0000-0000-0000-0000000000e2"
	eventMissing = "00000000-0000-0000-0000-0000000000e9"
)

// fakeHasura is a Hasura GraphQL endpoint over a small in-memory world. It
// checks what every request must carry and counts requests per operation.
type fakeHasura struct {
	t      *testing.T
	mu     sync.Mutex
	counts map[string]int
	vars   map[string][]map[string]any
	fail   int // HTTP status to answer with instead of data (0 = none)
	gqlErr string
	world  world
}

type room struct {
	mode  string
	users []string // user ids of the room's people
}

type world struct {
	slugs  map[string][]string            // user -> conference slugs
	perms  map[string]map[string][]string // user -> slug -> permissions
	chats  map[string]chat
	regs   map[string]*string // registrant -> user id (nil: none yet)
	events map[string]event
	chairs map[string][]string // event -> chair user ids
}

type chat struct {
	slug       string
	restricted bool
	rooms      []room
}

type event struct {
	slug string
	room room
}

// what each operation must look like
var operations = map[string]struct{ root, variable string }{
	"GetUserConferenceSlugs": {"conference_Conference(", "userId"},
	"UserPermissions":        {"FlatUserPermission(", "userId"},
	"ChatInfo":               {"chat_Chat_by_pk(", "chatId"},
	"RegistrantInfo":         {"registrant_Registrant_by_pk(", "registrantId"},
	"EventInfo":              {"schedule_Event_by_pk(", "eventId"},
	"EventChairs":            {"schedule_EventProgramPerson(", "eventId"},
}

func strp(s string) *string { return &s }

func defaultWorld() world {
	return world{
		slugs: map[string][]string{"alice": {"conf1"}, "mod": {"conf1"}, "bob": {"conf1"}, "carol": {"conf1"}, "manager": {"conf1"}},
		perms: map[string]map[string][]string{
			"alice":   {"conf1": {"CONFERENCE_VIEW_ATTENDEES"}, "conf2": {"CONFERENCE_VIEW_ATTENDEES"}},
			"bob":     {"conf1": {"CONFERENCE_VIEW_ATTENDEES"}},
			"carol":   {"conf1": {"CONFERENCE_VIEW_ATTENDEES"}},
			"mod":     {"conf1": {"CONFERENCE_MODERATE_ATTENDEES"}},
			"manager": {"conf1": {"CONFERENCE_MANAGE_SCHEDULE"}},
			"viewer":  {"conf1": {"CONFERENCE_VIEW"}},
		},
		chats: map[string]chat{
			chatPublic:     {slug: "conf1", rooms: []room{{mode: "PUBLIC"}}},
			chatPrivate:    {slug: "conf1", rooms: []room{{mode: "PRIVATE", users: []string{"alice"}}}},
			chatNoRooms:    {slug: "conf1"},
			chatRestricted: {slug: "conf1", restricted: true},
			chatOtherConf:  {slug: "conf2"},
		},
		regs: map[string]*string{regAlice: strp("alice"), regBob: strp("bob"), regNoUser: nil},
		events: map[string]event{
			eventPublic:  {slug: "conf1", room: room{mode: "PUBLIC"}},
			eventPrivate: {slug: "conf1", room: room{mode: "MANAGED", users: []string{"alice"}}},
		},
		chairs: map[string][]string{eventPublic: {"carol"}},
	}
}

func newFake(t *testing.T) (*fakeHasura, *httptest.Server) {
	f := &fakeHasura{t: t, counts: map[string]int{}, vars: map[string][]map[string]any{}, world: defaultWorld()}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeHasura) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *fakeHasura) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.counts {
		n += c
	}
	return n
}

func (f *fakeHasura) update(fn func(w *world)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.world)
}

func (f *fakeHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	if r.Method != http.MethodPost || r.URL.Path != "/v1/graphql" {
		t.Errorf("request %s %s, want POST /v1/graphql", r.Method, r.URL.Path)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if got := r.Header.Get("x-hasura-admin-secret"); got != secret {
		t.Errorf("x-hasura-admin-secret = %q", got)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var req struct {
		OperationName string         `json:"operationName"`
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		t.Errorf("bad request body: %v", err)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	op, ok := operations[req.OperationName]
	if !ok || !strings.Contains(req.Query, "query "+req.OperationName+"(") || !strings.Contains(req.Query, op.root) {
		t.Errorf("operation %q: query does not match:\n%s", req.OperationName, req.Query)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	v, _ := req.Variables[op.variable].(string)
	if len(req.Variables) != 1 || v == "" || !strings.Contains(req.Query, "$"+op.variable) {
		t.Errorf("operation %s: variables %v, want only %s", req.OperationName, req.Variables, op.variable)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[req.OperationName]++
	f.vars[req.OperationName] = append(f.vars[req.OperationName], req.Variables)
	if f.fail != 0 {
		http.Error(w, "down", f.fail)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if f.gqlErr != "" {
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": f.gqlErr}}})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"data": f.world.answer(req.OperationName, v)})
}

func people(users []string) []any {
	out := []any{}
	for _, u := range users {
		out = append(out, map[string]any{"id": "rp-" + u, "registrant": map[string]any{"id": "reg-" + u, "userId": u}})
	}
	return out
}

func roomJSON(id string, r room) map[string]any {
	return map[string]any{"id": id, "name": "Room " + id, "managementModeName": r.mode, "roomPeople": people(r.users)}
}

func (w *world) answer(op, v string) map[string]any {
	switch op {
	case "GetUserConferenceSlugs":
		confs := []any{}
		for _, s := range w.slugs[v] {
			confs = append(confs, map[string]any{"id": "id-" + s, "slug": s})
		}
		return map[string]any{"conference_Conference": confs}
	case "UserPermissions":
		perms := []any{}
		for slug, ps := range w.perms[v] {
			for _, p := range ps {
				perms = append(perms, map[string]any{"slug": slug, "permission_name": p, "user_id": v})
			}
		}
		return map[string]any{"FlatUserPermission": perms}
	case "ChatInfo":
		c, ok := w.chats[v]
		if !ok {
			return map[string]any{"chat_Chat_by_pk": nil}
		}
		rooms := []any{}
		for i, r := range c.rooms {
			rooms = append(rooms, roomJSON(v+"-room"+string(rune('0'+i)), r))
		}
		return map[string]any{"chat_Chat_by_pk": map[string]any{
			"id": v, "restrictToAdmins": c.restricted,
			"conference": map[string]any{"id": "id-" + c.slug, "slug": c.slug, "shortName": strings.ToUpper(c.slug)},
			"items":      []any{map[string]any{"id": "item1", "title": "Item", "shortTitle": nil}},
			"rooms":      rooms,
		}}
	case "RegistrantInfo":
		u, ok := w.regs[v]
		if !ok {
			return map[string]any{"registrant_Registrant_by_pk": nil}
		}
		return map[string]any{"registrant_Registrant_by_pk": map[string]any{"id": v, "userId": u, "displayName": "Name " + v[len(v)-2:], "conferenceId": "id-conf1"}}
	case "EventInfo":
		e, ok := w.events[v]
		if !ok {
			return map[string]any{"schedule_Event_by_pk": nil}
		}
		return map[string]any{"schedule_Event_by_pk": map[string]any{
			"id":         v,
			"conference": map[string]any{"id": "id-" + e.slug, "slug": e.slug},
			"room":       roomJSON(v+"-room", e.room),
		}}
	case "EventChairs":
		ps := []any{}
		for _, u := range w.chairs[v] {
			ps = append(ps, map[string]any{"id": "epp-" + u, "person": map[string]any{"id": "p-" + u, "registrant": map[string]any{"id": "reg-" + u, "userId": u}}})
		}
		return map[string]any{"schedule_EventProgramPerson": ps}
	}
	return nil
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.New(context.Background(), config.RedisConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newHasura(t *testing.T, srv *httptest.Server, st sdk.Store, ttl time.Duration, opts ...HasuraOption) *Hasura {
	t.Helper()
	cfg := config.DirectoryConfig{
		Backend:       "hasura",
		GraphQLDomain: strings.TrimPrefix(srv.URL, "http://"),
		AdminSecret:   secret,
		CacheTTL:      ttl,
	}
	h, err := NewHasura(cfg, st, nil, append([]HasuraOption{WithHTTPClient(srv.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sock(user string, slugs ...string) sdk.Socket {
	if len(slugs) == 0 {
		slugs = []string{"conf1"}
	}
	return sdk.Socket{ID: "sock-" + user, UserID: user, ConferenceSlugs: slugs}
}

func TestHasuraPermissions(t *testing.T) {
	ctx := context.Background()
	type call func(h *Hasura) (bool, error)
	sel := func(user, chat string, slugs ...string) call {
		return func(h *Hasura) (bool, error) { return h.CanSelectChat(ctx, sock(user, slugs...), chat) }
	}
	write := func(user, chat, sender string) call {
		return func(h *Hasura) (bool, error) { return h.CanWriteChat(ctx, sock(user), chat, sender) }
	}
	access := func(user, ev string) call {
		return func(h *Hasura) (bool, error) { return h.CanAccessEvent(ctx, sock(user), ev) }
	}
	chair := func(user, ev string) call {
		return func(h *Hasura) (bool, error) { return h.IsEventChair(ctx, sock(user), ev) }
	}
	tests := []struct {
		name       string
		call       call
		want       bool
		noRequests bool
	}{
		{"select: public room", sel("alice", chatPublic), true, false},
		{"select: private room, member", sel("alice", chatPrivate), true, false},
		{"select: private room, not member", sel("bob", chatPrivate), false, false},
		{"select: no rooms", sel("bob", chatNoRooms), true, false},
		{"select: conference not in socket's list", sel("alice", chatOtherConf), false, false},
		{"select: conference in socket's list", sel("alice", chatOtherConf, "conf1", "conf2"), true, false},
		{"select: CONFERENCE_VIEW is not enough", sel("viewer", chatPublic), false, false},
		{"select: no permissions", sel("nobody", chatPublic), false, false},
		{"select: moderator", sel("mod", chatNoRooms), true, false},
		{"select: missing chat", sel("alice", chatMissing), false, false},
		{"select: id is not a uuid", sel("alice", "not-a-uuid"), false, true},
		{"select: no user", sel("", chatPublic), false, true},
		{"write: own message", write("alice", chatPublic, regAlice), true, false},
		{"write: someone else's message", write("alice", chatPublic, regBob), false, false},
		{"write: no sender", write("alice", chatPublic, ""), false, false},
		{"write: sender without user", write("alice", chatPublic, regNoUser), false, false},
		{"write: unknown sender", write("alice", chatPublic, regGone), false, false},
		{"write: moderator, someone else's", write("mod", chatPublic, regBob), true, false},
		{"write: moderator, no sender", write("mod", chatPublic, ""), true, false},
		{"write: own, restricted chat", write("alice", chatRestricted, regAlice), false, false},
		{"write: moderator, restricted chat", write("mod", chatRestricted, regBob), true, false},
		{"write: own, private room, not member", write("bob", chatPrivate, regBob), false, false},
		{"event: public room", access("bob", eventPublic), true, false},
		{"event: private room, member", access("alice", eventPrivate), true, false},
		{"event: private room, not member", access("bob", eventPrivate), false, false},
		{"event: no permissions", access("nobody", eventPublic), false, false},
		{"event: missing", access("alice", eventMissing), false, false},
		{"event: bad id", access("alice", "x"), false, true},
		{"chair: program chair", chair("carol", eventPublic), true, false},
		{"chair: manages schedule", chair("manager", eventPublic), true, false},
		{"chair: attendee", chair("alice", eventPublic), false, false},
		{"chair: missing event", chair("carol", eventMissing), false, false},
		{"chair: bad id", chair("carol", "x"), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			h := newHasura(t, srv, newStore(t), time.Minute)
			got, err := tc.call(h)
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			if tc.noRequests && f.total() != 0 {
				t.Errorf("bad input made %d requests", f.total())
			}
		})
	}
}

func TestHasuraLookups(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Minute)

	slugs, err := h.ConferenceSlugs(ctx, "alice")
	if err != nil || !slices.Equal(slugs, []string{"conf1"}) {
		t.Errorf("ConferenceSlugs(alice) = %v, %v", slugs, err)
	}
	if got := f.vars["GetUserConferenceSlugs"]; len(got) != 1 || got[0]["userId"] != "alice" {
		t.Errorf("variables = %v", got)
	}
	if slugs, err := h.ConferenceSlugs(ctx, "stranger"); err != nil || len(slugs) != 0 {
		t.Errorf("ConferenceSlugs(stranger) = %v, %v", slugs, err)
	}
	if slugs, err := h.ConferenceSlugs(ctx, ""); err != nil || len(slugs) != 0 {
		t.Errorf("ConferenceSlugs('') = %v, %v", slugs, err)
	}

	tests := []struct {
		id    string
		want  sdk.Registrant
		found bool
	}{
		{regAlice, sdk.Registrant{ID: regAlice, UserID: "alice", DisplayName: "Name a1", ConferenceID: "id-conf1"}, true},
		{regNoUser, sdk.Registrant{ID: regNoUser, DisplayName: "Name f1", ConferenceID: "id-conf1"}, true},
		{regGone, sdk.Registrant{}, false},
		{"not-a-uuid", sdk.Registrant{}, false},
	}
	for _, tc := range tests {
		r, found, err := h.Registrant(ctx, tc.id)
		if err != nil || found != tc.found || r != tc.want {
			t.Errorf("Registrant(%s) = %+v, %v, %v; want %+v, %v", tc.id, r, found, err, tc.want, tc.found)
		}
	}
	if got := f.vars["RegistrantInfo"]; len(got) == 0 || got[0]["registrantId"] != regAlice {
		t.Errorf("variables = %v", got)
	}
}

func TestHasuraCache(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	st := newStore(t)
	const ttl = 300 * time.Millisecond
	h := newHasura(t, srv, st, ttl)

	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || !ok {
		t.Fatalf("first call = %v, %v", ok, err)
	}
	n := f.total()
	if f.count("ChatInfo") != 1 || f.count("UserPermissions") != 1 {
		t.Fatalf("first call made %v requests", f.counts)
	}
	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || !ok {
		t.Fatalf("second call = %v, %v", ok, err)
	}
	if f.total() != n {
		t.Fatalf("second call made requests: %v", f.counts)
	}

	// The entry has the original's format and a real TTL.
	raw, err := sdk.String(st.Do(ctx, "GET", "caches:ChatInfo:"+chatPublic))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		FetchedAt int64  `json:"fetchedAt"`
		Value     string `json:"value"`
	}
	if err := json.Unmarshal([]byte(raw), &e); err != nil || e.FetchedAt == 0 || !strings.Contains(e.Value, `"slug":"conf1"`) || !strings.Contains(e.Value, `"managementMode":"PUBLIC"`) {
		t.Fatalf("entry = %s (%v)", raw, err)
	}
	pttl, err := sdk.Int64(st.Do(ctx, "PTTL", "caches:ChatInfo:"+chatPublic))
	if err != nil || pttl <= 0 || pttl > ttl.Milliseconds() {
		t.Fatalf("PTTL = %d, %v; want in (0, %d]", pttl, err, ttl.Milliseconds())
	}
	// "not found" is cached too, shorter.
	if ok, _ := h.CanSelectChat(ctx, sock("alice"), chatMissing); ok {
		t.Fatal("missing chat allowed")
	}
	if raw, err := sdk.String(st.Do(ctx, "GET", "caches:ChatInfo:"+chatMissing)); err != nil || !strings.Contains(raw, `"value":"undefined"`) {
		t.Fatalf("not-found entry = %q, %v", raw, err)
	}
	if pttl, _ := sdk.Int64(st.Do(ctx, "PTTL", "caches:ChatInfo:"+chatMissing)); pttl <= 0 || pttl > (ttl/5).Milliseconds() {
		t.Fatalf("not-found PTTL = %d", pttl)
	}

	// After the TTL the next call asks Hasura again.
	before := f.count("ChatInfo")
	deadline := time.Now().Add(15 * time.Second)
	for f.count("ChatInfo") == before {
		if time.Now().After(deadline) {
			t.Fatal("cache entry never expired")
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHasuraRefetchOnNegative(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Hour, WithRefetchInterval(time.Hour))

	// bob is not in the private room: the answer came straight from Hasura,
	// so no refetch.
	if ok, err := h.CanSelectChat(ctx, sock("bob"), chatPrivate); err != nil || ok {
		t.Fatalf("before = %v, %v", ok, err)
	}
	if c := f.count("ChatInfo"); c != 1 {
		t.Fatalf("ChatInfo requests = %d, want 1", c)
	}
	// bob joins the room; the cache still says no: one refetch fixes it.
	f.update(func(w *world) {
		c := w.chats[chatPrivate]
		c.rooms = []room{{mode: "PRIVATE", users: []string{"alice", "bob"}}}
		w.chats[chatPrivate] = c
	})
	if ok, err := h.CanSelectChat(ctx, sock("bob"), chatPrivate); err != nil || !ok {
		t.Fatalf("after joining = %v, %v", ok, err)
	}
	if c := f.count("ChatInfo"); c != 2 {
		t.Fatalf("ChatInfo requests = %d, want 2", c)
	}
	// Denied again later: the refetch is rate-limited, no new request.
	if ok, _ := h.CanSelectChat(ctx, sock("carol"), chatPrivate); ok {
		t.Fatal("carol allowed")
	}
	if ok, _ := h.CanSelectChat(ctx, sock("carol"), chatPrivate); ok {
		t.Fatal("carol allowed")
	}
	if c := f.count("ChatInfo"); c != 2 {
		t.Fatalf("ChatInfo requests = %d, want 2 (refetch not rate-limited)", c)
	}

	// Permissions: carol gains moderation rights; a negative answer refetches.
	perms := f.count("UserPermissions")
	f.update(func(w *world) {
		w.perms["carol"]["conf1"] = append(w.perms["carol"]["conf1"], "CONFERENCE_MODERATE_ATTENDEES")
	})
	if ok, err := h.CanWriteChat(ctx, sock("carol"), chatNoRooms, ""); err != nil || !ok {
		t.Fatalf("moderator write after grant = %v, %v", ok, err)
	}
	if c := f.count("UserPermissions"); c != perms+1 {
		t.Fatalf("UserPermissions requests = %d, want %d", c, perms+1)
	}
}

func TestHasuraInvalidate(t *testing.T) {
	ctx := context.Background()
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Hour, WithRefetchInterval(time.Hour))

	if ok, _ := h.CanSelectChat(ctx, sock("alice"), chatPublic); !ok {
		t.Fatal("public chat denied")
	}
	f.update(func(w *world) { w.chats[chatPublic] = chat{slug: "conf1", rooms: []room{{mode: "PRIVATE"}}} })
	if err := h.Invalidate(ctx, CacheChatInfo, chatPublic); err != nil {
		t.Fatal(err)
	}
	// Use up the rate-limited refetch first so only Invalidate can help.
	if ok, _ := h.CanSelectChat(ctx, sock("alice"), chatPublic); ok {
		t.Fatal("chat made private, still allowed after Invalidate")
	}
	if err := h.Invalidate(ctx, "", "x"); err == nil {
		t.Error("empty name: want error")
	}
}

func TestHasuraDown(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(f *fakeHasura, srv *httptest.Server)
	}{
		{"HTTP 500", func(f *fakeHasura, _ *httptest.Server) { f.fail = http.StatusInternalServerError }},
		{"GraphQL error", func(f *fakeHasura, _ *httptest.Server) { f.gqlErr = "field not found" }},
		{"connection refused", func(_ *fakeHasura, srv *httptest.Server) { srv.Close() }},
	}
	calls := []struct {
		name string
		call func(h *Hasura) (bool, error)
	}{
		{"CanSelectChat", func(h *Hasura) (bool, error) { return h.CanSelectChat(ctx, sock("alice"), chatPublic) }},
		{"CanWriteChat", func(h *Hasura) (bool, error) { return h.CanWriteChat(ctx, sock("alice"), chatPublic, regAlice) }},
		{"CanAccessEvent", func(h *Hasura) (bool, error) { return h.CanAccessEvent(ctx, sock("alice"), eventPublic) }},
		{"IsEventChair", func(h *Hasura) (bool, error) { return h.IsEventChair(ctx, sock("carol"), eventPublic) }},
		{"ConferenceSlugs", func(h *Hasura) (bool, error) {
			s, err := h.ConferenceSlugs(ctx, "alice")
			return len(s) > 0, err
		}},
		{"Registrant", func(h *Hasura) (bool, error) {
			_, found, err := h.Registrant(ctx, regAlice)
			return found, err
		}},
	}
	for _, tc := range tests {
		for _, c := range calls {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				f, srv := newFake(t)
				h := newHasura(t, srv, newStore(t), time.Minute)
				tc.setup(f, srv)
				ok, err := c.call(h)
				if err == nil || ok {
					t.Fatalf("got %v, %v; want an error and false", ok, err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks the admin secret: %v", err)
				}
			})
		}
	}

	// Errors are not cached: once Hasura is back, the answer is right.
	// Ready (/readyz) follows the latest query.
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Minute)
	if err := h.Ready(ctx); err != nil {
		t.Fatalf("Ready before any query = %v", err)
	}
	f.fail = http.StatusBadGateway
	if _, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err == nil {
		t.Fatal("want error")
	}
	if err := h.Ready(ctx); err == nil || !strings.Contains(err.Error(), "502") || strings.Contains(err.Error(), secret) {
		t.Errorf("Ready while Hasura fails = %v, want the 502 without the secret", err)
	}
	f.mu.Lock()
	f.fail = 0
	f.mu.Unlock()
	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || !ok {
		t.Fatalf("after recovery = %v, %v", ok, err)
	}
	if err := h.Ready(ctx); err != nil {
		t.Errorf("Ready after recovery = %v", err)
	}
}

func TestHasuraTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	h := newHasura(t, srv, newStore(t), time.Minute, WithTimeout(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic)
	if err == nil || ok {
		t.Fatalf("got %v, %v; want a timeout error", ok, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the request timeout did not bound the call")
	}
}

// The store being down costs the cache only.
func TestHasuraStoreDown(t *testing.T) {
	_, srv := newFake(t)
	st := newStore(t)
	h := newHasura(t, srv, st, time.Minute)
	_ = st.Close()
	if ok, err := h.CanSelectChat(context.Background(), sock("alice"), chatPublic); err != nil || !ok {
		t.Fatalf("with the store down = %v, %v", ok, err)
	}
}

func TestHasuraConcurrentLookupsShareRequests(t *testing.T) {
	f, srv := newFake(t)
	h := newHasura(t, srv, newStore(t), time.Minute)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if ok, err := h.CanSelectChat(context.Background(), sock("alice"), chatPublic); err != nil || !ok {
				t.Errorf("got %v, %v", ok, err)
			}
		})
	}
	wg.Wait()
	// Without a shared fetch (and a second look at the cache inside it) 20
	// callers would make up to 20 requests.
	if c := f.count("ChatInfo"); c != 1 {
		t.Errorf("ChatInfo requests = %d for 20 concurrent callers", c)
	}
}

func TestNew(t *testing.T) {
	st := newStore(t)
	tests := []struct {
		name    string
		cfg     config.DirectoryConfig
		store   sdk.Store
		want    string
		wantErr bool
	}{
		{"default is static", config.DirectoryConfig{}, st, "static", false},
		{"test mode is static", config.DirectoryConfig{TestMode: true}, nil, "static", false},
		{"graphql domain picks hasura", config.DirectoryConfig{GraphQLDomain: "hasura:8080"}, st, "hasura", false},
		{"explicit static", config.DirectoryConfig{Backend: "static", GraphQLDomain: "hasura:8080"}, st, "static", false},
		{"explicit hasura", config.DirectoryConfig{Backend: "hasura", GraphQLDomain: "h", GraphQLSecure: true}, st, "hasura", false},
		{"hasura without domain", config.DirectoryConfig{Backend: "hasura"}, st, "", true},
		{"hasura without store", config.DirectoryConfig{Backend: "hasura", GraphQLDomain: "h"}, nil, "", true},
		{"domain with scheme", config.DirectoryConfig{Backend: "hasura", GraphQLDomain: "https://h"}, st, "", true},
		{"unknown backend", config.DirectoryConfig{Backend: "ldap"}, st, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(tc.cfg, tc.store, nil)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := d.(Named).Name(); got != tc.want {
				t.Fatalf("backend %q, want %q", got, tc.want)
			}
		})
	}
	d, _ := New(config.DirectoryConfig{Backend: "hasura", GraphQLDomain: "h:1", GraphQLSecure: true}, st, nil)
	if got := d.(*Hasura).endpoint; got != "https://h:1/v1/graphql" {
		t.Errorf("endpoint = %q", got)
	}
}
