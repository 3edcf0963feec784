package push

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
)

const testAdminSecret = "adm1n"

// fakeHasura answers the PushNotificationSubscriptions query from rows, and
// counts the queries per user.
type fakeHasura struct {
	srv *httptest.Server
	t   testing.TB

	mu     sync.Mutex
	rows   map[string][]map[string]any // by userId
	calls  map[string]int
	status int           // answer this status instead when not 0
	gate   chan struct{} // when set, answers wait for it to close
}

func newFakeHasura(t testing.TB) *fakeHasura {
	t.Helper()
	fh := &fakeHasura{t: t, rows: map[string][]map[string]any{}, calls: map[string]int{}}
	fh.srv = httptest.NewServer(http.HandlerFunc(fh.serve))
	t.Cleanup(fh.srv.Close)
	return fh
}

func (fh *fakeHasura) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		fh.t.Errorf("fake hasura: request %q: %v", body, err)
	}
	if r.Method != http.MethodPost || r.Header.Get("X-Hasura-Admin-Secret") != testAdminSecret {
		fh.t.Errorf("fake hasura: %s with admin secret %q", r.Method, r.Header.Get("X-Hasura-Admin-Secret"))
	}
	if req.Query != gqlSubscriptions {
		fh.t.Errorf("fake hasura: query %q", req.Query)
	}
	user, _ := req.Variables["userId"].(string)
	fh.mu.Lock()
	fh.calls[user]++
	status, gate, rows := fh.status, fh.gate, fh.rows[user]
	fh.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if rows == nil {
		rows = []map[string]any{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"PushNotificationSubscription": rows}})
}

// add gives user a row in Hasura (with the columns the query selects).
func (fh *fakeHasura) add(user, endpoint string, s subscriber) {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	fh.rows[user] = append(fh.rows[user], map[string]any{"userId": user, "endpoint": endpoint, "p256dh": s.P256dh, "auth": s.Auth})
}

func (fh *fakeHasura) queries(user string) int {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return fh.calls[user]
}

func (fh *fakeHasura) url() string { return fh.srv.URL + "/v1/graphql" }

// anyURLClient sends every request to the fake, whatever its URL, so a
// query made without graphql_url would still be seen.
func (fh *fakeHasura) anyURLClient() *http.Client {
	target, _ := url.Parse(fh.srv.URL)
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host = target.Scheme, target.Host
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// newHasuraFixture is a fixture in Hasura mode against fh.
func newHasuraFixture(t testing.TB, fh *fakeHasura) *fixture {
	t.Helper()
	return newFixtureWith(t, map[string]any{"graphql_url": fh.url(), "admin_secret": testAdminSecret},
		func(p *Plugin) { p.gqlClient = fh.anyURLClient() })
}

// decryptOne checks the push service got exactly one message for name and
// that s decrypts it to want.
func (f *fixture) decryptOne(t *testing.T, name string, s subscriber, want Notification) {
	t.Helper()
	reqs := f.ps.requests(name)
	if len(reqs) != 1 {
		t.Fatalf("push service got %d requests for %s, want 1", len(reqs), name)
	}
	verifyVAPID(t, reqs[0].Header, f.keys, origin(f.ps.srv.URL), testSubject)
	plain, err := s.decrypt(reqs[0].Body)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	var got Notification
	if err := json.Unmarshal(plain, &got); err != nil || got != want {
		t.Fatalf("decrypted %q (%v), want %+v", plain, err, want)
	}
}

// socketOnly checks the notifications so far went to the user's sockets.
func (f *fixture) socketOnly(t *testing.T, user string, n int) {
	t.Helper()
	emits := f.h.Emits()
	if len(emits) != n {
		t.Fatalf("%d socket emits, want %d: %+v", len(emits), n, emits)
	}
	for _, e := range emits {
		var got Notification
		if e.To != sdk.UserTarget(user) || e.Event != EventNotification || e.Arg(0, &got) != nil || got != testNotification {
			t.Fatalf("emit %+v", e)
		}
	}
}

func TestLoadFromHasura(t *testing.T) {
	fh := newFakeHasura(t)
	f := newHasuraFixture(t, fh)
	s := newSubscriber(t)
	fh.add("u1", f.ps.endpoint("a"), s)

	// The Store has never heard of u1 (as after a deploy or a flush).
	if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false); err != nil {
		t.Fatal(err)
	}
	f.decryptOne(t, "a", s, testNotification)
	if e := f.h.Emits(); len(e) != 0 {
		t.Errorf("socket emits = %+v, want none for a subscribed user", e)
	}
	if got := f.stored(t, "u1"); !slices.Equal(got, []string{f.ps.endpoint("a")}) {
		t.Errorf("stored = %v, want the Hasura row", got)
	}
	if ttl := f.h.Redis().TTL(LoadedKey("u1")); ttl != loadedTTL {
		t.Errorf("TTL of %s = %v, want %v", LoadedKey("u1"), ttl, loadedTTL)
	}

	// The webhook works on top of what was loaded: once the row is deleted
	// the user gets the socket event, without asking Hasura again.
	resp := f.hook(t, RouteSubscriptionChanged, subEvent("DELETE", row("u1", f.ps.endpoint("a"), s), nil))
	if resp.Status != 200 {
		t.Fatalf("delete: %d %s", resp.Status, resp.Body)
	}
	if err := f.deliver(t, Message{ID: "m2", UserID: "u1", Notification: testNotification}, false); err != nil {
		t.Fatal(err)
	}
	f.socketOnly(t, "u1", 1)
	if n := fh.queries("u1"); n != 1 {
		t.Errorf("%d Hasura queries, want 1", n)
	}
}

