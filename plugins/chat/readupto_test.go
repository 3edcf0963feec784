package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// rutHasura answers the read-up-to documents as Hasura would, from its
// tables: index rows (chatId¬userId -> messageSId, "null" for a null
// column), registrants (userId -> id, every chat in their conference), and
// records the upserted rows. down answers every request with 503; refuse
// fails an upsert naming one of these messageSIds with a GraphQL error.
type rutHasura struct {
	index       map[string]string
	registrants map[string]string
	down        bool
	refuse      map[string]bool
	// upserted, when set, is told of every successful upsert.
	upserted chan struct{}

	mu   sync.Mutex
	reqs []gqlRequest
	rows [][]rutRow // successful upserts, one entry per request
}

func (f *rutHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req gqlRequest
	_ = json.Unmarshal(b, &req)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if f.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	str := func(name string) string {
		var s string
		_ = json.Unmarshal(req.Variables[name], &s)
		return s
	}
	var data any
	switch {
	case strings.HasPrefix(req.Query, "query ReadUpToIndex("):
		rows := []map[string]any{}
		if m, ok := f.index[readUpToMember(str("chatId"), str("userId"))]; ok {
			var sid any = m
			if m == "null" {
				sid = nil
			}
			rows = append(rows, map[string]any{"chatId": str("chatId"), "registrantId": f.registrants[str("userId")], "messageSId": sid})
		}
		data = map[string]any{"chat_ReadUpToIndex": rows}
	case strings.HasPrefix(req.Query, "query RegistrantIdsFromChatsAndUsers("):
		var chats, users []string
		_ = json.Unmarshal(req.Variables["chatIds"], &chats)
		_ = json.Unmarshal(req.Variables["userIds"], &users)
		var cs []map[string]string
		for _, c := range chats {
			cs = append(cs, map[string]string{"id": c})
		}
		regs := []map[string]any{}
		for _, u := range users {
			if id, ok := f.registrants[u]; ok {
				regs = append(regs, map[string]any{"id": id, "userId": u, "conference": map[string]any{"chats": cs}})
			}
		}
		data = map[string]any{"registrant_Registrant": regs}
	case strings.HasPrefix(req.Query, "mutation InsertReadUpToIndex("):
		var rows []rutRow
		var raw []map[string]string
		_ = json.Unmarshal(req.Variables["objects"], &raw)
		for _, o := range raw {
			if f.refuse[o["messageSId"]] {
				_, _ = io.WriteString(w, `{"errors":[{"message":"Foreign key violation"}]}`)
				return
			}
			rows = append(rows, rutRow{RegistrantID: o["registrantId"], ChatID: o["chatId"], MessageSID: o["messageSId"]})
		}
		f.rows = append(f.rows, rows)
		if f.upserted != nil {
			f.upserted <- struct{}{}
		}
		data = map[string]any{"insert_chat_ReadUpToIndex": map[string]any{"affected_rows": len(rows)}}
	default:
		_, _ = io.WriteString(w, `{"errors":[{"message":"unexpected document"}]}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (f *rutHasura) requests() []gqlRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func (f *rutHasura) upserts() [][]rutRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rows)
}

// newRUTPlugin starts a plugin in Hasura mode against f.
func newRUTPlugin(t *testing.T, f http.Handler, cfg map[string]any) (*Plugin, *sdktest.Host) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	full := map[string]any{"graphql_url": srv.URL}
	for k, v := range cfg {
		full[k] = v
	}
	return newTestPlugin(t, full)
}

// addRecent fills chat1's window with m0 (oldest) .. m(n-1).
func addRecent(t *testing.T, h *sdktest.Host, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := h.Redis().ZAdd(recentMessagesKey(chat1), float64(1000+i), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// requestCount asks alice's unread count of chat1 and returns the last update.
func requestCount(t *testing.T, p *Plugin, h *sdktest.Host) string {
	t.Helper()
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventUnreadCountRequest, chat1); err != nil {
		t.Fatal(err)
	}
	ups := emitsNamed(h, "chat.unreadCount.update")
	if len(ups) == 0 {
		t.Fatal("no chat.unreadCount.update")
	}
	var args []string
	_ = json.Unmarshal([]byte(argsJSON(ups[len(ups)-1])), &args)
	if len(args) != 2 || args[0] != chat1 {
		t.Fatalf("update args = %s", argsJSON(ups[len(ups)-1]))
	}
	return args[1]
}

func TestReadUpToLoadedFromHasuraOnMiss(t *testing.T) {
	tests := []struct {
		name    string
		index   map[string]string
		want    string
		wantSID string
		wantTTL time.Duration
	}{
		{"found", map[string]string{readUpToMember(chat1, "alice"): "m2"}, "2", "m2", readUpToTTL},
		{"none", nil, "5", "", readUpToMissTTL},
		{"null messageSId", map[string]string{readUpToMember(chat1, "alice"): "null"}, "5", "", readUpToMissTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &rutHasura{index: tt.index, registrants: map[string]string{"alice": regAlice}}
			p, h := newRUTPlugin(t, f, nil)
			addRecent(t, h, 5)
			if got := requestCount(t, p, h); got != tt.want {
				t.Errorf("count = %q, want %q", got, tt.want)
			}
			reqs := f.requests()
			if len(reqs) != 1 || !strings.HasPrefix(reqs[0].Query, "query ReadUpToIndex(") ||
				string(reqs[0].Variables["chatId"]) != `"`+chat1+`"` || string(reqs[0].Variables["userId"]) != `"alice"` {
				t.Fatalf("requests = %+v, want one ReadUpToIndex(chat1, alice)", reqs)
			}
			// Cached with the shape setReadUpTo writes.
			v, err := h.Redis().Get(readUpToKey(chat1, "alice"))
			if err != nil {
				t.Fatalf("index not cached: %v", err)
			}
			want, _ := marshalJSON(readUpTo{ChatID: chat1, UserID: "alice", MessageSID: tt.wantSID})
			if v != string(want) {
				t.Errorf("cached %s, want %s", v, want)
			}
			if ttl := h.Redis().TTL(readUpToKey(chat1, "alice")); ttl != tt.wantTTL {
				t.Errorf("cache TTL = %v, want %v", ttl, tt.wantTTL)
			}
			// The next count uses the cache.
			if got := requestCount(t, p, h); got != tt.want {
				t.Errorf("second count = %q, want %q", got, tt.want)
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d Hasura requests after a cache hit, want 1", n)
			}
		})
	}
}

// A load never overwrites an index set meanwhile (SET NX).
func TestReadUpToLoadKeepsNewerIndex(t *testing.T) {
	f := &rutHasura{index: map[string]string{readUpToMember(chat1, "alice"): "m1"}}
	p, h := newRUTPlugin(t, f, nil)
	if err := p.setReadUpTo(context.Background(), chat1, "alice", "m4"); err != nil {
		t.Fatal(err)
	}
	if sid := p.loadReadUpTo(context.Background(), chat1, "alice"); sid != "m1" {
		t.Fatalf("loaded %q", sid)
	}
	v, _ := h.Redis().Get(readUpToKey(chat1, "alice"))
	if !strings.Contains(v, `"m4"`) {
		t.Errorf("cached %s, want the newer m4 kept", v)
	}
}

func TestReadUpToHasuraDownOnMiss(t *testing.T) {
	f := &rutHasura{down: true}
	p, h := newRUTPlugin(t, f, nil)
	addRecent(t, h, 5)
	if got := requestCount(t, p, h); got != "5" {
		t.Errorf("count = %q, want 5 (no index)", got)
	}
	if len(f.requests()) != 1 {
		t.Errorf("requests = %d, want 1", len(f.requests()))
	}
	if h.Redis().Exists(readUpToKey(chat1, "alice")) {
		t.Error("a failed load was cached")
	}
}

func TestSetReadUpToMarksModified(t *testing.T) {
	f := &rutHasura{}
	p, h := newRUTPlugin(t, f, nil)
	addRecent(t, h, 5)
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventUnreadCountSetReadUpTo, chat1, "m3"); err != nil {
		t.Fatal(err)
	}
	ok, err := h.Redis().SIsMember(readUpToModifiedKey, readUpToMember(chat1, "alice"))
	if err != nil || !ok {
		t.Errorf("%s not in %s (err %v)", readUpToMember(chat1, "alice"), readUpToModifiedKey, err)
	}
	if got := requestCount(t, p, h); got != "1" {
		t.Errorf("count = %q, want 1", got)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d Hasura requests, want none (the index was set)", n)
	}
}

func TestReadUpToWriteback(t *testing.T) {
	f := &rutHasura{registrants: map[string]string{"alice": regAlice, "bob": regBob}}
	p, h := newRUTPlugin(t, f, nil)
	ctx := context.Background()
	for _, s := range []struct{ chat, user, sid string }{
		{chat1, "alice", sid1}, {chat2, "alice", sid2}, {chat1, "bob", sid2},
		{chat1, "nobody", sid1}, // no registrant: skipped, as the original
	} {
		if err := p.setReadUpTo(ctx, s.chat, s.user, s.sid); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.writeBackReadUpTo(ctx); err != nil {
		t.Fatal(err)
	}
	ups := f.upserts()
	if len(ups) != 1 {
		t.Fatalf("%d upserts, want 1", len(ups))
	}
	got := ups[0]
	slices.SortFunc(got, func(a, b rutRow) int { return strings.Compare(a.ChatID+a.RegistrantID, b.ChatID+b.RegistrantID) })
	want := []rutRow{
		{RegistrantID: regAlice, ChatID: chat1, MessageSID: sid1},
		{RegistrantID: regBob, ChatID: chat1, MessageSID: sid2},
		{RegistrantID: regAlice, ChatID: chat2, MessageSID: sid2},
	}
	if !slices.Equal(got, want) {
		t.Errorf("upserted %+v, want %+v", got, want)
	}
	for _, r := range f.requests() {
		if strings.HasPrefix(r.Query, "mutation") && (r.Query != mInsertReadUpToIndex ||
			!strings.Contains(r.Query, "constraint: ReadUpToIndex_pkey, update_columns: [messageSId]")) {
			t.Errorf("mutation %s", r.Query)
		}
	}
	if h.Redis().Exists(readUpToModifiedKey) {
		m, _ := h.Redis().Members(readUpToModifiedKey)
		t.Errorf("modified set not emptied: %v", m)
	}
	// Nothing left: the next tick writes nothing.
	n := len(f.requests())
	if err := p.writeBackReadUpTo(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.requests()) != n {
		t.Error("an empty tick made requests")
	}
}

func TestReadUpToWritebackFailurePutsBack(t *testing.T) {
	f := &rutHasura{registrants: map[string]string{"alice": regAlice, "bob": regBob}, down: true}
	p, h := newRUTPlugin(t, f, nil)
	ctx := context.Background()
	_ = p.setReadUpTo(ctx, chat1, "alice", sid1)
	_ = p.setReadUpTo(ctx, chat1, "bob", sid2)
	if err := p.writeBackReadUpTo(ctx); err == nil {
		t.Error("no error with Hasura down")
	}
	m, _ := h.Redis().Members(readUpToModifiedKey)
	slices.Sort(m)
	if want := []string{readUpToMember(chat1, "alice"), readUpToMember(chat1, "bob")}; !slices.Equal(m, want) {
		t.Errorf("modified set = %v, want %v", m, want)
	}
	// Up again: the same entries are written.
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	if err := p.writeBackReadUpTo(ctx); err != nil {
		t.Fatal(err)
	}
	if ups := f.upserts(); len(ups) != 1 || len(ups[0]) != 2 {
		t.Errorf("upserts = %+v, want one of 2 rows", ups)
	}
}

// A row Hasura refuses is isolated: the others are written; it is retried
// once, then dropped.
func TestReadUpToWritebackRefusedRow(t *testing.T) {
	f := &rutHasura{registrants: map[string]string{"alice": regAlice, "bob": regBob}, refuse: map[string]bool{sid2: true}}
	p, h := newRUTPlugin(t, f, nil)
	ctx := context.Background()
	_ = p.setReadUpTo(ctx, chat1, "alice", sid1)
	_ = p.setReadUpTo(ctx, chat1, "bob", sid2)
	if err := p.writeBackReadUpTo(ctx); err == nil {
		t.Error("no error for a refused row")
	}
	if ups := f.upserts(); len(ups) != 1 || len(ups[0]) != 1 || ups[0][0].MessageSID != sid1 {
		t.Errorf("upserts = %+v, want alice's row alone", ups)
	}
	if m, _ := h.Redis().Members(readUpToModifiedKey); !slices.Equal(m, []string{readUpToMember(chat1, "bob")}) {
		t.Errorf("modified set = %v, want bob's entry back", m)
	}
	_ = p.writeBackReadUpTo(ctx)
	if h.Redis().Exists(readUpToModifiedKey) {
		t.Error("a row refused twice was kept")
	}
}

// The loop runs the writeback on its own in Hasura mode.
func TestReadUpToWritebackLoop(t *testing.T) {
	f := &rutHasura{registrants: map[string]string{"alice": regAlice}, upserted: make(chan struct{}, 10)}
	p, _ := newRUTPlugin(t, f, map[string]any{"read_up_to_writeback_interval": "100ms"})
	if err := p.setReadUpTo(context.Background(), chat1, "alice", sid1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.upserted:
	case <-time.After(30 * time.Second):
		t.Fatal("the loop did not write the index back")
	}
}

// countingTransport counts the HTTP requests it is asked to make.
type countingTransport struct {
	mu sync.Mutex
	n  int
}

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return nil, errors.New("no HTTP in static mode")
}

// Without graphql_url nothing changes: no modified set, no Hasura request.
func TestReadUpToStaticMode(t *testing.T) {
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	h.Dir.CanSelectChatFunc = func(context.Context, sdk.Socket, string) (bool, error) { return true, nil }
	rt := &countingTransport{}
	p := New()
	p.httpClient = &http.Client{Transport: rt}
	sdktest.Start(t, context.Background(), p, h, map[string]any{"notify_delay": "0s", "read_up_to_writeback_interval": "100ms"})
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	addRecent(t, h, 5)
	if got := requestCount(t, p, h); got != "5" {
		t.Errorf("count = %q, want 5", got)
	}
	if h.Redis().Exists(readUpToKey(chat1, "alice")) {
		t.Error("static mode cached a missing index")
	}
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventUnreadCountSetReadUpTo, chat1, "m3"); err != nil {
		t.Fatal(err)
	}
	if h.Redis().Exists(readUpToModifiedKey) {
		t.Error("static mode marked the index modified (nothing would ever pop it)")
	}
	if got := requestCount(t, p, h); got != "1" {
		t.Errorf("count = %q, want 1", got)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.n != 0 {
		t.Errorf("%d HTTP requests in static mode", rt.n)
	}
}

func TestReadUpToIntervalConfig(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil || c.ReadUpToWritebackInterval.D != 3*time.Minute {
		t.Errorf("default = %v (%v), want 3m", c.ReadUpToWritebackInterval.D, err)
	}
	for _, bad := range []string{`{"read_up_to_writeback_interval":"0s"}`, `{"read_up_to_writeback_interval":"48h"}`, `{"read_up_to_writeback_interval":3}`} {
		if _, err := parseConfig(json.RawMessage(bad)); err == nil || !strings.Contains(err.Error(), "read_up_to_writeback_interval") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

// A writer that popped entries and died before writing them (SIGKILL of the
// plugin process mid-batch): its claim runs out and the next writeback, on
// any instance, writes the entries.
func TestReadUpToWritebackAfterDeadWriter(t *testing.T) {
	f := &rutHasura{registrants: map[string]string{"alice": regAlice, "bob": regBob}}
	p, h := newRUTPlugin(t, f, nil)
	ctx := context.Background()
	_ = p.setReadUpTo(ctx, chat1, "alice", sid1)
	_ = p.setReadUpTo(ctx, chat1, "bob", sid2)
	start := time.Now()
	claimed, err := sdk.Strings(h.Store().Eval(ctx, claimReadUpToScript, []string{readUpToModifiedKey, readUpToWritingKey},
		start.UnixMilli(), start.Add(readUpToClaim).UnixMilli(), 1, "dead"))
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	// The dead writer's entry is neither written nor lost while its claim lasts.
	if err := p.writeBackReadUpTo(ctx); err != nil {
		t.Fatal(err)
	}
	if ups := f.upserts(); len(ups) != 1 || len(ups[0]) != 1 {
		t.Fatalf("upserts = %+v, want the one unclaimed row", ups)
	}
	if m, _ := h.Redis().ZMembers(readUpToWritingKey); !slices.Equal(m, []string{"dead\n" + claimed[0]}) {
		t.Fatalf("claims = %q, want only the dead writer's", m)
	}
	// Its claim ran out: the entry goes back and is written.
	p.now = func() time.Time { return start.Add(readUpToClaim + time.Second) }
	if err := p.writeBackReadUpTo(ctx); err != nil {
		t.Fatal(err)
	}
	want := rutRow{RegistrantID: regAlice, ChatID: chat1, MessageSID: sid1}
	if claimed[0] == readUpToMember(chat1, "bob") {
		want = rutRow{RegistrantID: regBob, ChatID: chat1, MessageSID: sid2}
	}
	if ups := f.upserts(); len(ups) != 2 || !slices.Equal(ups[1], []rutRow{want}) {
		t.Fatalf("upserts = %+v, want the dead writer's row %+v second", ups, want)
	}
	if h.Redis().Exists(readUpToWritingKey) || h.Redis().Exists(readUpToModifiedKey) {
		t.Error("claims or modified entries left after the writeback")
	}
}

// The claim and release scripts on a real Redis (own keys, so no other test
// is disturbed): SPOP with a count inside a script, put-back, stale claims.
func TestReadUpToClaimScriptsRealRedis(t *testing.T) {
	rdb := realRedisClient(t)
	ctx := context.Background()
	pfx := "rt-chat-test-" + randomUUID()
	keys := []string{pfx + ":modified", pfx + ":writing"}
	defer rdb.Del(ctx, keys...)
	st := sdktest.GoRedisStore{RDB: rdb}
	if err := rdb.SAdd(ctx, keys[0], "a", "b", "c").Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	claim := func(at int64, n int, batch string) []string {
		t.Helper()
		v, err := sdk.Strings(st.Eval(ctx, claimReadUpToScript, keys, at, at+60_000, n, batch))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(v)
		return v
	}
	got := claim(now, 2, "b1")
	if len(got) != 2 {
		t.Fatalf("claimed %v, want 2", got)
	}
	// b1 puts its first entry back and is done with the second.
	if _, err := st.Eval(ctx, releaseReadUpToScript, keys, "b1", 1, got[0], got[1]); err != nil {
		t.Fatal(err)
	}
	if n := rdb.ZCard(ctx, keys[1]).Val(); n != 0 {
		t.Fatalf("%d claims left after release", n)
	}
	left := rdb.SMembers(ctx, keys[0]).Val()
	slices.Sort(left)
	if len(left) != 2 || !slices.Contains(left, got[0]) || slices.Contains(left, got[1]) {
		t.Fatalf("modified = %v after putting back %s and finishing %s", left, got[0], got[1])
	}
	// b2 claims both and dies; a writer after its claim ran out gets them.
	if dead := claim(now, 10, "b2"); !slices.Equal(dead, left) {
		t.Fatalf("b2 claimed %v, want %v", dead, left)
	}
	if v := claim(now+1000, 10, "b3"); len(v) != 0 {
		t.Fatalf("b3 took %v while b2's claim lasts", v)
	}
	if v := claim(now+61_000, 10, "b4"); !slices.Equal(v, left) {
		t.Fatalf("after b2's claim ran out b4 claimed %v, want %v", v, left)
	}
	if m := rdb.ZRange(ctx, keys[1], 0, -1).Val(); len(m) != 2 || !strings.HasPrefix(m[0], "b4\n") {
		t.Fatalf("claims = %q, want b4's two", m)
	}
}
