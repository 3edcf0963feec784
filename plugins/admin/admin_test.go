package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func start(t *testing.T, cfg string) (*Plugin, *sdktest.Host) {
	t.Helper()
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	p := New()
	if err := p.Start(context.Background(), h, json.RawMessage(cfg)); err != nil {
		t.Fatal(err)
	}
	return p, h
}

func do(t *testing.T, p *Plugin, method, target string, header http.Header, body string) sdk.HTTPResponse {
	t.Helper()
	return doFrom(t, p, "10.0.0.1:1234", method, target, header, body)
}

// doFrom is do from the TCP peer remote.
func doFrom(t *testing.T, p *Plugin, remote, method, target string, header http.Header, body string) sdk.HTTPResponse {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	if header == nil {
		header = http.Header{}
	}
	resp, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{
		Method: method, Path: u.Path, Query: u.Query(), Header: header, Body: []byte(body), RemoteAddr: remote,
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestSecrets(t *testing.T) {
	p, _ := start(t, `{"summary_secret":"s3cret","flush_secret":"f1ush","failures_per_minute":100}`)
	none, _ := start(t, `{}`)
	hdr := func(k, v string) http.Header { h := http.Header{}; h.Set(k, v); return h }
	cases := []struct {
		name   string
		p      *Plugin
		path   string
		header http.Header
		status int
		body   string
	}{
		{"summary no secret configured", none, "/summary", nil, 403, "No secret configured"},
		{"flush no secret configured", none, "/flush", nil, 403, "No secret configured"},
		{"summary missing", p, "/summary", nil, 403, "Secret mismatch"},
		{"summary wrong header", p, "/summary", hdr("x-hasura-presence-summary-secret", "nope"), 403, "Secret mismatch"},
		{"summary flush secret is not summary secret", p, "/summary", hdr("x-hasura-presence-summary-secret", "f1ush"), 403, "Secret mismatch"},
		{"summary header ok", p, "/summary", hdr("x-hasura-presence-summary-secret", "s3cret"), 200, `"total_unique_tabs":0`},
		{"summary query ok", p, "/summary?secret=s3cret", nil, 200, `"pages":{}`},
		{"query wins over header", p, "/summary?secret=bad", hdr("x-hasura-presence-summary-secret", "s3cret"), 403, "Secret mismatch"},
		{"flush header ok", p, "/flush", hdr("x-hasura-presence-flush-secret", "f1ush"), 200, `{"ok":"OK"}`},
		{"flush wrong", p, "/flush", hdr("x-hasura-presence-flush-secret", "s3cret"), 403, "Secret mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, c.p, http.MethodPost, c.path, c.header, "")
			if r.Status != c.status || !strings.Contains(string(r.Body), c.body) {
				t.Fatalf("got %d %q, want %d containing %q", r.Status, r.Body, c.status, c.body)
			}
		})
	}
}

func TestFailedAttemptsAreRateLimited(t *testing.T) {
	p, _ := start(t, `{"summary_secret":"s3cret","failures_per_minute":3}`)
	codes := []int{}
	for i := 0; i < 5; i++ {
		codes = append(codes, do(t, p, http.MethodPost, "/summary?secret=wrong", nil, "").Status)
	}
	if codes[0] != 403 || codes[4] != 429 {
		t.Fatalf("codes %v: want 403 first and 429 once over the limit", codes)
	}
	// Even the right secret waits out the limit from that address.
	if c := do(t, p, http.MethodPost, "/summary?secret=s3cret", nil, "").Status; c != 429 {
		t.Fatalf("right secret while limited: %d", c)
	}
}

func seedPresence(t *testing.T, h *sdktest.Host) {
	t.Helper()
	ctx := context.Background()
	cmds := [][]any{
		{"SADD", "PresenceList:aaa", "alice", "bob"},
		{"SADD", "PresenceList:bbb", "alice"},
		{"ZADD", "PresenceList:aaa:UserSessions:alice", 1, "sock1"},
		{"SADD", "SessionLists:sock1", "aaa"},
		{"ZADD", "Presence.Sockets", 1, "sock1"},
		{"SET", "unrelated", "x"},
	}
	for _, c := range cmds {
		if _, err := h.Store().Do(ctx, c...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSummaryAndFlush(t *testing.T) {
	p, h := start(t, `{"summary_secret":"s","flush_secret":"f"}`)
	seedPresence(t, h)
	r := do(t, p, http.MethodPost, "/summary?secret=s", nil, `{"action":{"name":"presence_Summary"},"input":{}}`)
	var s Summary
	if err := json.Unmarshal(r.Body, &s); err != nil {
		t.Fatal(err)
	}
	want := Summary{TotalUniqueTabs: 3, TotalUniqueUserIDs: 2, Pages: map[string]int{"PresenceList:aaa": 2, "PresenceList:bbb": 1}}
	if s.TotalUniqueTabs != want.TotalUniqueTabs || s.TotalUniqueUserIDs != want.TotalUniqueUserIDs || len(s.Pages) != 2 ||
		s.Pages["PresenceList:aaa"] != 2 || s.Pages["PresenceList:bbb"] != 1 {
		t.Fatalf("summary %+v, want %+v", s, want)
	}

	r = do(t, p, http.MethodPost, "/flush?secret=f", nil, "")
	if r.Status != 200 || string(r.Body) != `{"ok":"OK"}` {
		t.Fatalf("flush: %d %s", r.Status, r.Body)
	}
	keys, err := sdk.Strings(h.Store().Do(context.Background(), "KEYS", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "unrelated" {
		t.Fatalf("after flush keys = %v, want only the unrelated key", keys)
	}
}

func TestAdminPageLogin(t *testing.T) {
	off, _ := start(t, `{}`)
	if r := do(t, off, http.MethodGet, "/admin", nil, ""); r.Status != 403 {
		t.Fatalf("admin without secret configured: %d", r.Status)
	}
	p, h := start(t, `{"admin_secret":"adm","failures_per_minute":100}`)
	seedPresence(t, h)
	r := do(t, p, http.MethodGet, "/admin", nil, "")
	if r.Status != 200 || !strings.Contains(string(r.Body), `action="/admin/login"`) {
		t.Fatalf("unauthenticated /admin should show the login form: %d", r.Status)
	}
	if r := do(t, p, http.MethodGet, "/admin/api/state", nil, ""); r.Status != 401 {
		t.Fatalf("state without login: %d", r.Status)
	}
	if r := do(t, p, http.MethodPost, "/admin/login", nil, "secret=wrong"); r.Status != 403 || !strings.Contains(string(r.Body), "Wrong secret") {
		t.Fatalf("wrong login: %d", r.Status)
	}
	r = do(t, p, http.MethodPost, "/admin/login", nil, "secret=adm")
	if r.Status != http.StatusSeeOther {
		t.Fatalf("login: %d", r.Status)
	}
	cookie := r.Header.Get("Set-Cookie")
	if !strings.Contains(cookie, "HttpOnly") || strings.Contains(cookie, "adm;") {
		t.Fatalf("cookie %q: want HttpOnly and not the secret itself", cookie)
	}
	hdr := http.Header{"Cookie": {strings.Split(cookie, ";")[0]}}
	r = do(t, p, http.MethodGet, "/admin/api/state", hdr, "")
	if r.Status != 200 {
		t.Fatalf("state with cookie: %d %s", r.Status, r.Body)
	}
	var st State
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Totals.Users != 2 || len(st.Pages) != 2 || st.Pages[0].Key != "PresenceList:aaa" || st.Pages[0].Users != 2 {
		t.Fatalf("state %+v", st)
	}
	if r := do(t, p, http.MethodGet, "/admin/static/app.js", nil, ""); r.Status != 200 || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("static js: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
	if r := do(t, p, http.MethodGet, "/admin/static/../admin.go", nil, ""); r.Status != 404 {
		t.Fatalf("path traversal: %d", r.Status)
	}
}

// TestWrongAdminHeaderIsRateLimited: x-admin-secret carries the secret
// itself, so guessing it counts in the same limiter as the login form and
// /summary.
func TestWrongAdminHeaderIsRateLimited(t *testing.T) {
	p, _ := start(t, `{"admin_secret":"adm","summary_secret":"s","failures_per_minute":3}`)
	wrong := http.Header{"X-Admin-Secret": {"guess"}}
	var codes []int
	for i := 0; i < 5; i++ {
		codes = append(codes, do(t, p, http.MethodGet, "/admin/api/state", wrong, "").Status)
	}
	if fmt.Sprint(codes) != "[401 401 401 429 429]" {
		t.Fatalf("wrong x-admin-secret codes %v, want [401 401 401 429 429]", codes)
	}
	if r := do(t, p, http.MethodGet, "/admin", wrong, ""); r.Status != 429 || !strings.Contains(string(r.Body), "Too many failed attempts") {
		t.Fatalf("/admin while limited: %d", r.Status)
	}
	right := http.Header{"X-Admin-Secret": {"adm"}}
	if r := do(t, p, http.MethodGet, "/admin/api/state", right, ""); r.Status != 429 {
		t.Fatalf("right header while limited: %d, want 429", r.Status)
	}
	if r := do(t, p, http.MethodPost, "/admin/login", nil, "secret=adm"); r.Status != 429 {
		t.Fatalf("login while limited by header failures: %d, want 429", r.Status)
	}
	if r := do(t, p, http.MethodPost, "/summary?secret=s", nil, ""); r.Status != 429 {
		t.Fatalf("/summary while limited by header failures: %d, want 429", r.Status)
	}
	if r := doFrom(t, p, "10.0.0.2:1", http.MethodGet, "/admin/api/state", right, ""); r.Status != 200 {
		t.Fatalf("right header from another address: %d %s", r.Status, r.Body)
	}
}

// TestForwardedFor: X-Forwarded-For names the client only when the config
// says a proxy appends it; otherwise a client rotating it is still limited
// by its TCP peer address.
func TestForwardedFor(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }

	p, _ := start(t, `{"summary_secret":"s","failures_per_minute":3}`)
	var codes []int
	for i := 0; i < 5; i++ {
		codes = append(codes, do(t, p, http.MethodPost, "/summary?secret=wrong", xff(fmt.Sprintf("192.0.2.%d", i)), "").Status)
	}
	if fmt.Sprint(codes) != "[403 403 403 429 429]" {
		t.Fatalf("untrusted, rotating X-Forwarded-For: codes %v, want [403 403 403 429 429]", codes)
	}

	// Trusted: the proxy 10.0.0.1 appends the client; what the client sent
	// before it does not matter, and clients behind the proxy are apart.
	p, _ = start(t, `{"summary_secret":"s","failures_per_minute":3,"trust_forwarded_for":true}`)
	codes = nil
	for i := 0; i < 5; i++ {
		codes = append(codes, do(t, p, http.MethodPost, "/summary?secret=wrong", xff(fmt.Sprintf("192.0.2.%d, 203.0.113.7", i)), "").Status)
	}
	if fmt.Sprint(codes) != "[403 403 403 429 429]" {
		t.Fatalf("trusted, client-chosen entries rotating: codes %v, want [403 403 403 429 429]", codes)
	}
	if r := do(t, p, http.MethodPost, "/summary?secret=s", xff("203.0.113.8"), ""); r.Status != 200 {
		t.Fatalf("trusted, another client behind the same proxy: %d, want 200", r.Status)
	}
	// A second header line is part of the same list: its last entry counts.
	two := http.Header{"X-Forwarded-For": {"203.0.113.8", "203.0.113.7"}}
	if r := do(t, p, http.MethodPost, "/summary?secret=s", two, ""); r.Status != 429 {
		t.Fatalf("trusted, limited client last on a second header line: %d, want 429", r.Status)
	}
	if r := doFrom(t, p, "10.0.0.9:1", http.MethodPost, "/summary?secret=s", nil, ""); r.Status != 200 {
		t.Fatalf("trusted, no X-Forwarded-For: TCP peer: %d, want 200", r.Status)
	}
}

// TestIPv6LimitedPer64: the addresses of one IPv6 /64 share one allowance
// (a host holds the whole prefix), other prefixes and IPv4 do not.
func TestIPv6LimitedPer64(t *testing.T) {
	p, _ := start(t, `{"summary_secret":"s","failures_per_minute":3}`)
	var codes []int
	for i := range 5 {
		codes = append(codes, doFrom(t, p, fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1), http.MethodPost, "/summary?secret=wrong", nil, "").Status)
	}
	if fmt.Sprint(codes) != "[403 403 403 429 429]" {
		t.Fatalf("rotating within one /64: codes %v, want [403 403 403 429 429]", codes)
	}
	for _, ok := range []string{"[2001:db8:1:3::1]:4000", "192.0.2.1:4000", "[::ffff:192.0.2.2]:4000"} {
		if r := doFrom(t, p, ok, http.MethodPost, "/summary?secret=s", nil, ""); r.Status != 200 {
			t.Fatalf("%s (another prefix): %d, want 200", ok, r.Status)
		}
	}
	for _, k := range [][2]string{
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::ffff:192.0.2.2", "192.0.2.2"},
		{"192.0.2.3", "192.0.2.3"},
		{"not an address", "not an address"},
		{strings.Repeat("x", 100), strings.Repeat("x", 64)},
	} {
		if got := limitKey(k[0]); got != k[1] {
			t.Errorf("limitKey(%q) = %q, want %q", k[0], got, k[1])
		}
	}
}

// TestOverflowKeepsLimitedAddresses: failing from more addresses than the
// table holds must not lift the limit of an address already limited.
func TestOverflowKeepsLimitedAddresses(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	fail := func(p *Plugin, remote string) int {
		return doFrom(t, p, remote, http.MethodPost, "/summary?secret=wrong", nil, "").Status
	}

	p, _ := start(t, `{"summary_secret":"s","failures_per_minute":3}`)
	p.now = func() time.Time { return now } // nothing comes back during the test
	const limited = "198.51.100.1:1"
	for i := 0; i < 3; i++ {
		fail(p, limited)
	}
	if c := fail(p, limited); c != 429 {
		t.Fatalf("setup: %d, want 429", c)
	}
	// The limited address is the oldest entry (an attempt comes back only
	// every 20 s, so it stays limited).
	now = now.Add(time.Second)
	for i := 0; i <= maxTracked; i++ {
		if c := fail(p, fmt.Sprintf("10.%d.%d.1:1", i/256, i%256)); c != 403 {
			t.Fatalf("address %d, first failure: %d", i, c)
		}
	}
	if c := fail(p, limited); c != 429 {
		t.Fatalf("limited address after %d others failed: %d, want still 429", maxTracked+1, c)
	}
	if n := len(p.failures); n > maxTracked {
		t.Fatalf("%d addresses tracked, want at most %d", n, maxTracked)
	}

	// Every tracked address limited: new ones share one more limiter
	// rather than pushing a limited one out.
	p, _ = start(t, `{"summary_secret":"s","failures_per_minute":1}`)
	p.now = func() time.Time { return now }
	for i := 0; i < maxTracked; i++ {
		fail(p, fmt.Sprintf("10.%d.%d.1:1", i/256, i%256))
	}
	if a, b, c := fail(p, "192.0.2.1:1"), fail(p, "192.0.2.2:1"), fail(p, "10.0.0.1:1"); a != 403 || b != 429 || c != 429 {
		t.Fatalf("table full of limited addresses: new %d, new %d, tracked %d; want 403 429 429", a, b, c)
	}
	// A minute later every allowance is back and the table makes room.
	now = now.Add(time.Minute)
	if c := fail(p, "192.0.2.3:1"); c != 403 || len(p.failures) != 1 {
		t.Fatalf("a minute later: %d with %d tracked, want 403 with 1", c, len(p.failures))
	}
}