func TestLoadMergesWebhookEntries(t *testing.T) {
	// After a flush, the user subscribed a new browser (webhook) but the
	// old one is only in Hasura: both must get the message.
	fh := newFakeHasura(t)
	f := newHasuraFixture(t, fh)
	old, cur := newSubscriber(t), newSubscriber(t)
	fh.add("u1", f.ps.endpoint("old"), old)
	fh.add("u1", f.ps.endpoint("new"), cur)
	f.subscribe(t, "u1", "new", cur)
	if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false); err != nil {
		t.Fatal(err)
	}
	f.decryptOne(t, "old", old, testNotification)
	f.decryptOne(t, "new", cur, testNotification)
	if n := fh.queries("u1"); n != 1 {
		t.Errorf("%d Hasura queries, want 1", n)
	}
}

func TestLoadNoneIsCached(t *testing.T) {
	fh := newFakeHasura(t)
	f := newHasuraFixture(t, fh)
	for i := range 2 {
		if err := f.deliver(t, Message{ID: fmt.Sprint("m", i), UserID: "u1", Notification: testNotification}, false); err != nil {
			t.Fatal(err)
		}
	}
	f.socketOnly(t, "u1", 2)
	if n := fh.queries("u1"); n != 1 {
		t.Errorf("%d Hasura queries for two notifications, want 1", n)
	}
	if ttl := f.h.Redis().TTL(LoadedKey("u1")); ttl != noneTTL {
		t.Errorf("TTL of %s = %v, want %v (none is believed for a bounded time)", LoadedKey("u1"), ttl, noneTTL)
	}
	// A subscription made meanwhile is used at once.
	s := newSubscriber(t)
	f.subscribe(t, "u1", "a", s)
	if err := f.deliver(t, Message{ID: "m3", UserID: "u1", Notification: testNotification}, false); err != nil {
		t.Fatal(err)
	}
	f.decryptOne(t, "a", s, testNotification)
}

func TestLoadSkipsBadRows(t *testing.T) {
	fh := newFakeHasura(t)
	f := newHasuraFixture(t, fh)
	s := newSubscriber(t)
	fh.add("u1", "http://plain.example/x", s) // not https
	fh.add("u1", f.ps.endpoint("a"), subscriber{P256dh: "bad", Auth: s.Auth})
	if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false); err != nil {
		t.Fatal(err)
	}
	f.socketOnly(t, "u1", 1)
	if got := f.stored(t, "u1"); len(got) != 0 {
		t.Errorf("stored = %v, want nothing", got)
	}
}

func TestHasuraDown(t *testing.T) {
	for _, tt := range []struct {
		name string
		prep func(fh *fakeHasura) string // returns graphql_url
	}{
		{name: "connection refused", prep: func(fh *fakeHasura) string { fh.srv.Close(); return fh.url() }},
		{name: "500", prep: func(fh *fakeHasura) string {
			fh.mu.Lock()
			fh.status = http.StatusInternalServerError
			fh.mu.Unlock()
			return fh.url()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fh := newFakeHasura(t)
			gqlURL := tt.prep(fh)
			f := newFixtureWith(t, map[string]any{"graphql_url": gqlURL, "admin_secret": testAdminSecret}, nil)
			if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			f.socketOnly(t, "u1", 1)
			if f.h.Redis().Exists(LoadedKey("u1")) {
				t.Error("a failed lookup was cached")
			}
		})
	}
}

