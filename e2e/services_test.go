package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/internal/testserver"
)

// noConferencePrefix is what the browser client hashes in front of a path
// outside /conference/ (plugins/presence.NoConferencePrefix).
const noConferencePrefix = "<<NO-CONFERENCE>>"

// listIDOf is the presence list id of path, computed independently of the
// server: sha256(slug+path) for /conference/<slug>/..., else
// sha256("<<NO-CONFERENCE>>"+path).
func listIDOf(path string) string {
	prefix := noConferencePrefix
	if strings.HasPrefix(path, "/conference/") {
		prefix = strings.Split(path, "/")[2]
	}
	sum := sha256.Sum256([]byte(prefix + path))
	return hex.EncodeToString(sum[:])
}

// randHex returns n random bytes as hex.
func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// startRedis runs a private redis-server (testserver.StartRedis) for the
// test and returns its URL and a client for the test's own checks.
func startRedis(t *testing.T) (string, *redis.Client) {
	t.Helper()
	u := testserver.StartRedis(t).URL()
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis-server at %s not answering: %v", u, err)
	}
	return u, rdb
}

// rabbitVhost creates a fresh RabbitMQ vhost on the machine's broker (guest
// has all permissions on it), deletes it when the test ends, and returns the
// AMQP URL of the vhost.
func rabbitVhost(t *testing.T) string {
	t.Helper()
	base := testenv.AMQPURL(t) // skips (fails under CI) without a broker
	ctl, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		testenv.Unavailable(t, "rabbitmqctl is not installed (needed to create a test vhost)")
	}
	vhost := "rt-e2e-" + randHex(t, 6)
	run := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, ctl, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("rabbitmqctl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("add_vhost", vhost); err != nil {
		testenv.Unavailable(t, "cannot create a RabbitMQ vhost: %v", err)
	}
	t.Cleanup(func() {
		if err := run("delete_vhost", vhost); err != nil {
			t.Errorf("delete test vhost: %v", err)
		}
	})
	if err := run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"); err != nil {
		t.Fatalf("%v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse AMQP URL %q: %v", base, err)
	}
	u.Path = "/" + vhost
	u.RawPath = "/" + url.PathEscape(vhost)
	return u.String()
}

// holder is a node process (client/hold.mjs) that keeps real socket.io
// clients connected and present on pages while the Go test looks at the
// server from outside.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	log   *testserver.TailBuffer
	done  chan struct{}
}

// holdSpec is one client of hold.mjs: a user present on pages.
type holdSpec struct {
	User  string   `json:"user"`
	Pages []string `json:"pages"`
}

// startHolder runs hold.mjs against baseURL with the given clients and waits
// until it printed READY (every client connected and entered its pages).
// The clients disconnect when the test ends.
func startHolder(t *testing.T, baseURL string, clients []holdSpec) *holder {
	t.Helper()
	requireNode(t)
	spec, err := json.Marshal(clients)
	if err != nil {
		t.Fatalf("hold spec: %v", err)
	}
	h := &holder{lines: make(chan string, 64), log: testserver.NewTailBuffer(64 << 10), done: make(chan struct{})}
	h.cmd = exec.Command("node", "hold.mjs")
	h.cmd.Dir = clientDir
	h.cmd.Env = cleanEnv(map[string]string{"SERVER_URL": baseURL, "TEST_JWKS_PRIVATE": testJWKJSON, "HOLD_SPEC": string(spec)})
	h.cmd.Stderr = h.log
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatalf("hold.mjs: %v", err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("hold.mjs: %v", err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start hold.mjs: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = h.log.Write([]byte(sc.Text() + "\n"))
			select {
			case h.lines <- sc.Text():
			default: // nobody waits for it; it is in the log
			}
		}
	}()
	go func() { wg.Wait(); _ = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() { h.stop(t) })
	h.expect(t, "READY", 20*time.Second)
	return h
}

