package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// summary is the JSON of POST /summary.
type summary struct {
	TotalUniqueTabs    int            `json:"total_unique_tabs"`
	TotalUniqueUserIDs int            `json:"total_unique_user_ids"`
	Pages              map[string]int `json:"pages"`
}

// postSummary calls POST /summary and decodes the answer strictly: exactly
// the three keys of the original.
func postSummary(t *testing.T, base, query string, header map[string]string) summary {
	t.Helper()
	status, body := httpDo(t, http.MethodPost, base+"/summary"+query, header, "")
	if status != http.StatusOK {
		t.Fatalf("POST /summary%s: %d %q, want 200", query, status, body)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &keys); err != nil {
		t.Fatalf("POST /summary: not a JSON object: %v: %s", err, body)
	}
	if len(keys) != 3 || keys["total_unique_tabs"] == nil || keys["total_unique_user_ids"] == nil || keys["pages"] == nil {
		t.Fatalf("POST /summary: want exactly total_unique_tabs, total_unique_user_ids and pages: %s", body)
	}
	var s summary
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("POST /summary: %v: %s", err, body)
	}
	return s
}

// TestAdminSummaryFlush drives /summary and /flush with real clients present
// on pages, on a private Redis the test can inspect: counts and key names,
// the secret rules, and the re-announcement of live sockets after a flush.
func TestAdminSummaryFlush(t *testing.T) {
	t.Parallel()
	requireNode(t)
	redisURL, rdb := startRedis(t)
	sumSecret, flushSecret := "sum-"+randHex(t, 8), "flush-"+randHex(t, 8)
	s := launch(t, serverOpts{
		args: append([]string{"--set", "directory.conferences=demo"}, shortPresenceArgs()...),
		env:  map[string]string{"REDIS_URL": redisURL, "SECRET_FOR_SUMMARY": sumSecret, "SECRET_FOR_FLUSHING": flushSecret},
	})

	p1 := "/conference/demo/room/" + randHex(t, 4)
	p2 := "/schedule/" + randHex(t, 4) // not a conference page
	id1, id2 := listIDOf(p1), listIDOf(p2)
	h := startHolder(t, s.URL, []holdSpec{
		{User: "alice", Pages: []string{p1}},
		{User: "alice", Pages: []string{p1}}, // second tab
		{User: "bob", Pages: []string{p1, p2}},
	})
	live := summary{
		TotalUniqueTabs:    3, // the original's meaning: distinct users summed over pages
		TotalUniqueUserIDs: 2,
		Pages:              map[string]int{"PresenceList:" + id1: 2, "PresenceList:" + id2: 1},
	}

	// A ghost left behind by some earlier deployment: only a flush removes it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ghost := "PresenceList:" + strings.Repeat("0", 64)
	if err := rdb.SAdd(ctx, ghost, "ghost-user").Err(); err != nil {
		t.Fatalf("plant ghost: %v", err)
	}
	withGhost := summary{
		TotalUniqueTabs:    4,
		TotalUniqueUserIDs: 3,
		Pages:              map[string]int{"PresenceList:" + id1: 2, "PresenceList:" + id2: 1, ghost: 1},
	}

	hdr := map[string]string{"x-hasura-presence-summary-secret": sumSecret}
	if got := postSummary(t, s.URL, "", hdr); !reflect.DeepEqual(got, withGhost) {
		t.Fatalf("summary (header secret) = %+v, want %+v", got, withGhost)
	}
	if got := postSummary(t, s.URL, "?secret="+sumSecret, nil); !reflect.DeepEqual(got, withGhost) {
		t.Fatalf("summary (?secret=) = %+v, want %+v", got, withGhost)
	}
	// The query parameter wins over the header.
	if got := postSummary(t, s.URL, "?secret="+sumSecret, map[string]string{"x-hasura-presence-summary-secret": "wrong"}); !reflect.DeepEqual(got, withGhost) {
		t.Fatalf("summary (?secret= right, header wrong) = %+v", got)
	}

	refused := []struct {
		name   string
		path   string
		header map[string]string
	}{
		{"summary without secret", "/summary", nil},
		{"summary wrong header", "/summary", map[string]string{"x-hasura-presence-summary-secret": "wrong"}},
		{"summary wrong query beats right header", "/summary?secret=wrong", hdr},
		{"flush with the summary secret", "/flush?secret=" + sumSecret, nil},
		{"flush with the summary header", "/flush", map[string]string{"x-hasura-presence-flush-secret": sumSecret}},
	}
	for _, tt := range refused {
		status, body := httpDo(t, http.MethodPost, s.URL+tt.path, tt.header, "")
		if status != http.StatusForbidden || body != "Secret mismatch" {
			t.Errorf("%s: %d %q, want 403 \"Secret mismatch\"", tt.name, status, body)
		}
	}
	if n, err := rdb.Exists(ctx, ghost).Result(); err != nil || n != 1 {
		t.Fatalf("refused flushes must not touch Redis: ghost exists=%d err=%v", n, err)
	}

	h.drain() // deltas of the initial enters are no evidence of a re-announcement
	status, body := httpDo(t, http.MethodPost, s.URL+"/flush", map[string]string{"x-hasura-presence-flush-secret": flushSecret}, "")
	if status != http.StatusOK || strings.TrimSpace(body) != `{"ok":"OK"}` {
		t.Fatalf("POST /flush: %d %q, want 200 {\"ok\":\"OK\"}", status, body)
	}
	if n, err := rdb.Exists(ctx, ghost).Result(); err != nil || n != 0 {
		t.Fatalf("after /flush the ghost page still exists (exists=%d, err=%v)", n, err)
	}

	// Within one refresh period (plus slack) the live sockets are back, and
	// their observers are told again: bob observes p2 and nobody else is on
	// it, so an "entered" of bob on p2 after the drain above comes from the
	// re-announcement.
	h.expect(t, "entered "+id2+" bob", presenceRefresh+presenceSlack)
	deadline := time.Now().Add(presenceRefresh + presenceSlack)
	var got summary
	for {
		got = postSummary(t, s.URL, "?secret="+sumSecret, nil)
		if reflect.DeepEqual(got, live) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("summary %v after /flush = %+v, want the live users %+v", presenceRefresh+presenceSlack, got, live)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And the state is whole again, not just the page sets: the socket
	// registry the sweeper needs is back too.
	if n, err := rdb.ZCard(ctx, "Presence.Sockets").Result(); err != nil || n != 3 {
		t.Errorf("Presence.Sockets has %d sockets after the re-announcement (err %v), want 3", n, err)
	}
}
