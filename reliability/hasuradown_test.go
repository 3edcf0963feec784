package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

// The directory's defaults (host/directory): the request timeout, the
// consecutive failures that open its circuit breaker and how long it stays
// open. A lookup that waited on a hung Hasura takes the timeout.
const (
	dirTimeout      = 5 * time.Second
	breakerFailures = 5
	breakerOpenFor  = 2 * time.Second
)

// switchHasura is a Hasura that answers GetUserConferenceSlugs (every user is
// in the conference "demo") until the test takes it down: "hang" (requests
// wait until the caller gives up) or "refuse" (nothing listens). It counts
// the requests that reach it.
type switchHasura struct {
	addr string

	mu       sync.Mutex
	mode     string // "up", "hang" or "refuse"
	changed  chan struct{}
	srv      *http.Server
	requests int
}

func newSwitchHasura(t *testing.T) *switchHasura {
	t.Helper()
	h := &switchHasura{mode: "up", changed: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	h.serve(l)
	t.Cleanup(func() { h.set(t, "refuse") })
	return h
}

func (h *switchHasura) serve(l net.Listener) {
	h.srv = &http.Server{Handler: h}
	go func(s *http.Server) { _ = s.Serve(l) }(h.srv)
}

// set switches the mode: "refuse" closes the listener and every connection,
// leaving it listens again on the same address; hung requests are released.
func (h *switchHasura) set(t *testing.T, mode string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if mode == h.mode {
		return
	}
	was := h.mode
	h.mode = mode
	close(h.changed)
	h.changed = make(chan struct{})
	switch {
	case mode == "refuse":
		_ = h.srv.Close()
	case was == "refuse":
		l, err := net.Listen("tcp", h.addr)
		if err != nil {
			t.Fatalf("fake Hasura: listen again on %s: %v", h.addr, err)
		}
		h.serve(l)
	}
}

// count returns how many requests reached the fake.
func (h *switchHasura) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

func (h *switchHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OperationName string `json:"operationName"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OperationName != "GetUserConferenceSlugs" {
		http.Error(w, `{"error":"unexpected request"}`, http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.requests++
	mode, changed := h.mode, h.changed
	h.mu.Unlock()
	if mode == "hang" {
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"data":{"conference_Conference":[{"id":"c-demo","slug":"demo"}]}}`))
}

// directoryCheck returns /readyz's status code and its directory check.
func directoryCheck(s *server) (int, struct {
	Status   string `json:"status"`
	Required bool   `json:"required"`
	Error    string `json:"error"`
}) {
	code, body := s.readyz()
	var out struct {
		Checks map[string]struct {
			Status   string `json:"status"`
			Required bool   `json:"required"`
			Error    string `json:"error"`
		} `json:"checks"`
	}
	_ = json.Unmarshal([]byte(body), &out)
	return code, out.Checks["directory"]
}

// connectAttempt is one new user's connect while Hasura is down.
type connectAttempt struct {
	took time.Duration
	err  error
}

// connectNew dials n new users at once and returns their outcomes.
func connectNew(ctx context.Context, t *testing.T, url string, n int) []connectAttempt {
	out := make([]connectAttempt, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			t0 := time.Now()
			c, _, err := tryDial(ctx, url, token(t, "new-"+newUUID()))
			out[i] = connectAttempt{took: time.Since(t0), err: err}
			if c != nil {
				c.Close()
			}
		})
	}
	wg.Wait()
	return out
}

// refusedAsOriginal checks that a connect during the outage was closed, as
// the gateway answers a directory failure (a transport close: socket.io-client
// retries with backoff), not refused with CONNECT_ERROR, accepted or hung.
func refusedAsOriginal(t *testing.T, a connectAttempt) {
	t.Helper()
	var ce *sioclient.ConnectError
	switch {
	case a.err == nil:
		t.Errorf("a new user connected while Hasura was down")
	case errors.As(a.err, &ce):
		t.Errorf("a new user got CONNECT_ERROR %q (socket.io-client would not retry); want a transport close", ce.Message)
	case errors.Is(a.err, context.DeadlineExceeded):
		t.Errorf("a new user's connect hung for %v", a.took)
	}
}