// expect waits for a stdout line equal to want.
func (h *holder) expect(t *testing.T, want string, within time.Duration) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("hold.mjs exited before printing %s:\n%s", want, h.log)
			}
			if line == want {
				return
			}
		case <-timer.C:
			t.Fatalf("hold.mjs did not print %s within %v:\n%s", want, within, h.log)
		}
	}
}

// drain discards the lines printed so far, so that a later expect only
// matches lines printed after this call (as far as they arrived by then).
func (h *holder) drain() {
	for {
		select {
		case _, ok := <-h.lines:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// stop closes hold.mjs's stdin (its clients disconnect and it exits) and
// kills it if it lingers.
func (h *holder) stop(t *testing.T) {
	_ = h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
		t.Errorf("hold.mjs did not exit after its stdin closed:\n%s", h.log)
	}
	if t.Failed() {
		t.Logf("hold.mjs output:\n%s", h.log)
	}
}

// httpDo sends a request and returns status and (capped) body.
func httpDo(t *testing.T, method, url string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// fakeHasura answers the directory's GraphQL queries for the conference
// "demo": members (users in members) have CONFERENCE_VIEW_ATTENDEES there;
// a registrant id is its user's id; chats in private are PRIVATE rooms whose
// only people are the listed users, every other chat is a public chat of
// "demo".
type fakeHasura struct {
	members map[string]bool
	private map[string][]string // chatId -> users in its room

	mu    sync.Mutex
	calls map[string]int // operationName -> count
}

func (f *fakeHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Query         string         `json:"query"`
		OperationName string         `json:"operationName"`
		Variables     map[string]any `json:"variables"`
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/graphql" || r.Header.Get("x-hasura-admin-secret") != "fake-admin-secret" {
		http.Error(w, "bad request to fake hasura", http.StatusBadRequest)
		return
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	op := req.OperationName
	if op == "" { // take it from the document: "query Name(...)"
		if f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(req.Query), "query")); len(f) > 0 {
			op, _, _ = strings.Cut(f[0], "(")
		}
	}
	f.mu.Lock()
	f.calls[op]++
	f.mu.Unlock()
	str := func(k string) string { s, _ := req.Variables[k].(string); return s }
	var data any
	switch op {
	case "GetUserConferenceSlugs":
		confs := []any{}
		if f.members[str("userId")] {
			confs = append(confs, map[string]any{"id": "c-demo", "slug": "demo"})
		}
		data = map[string]any{"conference_Conference": confs}
	case "UserPermissions":
		perms := []any{}
		if u := str("userId"); f.members[u] {
			perms = append(perms, map[string]any{"slug": "demo", "permission_name": "CONFERENCE_VIEW_ATTENDEES", "user_id": u})
		}
		data = map[string]any{"FlatUserPermission": perms}
	case "ChatInfo":
		id := str("chatId")
		rooms := []any{}
		if people, ok := f.private[id]; ok {
			rp := []any{}
			for i, u := range people {
				rp = append(rp, map[string]any{"id": fmt.Sprintf("rp-%d", i), "registrant": map[string]any{"id": u, "userId": u}})
			}
			rooms = append(rooms, map[string]any{"id": "room-" + id, "name": "private", "managementModeName": "PRIVATE", "roomPeople": rp})
		}
		data = map[string]any{"chat_Chat_by_pk": map[string]any{
			"id": id, "restrictToAdmins": false,
			"conference": map[string]any{"id": "c-demo", "slug": "demo", "shortName": "Demo"},
			"items":      []any{}, "rooms": rooms,
		}}
	case "RegistrantInfo":
		id := str("registrantId")
		var reg any
		if f.members[id] {
			reg = map[string]any{"id": id, "userId": id, "displayName": "user " + id[:8], "conferenceId": "c-demo"}
		}
		data = map[string]any{"registrant_Registrant_by_pk": reg}
	default:
		data = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": "fake hasura: unknown operation " + op}}})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

// startFakeHasura serves f on a loopback port and returns its host:port.
func startFakeHasura(t *testing.T, f *fakeHasura) string {
	t.Helper()
	f.calls = map[string]int{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