func TestStaticModeNoQuery(t *testing.T) {
	fh := newFakeHasura(t)
	s := newSubscriber(t)
	// Without graphql_url, even a client that would reach the fake Hasura
	// must not be used.
	f := newFixtureWith(t, nil, func(p *Plugin) { p.gqlClient = fh.anyURLClient() })
	fh.add("u1", f.ps.endpoint("a"), s)
	if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false); err != nil {
		t.Fatal(err)
	}
	f.socketOnly(t, "u1", 1)
	if n := fh.queries("u1"); n != 0 {
		t.Errorf("%d Hasura queries in static mode, want 0", n)
	}
	if f.h.Redis().Exists(LoadedKey("u1")) {
		t.Errorf("%s written in static mode", LoadedKey("u1"))
	}
}

func TestConcurrentLoadsShareOneQuery(t *testing.T) {
	fh := newFakeHasura(t)
	gate := make(chan struct{})
	fh.mu.Lock()
	fh.gate = gate
	fh.mu.Unlock()
	f := newHasuraFixture(t, fh)
	s := newSubscriber(t)
	fh.add("u1", f.ps.endpoint("a"), s)

	const n = 6
	errs := make(chan error, n)
	var finished atomic.Int32
	for i := range n {
		go func() {
			defer finished.Add(1)
			errs <- f.deliver(t, Message{ID: fmt.Sprint("m", i), UserID: "u1", Notification: testNotification}, false)
		}()
	}
	// Hold the queries until every delivery has joined the first one, or
	// made its own (lookups not shared), or finished without one.
	for f.p.loads.waiting("u1")+fh.queries("u1")+int(finished.Load()) < n {
		runtime.Gosched()
	}
	close(gate)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if q := fh.queries("u1"); q != 1 {
		t.Errorf("%d Hasura queries for %d concurrent deliveries, want 1", q, n)
	}
	if got := len(f.ps.requests("a")); got != n {
		t.Errorf("%d pushes, want %d", got, n)
	}
}

// The query must be the original's.
func TestQueryDocument(t *testing.T) {
	for _, want := range []string{"query PushNotificationSubscriptions($userId: String!)",
		"PushNotificationSubscription(where: {userId: {_eq: $userId}})", "userId", "endpoint", "p256dh", "auth"} {
		if !strings.Contains(gqlSubscriptions, want) {
			t.Errorf("query lacks %q", want)
		}
	}
}

// A webhook that lands while a load is asking Hasura wins: the load's
// answer, read before the change, must not put a deleted row back or an
// updated one's old keys.
func TestWebhookRacingLoadWins(t *testing.T) {
	for _, op := range []string{"DELETE", "UPDATE"} {
		t.Run(op, func(t *testing.T) {
			fh := newFakeHasura(t)
			gate := make(chan struct{})
			fh.mu.Lock()
			fh.gate = gate
			fh.mu.Unlock()
			f := newHasuraFixture(t, fh)
			old, cur := newSubscriber(t), newSubscriber(t)
			fh.add("u1", f.ps.endpoint("a"), old)

			done := make(chan error, 1)
			go func() { done <- f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false) }()
			for fh.queries("u1") == 0 {
				runtime.Gosched()
			}
			// Hasura answered the query with the old row; now the row changes.
			var ev map[string]any
			if op == "DELETE" {
				ev = subEvent("DELETE", row("u1", f.ps.endpoint("a"), old), nil)
			} else {
				ev = subEvent("UPDATE", row("u1", f.ps.endpoint("a"), old), row("u1", f.ps.endpoint("a"), cur))
			}
			if resp := f.hook(t, RouteSubscriptionChanged, ev); resp.Status != 200 {
				t.Fatalf("webhook: %d %s", resp.Status, resp.Body)
			}
			close(gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if op == "DELETE" {
				if got := f.stored(t, "u1"); len(got) != 0 {
					t.Fatalf("stored = %v after the DELETE, want nothing", got)
				}
				if n := len(f.ps.requests("a")); n != 0 {
					t.Fatalf("%d pushes to the deleted subscription", n)
				}
				f.socketOnly(t, "u1", 1)
				return
			}
			f.decryptOne(t, "a", cur, testNotification) // the new keys, not the loaded old ones
		})
	}
}