func durations(as []connectAttempt) string {
	ds := make([]time.Duration, len(as))
	for i, a := range as {
		ds[i] = a.took.Round(time.Millisecond)
	}
	slices.Sort(ds)
	return fmt.Sprint(ds)
}

// TestHasuraDown takes the directory's Hasura down (hanging, then in a second
// run refusing connections) under a server with directory.backend=hasura and
// checks: the connected socket stays and works; a cached user reconnects
// without a request; the first new users wait for Hasura's failure (at most
// the request timeout), then the circuit breaker opens and new users are
// closed at once (transport close, as any directory failure) without a
// request reaching Hasura; /readyz stays 200 and reports the directory
// failing with the open breaker; and once Hasura is back, new users connect
// again within seconds, without a restart.
func TestHasuraDown(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"hang", "refuse"} {
		t.Run(mode, func(t *testing.T) { hasuraDown(t, mode) })
	}
}

func hasuraDown(t *testing.T, mode string) {
	hasura := newSwitchHasura(t)
	s := launch(t, serverOpts{name: "hasura-down-" + mode, plugins: []string{"echo"}, args: []string{
		"--set", "directory.backend=hasura",
		"--set", "directory.graphql_domain=" + hasura.addr,
		"--set", "directory.graphql_secure=false",
		"--set", "directory.admin_secret=admin",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Before: a user connects; the answer is cached.
	cached := "cached-" + newUUID()
	conn, rec := dial(ctx, t, s.URL, cached)
	defer conn.Close()
	if _, err := conn.EmitWithAck(ctx, "echo", "before"); err != nil {
		t.Fatalf("echo before the outage: %v", err)
	}
	if n := hasura.count(); n != 1 {
		t.Fatalf("%d Hasura requests for the first connect, want 1", n)
	}

	hasura.set(t, mode)
	downAt := time.Now()

	// The connected socket and the cached user do not need Hasura.
	if ack, err := conn.EmitWithAck(ctx, "echo", "during"); err != nil || len(ack) != 1 || str(ack[0]) != "during" {
		t.Errorf("echo on the connected socket during the outage = %v, %v", ack, err)
	}
	again, _, err := tryDial(ctx, s.URL, token(t, cached))
	if err != nil {
		t.Errorf("the cached user's reconnect during the outage: %v", err)
	} else {
		again.Close()
	}
	if n := hasura.count(); n != 1 {
		t.Errorf("%d Hasura requests after the cached user's reconnect, want still 1", n)
	}

	// New users: the first ones meet the failing Hasura and open the breaker.
	trip := connectNew(ctx, t, s.URL, breakerFailures)
	for _, a := range trip {
		refusedAsOriginal(t, a)
	}
	tripRequests := hasura.count() - 1
	if !within(30*time.Second, func() bool { return s.metrics(t).sum("realtime_directory_breaker_open") == 1 }) {
		t.Fatalf("the circuit breaker did not open after %d failed lookups (realtime_directory_breaker_open never 1)", breakerFailures)
	}
	openAt := time.Now()

	// Open: new users are closed at once, without a request to Hasura; at
	// most one probe per open period goes through.
	const fastUsers = 8
	before := hasura.count()
	phaseStart := time.Now()
	fast := connectNew(ctx, t, s.URL, fastUsers)
	phase := time.Since(phaseStart)
	fastRequests := hasura.count() - before
	quick := 0
	for _, a := range fast {
		refusedAsOriginal(t, a)
		if a.took < dirTimeout/2 {
			quick++
		}
	}
	probes := 1 + int(phase/breakerOpenFor)
	if fastRequests > probes || fastRequests >= fastUsers {
		t.Errorf("%d of %d new users' lookups reached Hasura while the breaker was open (%v; at most %d probes)", fastRequests, fastUsers, phase.Round(time.Millisecond), probes)
	}
	if quick < fastUsers-fastRequests {
		t.Errorf("only %d of %d refused connects took less than %v (took %s): they waited on Hasura", quick, fastUsers, dirTimeout/2, durations(fast))
	}
	refusals := s.log.CountLines("conference lookup failed", "hasura unavailable: circuit")
	if refusals == 0 {
		t.Errorf("no gateway log line names the open circuit breaker")
	}
	if n := s.log.CountLines("circuit breaker open: lookups"); n != 1 {
		t.Errorf("%d log lines for the breaker opening, want 1", n)
	}

	// /readyz: 200, the directory reported failing, not required.
	code, dir := directoryCheck(s)
	if code != http.StatusOK {
		t.Errorf("/readyz %d while Hasura is down, want 200 (the directory is reported, not required)", code)
	}
	if dir.Status != "failing" || dir.Required || !strings.Contains(dir.Error, "hasura unavailable: circuit") {
		t.Errorf("/readyz directory check while Hasura is down = %+v, want failing, not required, naming the open breaker", dir)
	}
	m := s.metrics(t)
	refusedMetric := m.sum("realtime_directory_requests_total", `result="breaker_open"`)
	if refusedMetric == 0 {
		t.Errorf(`realtime_directory_requests_total{result="breaker_open"} is 0`)
	}

	// Still connected, still working.
	if ack, err := conn.EmitWithAck(ctx, "echo", "late"); err != nil || len(ack) != 1 || str(ack[0]) != "late" {
		t.Errorf("echo on the connected socket late in the outage = %v, %v", ack, err)
	}
	if d := rec.disconnects(); len(d) > 0 || !conn.Connected() {
		t.Errorf("the connected socket was dropped during the outage: %v", d)
	}
	downFor := time.Since(downAt)

	// Hasura is back: new users connect within seconds, no restart.
	hasura.set(t, "up")
	upAt := time.Now()
	var recovered time.Duration
	var lastErr error
	attempts := 0
	// The breaker lets a probe through at most breakerOpenFor after it
	// opened; the rest is slack for a loaded box.
	if !within(15*time.Second, func() bool {
		attempts++
		c, _, err := tryDial(ctx, s.URL, token(t, "after-"+newUUID()))
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			return false
		}
		c.Close()
		recovered = time.Since(upAt)
		return true
	}) {
		t.Fatalf("no new user could connect within 15s of Hasura coming back (%d attempts, last: %v)", attempts, lastErr)
	}
	for range 3 {
		c, _ := dial(ctx, t, s.URL, "after-"+newUUID())
		c.Close()
	}
	if !within(10*time.Second, func() bool {
		_, dir := directoryCheck(s)
		return dir.Status == "ok" && s.metrics(t).sum("realtime_directory_breaker_open") == 0
	}) {
		_, dir := directoryCheck(s)
		t.Errorf("after recovery: directory check %+v, realtime_directory_breaker_open %v; want ok and 0", dir, s.metrics(t).sum("realtime_directory_breaker_open"))
	}

	tripTook := make([]time.Duration, 0, len(trip))
	for _, a := range trip {
		tripTook = append(tripTook, a.took)
	}
	sort.Slice(tripTook, func(i, j int) bool { return tripTook[i] < tripTook[j] })
	t.Logf("Hasura %s for %v: cached user reconnected with 0 requests; the first %d new users were closed after %v–%v (%d requests reached Hasura), breaker open %v after Hasura went down",
		mode, downFor.Round(100*time.Millisecond), len(trip), tripTook[0].Round(time.Millisecond), tripTook[len(tripTook)-1].Round(time.Millisecond), tripRequests, openAt.Sub(downAt).Round(100*time.Millisecond))
	t.Logf("breaker open: %d new users closed in %s (%d requests reached Hasura in %v); %v breaker_open refusals counted, %d gateway log lines naming it; /readyz %d, directory %q",
		fastUsers, durations(fast), fastRequests, phase.Round(time.Millisecond), refusedMetric, refusals, code, dir.Error)
	t.Logf("recovery: a new user connected %v after Hasura came back (%d attempts)", recovered.Round(time.Millisecond), attempts)
}
