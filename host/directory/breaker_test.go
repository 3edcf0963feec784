package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/testenv"
)

// Modes of downHasura.
const (
	modeUp      = "up"      // the shared fake answers
	modeRefuse  = "refuse"  // nothing listens: connection refused
	modeHang    = "hang"    // the request hangs until it times out (or the mode changes)
	modeDrop    = "drop"    // the connection is closed without an answer
	mode500     = "500"     // HTTP 500
	mode429     = "429"     // HTTP 429
	mode400     = "400"     // HTTP 400: Hasura answered, the request was wrong
	modeGQL     = "gql"     // 200 with a GraphQL error
	modeGarbage = "garbage" // 200 with a body that is not JSON
)

// downHasura is a Hasura that a test switches between answering (the shared
// fakeHasura) and ways of being down. It counts the requests that reached it
// in any mode.
type downHasura struct {
	t       *testing.T
	fake    *fakeHasura
	addr    string
	reached atomic.Int64

	mu      sync.Mutex
	mode    string
	srv     *http.Server
	changed chan struct{} // closed and replaced when the mode changes
}

func newDownHasura(t *testing.T) *downHasura {
	t.Helper()
	d := &downHasura{
		t:       t,
		fake:    &fakeHasura{t: t, counts: map[string]int{}, vars: map[string][]map[string]any{}, world: defaultWorld()},
		mode:    modeUp,
		changed: make(chan struct{}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = l.Addr().String()
	d.serve(l)
	t.Cleanup(func() { d.set(modeRefuse) })
	return d
}

func (d *downHasura) serve(l net.Listener) {
	srv := &http.Server{Handler: d}
	d.srv = srv
	go func() { _ = srv.Serve(l) }()
}

// set switches the mode. Refuse closes the listener and every connection;
// leaving it listens again on the same address.
func (d *downHasura) set(mode string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if mode == d.mode {
		return
	}
	was := d.mode
	d.mode = mode
	close(d.changed)
	d.changed = make(chan struct{})
	switch {
	case mode == modeRefuse:
		_ = d.srv.Close()
	case was == modeRefuse:
		l, err := net.Listen("tcp", d.addr)
		if err != nil {
			d.t.Fatalf("listen again on %s: %v", d.addr, err)
		}
		d.serve(l)
	}
}

func (d *downHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.reached.Add(1)
	d.mu.Lock()
	mode, changed := d.mode, d.changed
	d.mu.Unlock()
	if mode == modeHang {
		select {
		case <-changed:
			// Released: answer as the mode now says (a late answer).
			d.mu.Lock()
			mode = d.mode
			d.mu.Unlock()
		case <-r.Context().Done():
			return
		}
	}
	switch mode {
	case modeRefuse, modeDrop:
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = c.Close()
		}
	case mode500:
		http.Error(w, "down", http.StatusInternalServerError)
	case mode429:
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case mode400:
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
	case modeGQL:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"errors":[{"message":"field not found"}]}`))
	case modeGarbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`<html>not json</html>`))
	default:
		d.fake.ServeHTTP(w, r)
	}
}

// newBreakerHasura builds a directory against d with a log buffer and
// registered metrics.
func newBreakerHasura(t *testing.T, d *downHasura, opts ...HasuraOption) (*Hasura, *testenv.SyncBuffer, *prometheus.Registry) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	logs := &testenv.SyncBuffer{}
	cfg := config.DirectoryConfig{Backend: "hasura", GraphQLDomain: d.addr, AdminSecret: secret, CacheTTL: time.Hour}
	h, err := NewHasura(cfg, newStore(t), slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), append([]HasuraOption{WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := h.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return h, logs, reg
}

// The log messages of the state changes.
const (
	logOpen     = "circuit breaker open: lookups"
	logReopen   = "probe failed; circuit breaker open again"
	logHalfOpen = "circuit breaker half-open"
	logClosed   = "circuit breaker closed"
)

var userSeq atomic.Int64

// newUser returns a user id never looked up before: a cache miss.
func newUser() string { return fmt.Sprintf("user-%d", userSeq.Add(1)) }

// slugsOfNew looks up a new user's conferences: a cache miss, so a query.
func slugsOfNew(h *Hasura) error {
	_, err := h.ConferenceSlugs(context.Background(), newUser())
	return err
}

// TestBreakerOpens: after N consecutive failures of each kind that means
// Hasura is not answering well, lookups that miss the cache fail at once
// with an error that says so, and no request reaches Hasura.
func TestBreakerOpens(t *testing.T) {
	const (
		failures = 3
		timeout  = 4 * time.Second
	)
	for _, mode := range []string{modeRefuse, modeHang, modeDrop, mode500, mode429} {
		t.Run(mode, func(t *testing.T) {
			d := newDownHasura(t)
			h, logs, reg := newBreakerHasura(t, d, WithBreaker(failures, time.Hour), WithTimeout(timeout))
			d.set(mode)

			// The failures that open it, concurrently (a hang takes the
			// whole timeout).
			var wg sync.WaitGroup
			errs := make([]error, failures)
			for i := range failures {
				wg.Go(func() { errs[i] = slugsOfNew(h) })
			}
			wg.Wait()
			for _, err := range errs {
				if err == nil || errors.Is(err, ErrHasuraUnavailable) {
					t.Fatalf("lookup while Hasura is %s = %v, want its own failure", mode, err)
				}
			}
			reached := d.reached.Load()
			if want := int64(failures); mode != modeRefuse && reached != want {
				t.Fatalf("%d requests reached Hasura, want %d", reached, want)
			}

			// Open: fail fast, nothing sent.
			for range 10 {
				t0 := time.Now()
				err := slugsOfNew(h)
				took := time.Since(t0)
				if !errors.Is(err, ErrHasuraUnavailable) ||
					!strings.Contains(err.Error(), "directory: GetUserConferenceSlugs: hasura unavailable: circuit open after 3 consecutive failures; next try in ") {
					t.Fatalf("lookup while open = %v, want the breaker's refusal", err)
				}
				if took > timeout/2 {
					t.Errorf("a refused lookup took %v (request timeout %v)", took, timeout)
				}
			}
			if got := d.reached.Load(); got != reached {
				t.Errorf("%d requests reached Hasura while the breaker was open", got-reached)
			}

			// Ready names the breaker and the failure behind it.
			err := h.Ready(context.Background())
			if err == nil || !strings.Contains(err.Error(), "hasura unavailable: circuit open after 3 consecutive failures") ||
				!strings.Contains(err.Error(), "the latest Hasura query failed") {
				t.Errorf("Ready while open = %v", err)
			}
			m := gather(t, reg)
			if m["realtime_directory_breaker_open"] != 1 || m["realtime_directory_up"] != 0 ||
				m["realtime_directory_requests_total{query=GetUserConferenceSlugs}{result=breaker_open}"] != 10 ||
				m["realtime_directory_requests_total{query=GetUserConferenceSlugs}{result=error}"] != failures {
				t.Errorf("metrics while open: %v", m)
			}
			// One log line for the change, not one per refused lookup.
			if n := strings.Count(logs.String(), logOpen); n != 1 {
				t.Errorf("%d %q log lines, want 1:\n%s", n, logOpen, logs)
			}
		})
	}
}

// TestBreakerProbe: once open for its period, one probe goes through; a
// failed probe opens it again, other lookups are refused while a probe is
// under way, and a probe that Hasura answers closes it.
func TestBreakerProbe(t *testing.T) {
	// Long enough that a stalled CI box does not reach half-open between
	// two steps that expect it open.
	const openFor = time.Second
	d := newDownHasura(t)
	h, logs, reg := newBreakerHasura(t, d, WithBreaker(2, openFor), WithTimeout(10*time.Second))
	d.set(mode500)
	for range 2 {
		if err := slugsOfNew(h); err == nil || errors.Is(err, ErrHasuraUnavailable) {
			t.Fatalf("lookup on a 500 = %v", err)
		}
	}
	if err := slugsOfNew(h); !errors.Is(err, ErrHasuraUnavailable) {
		t.Fatalf("after 2 failures = %v, want the breaker's refusal", err)
	}

	// A failed probe: open again.
	time.Sleep(openFor + 100*time.Millisecond)
	before := d.reached.Load()
	if err := slugsOfNew(h); err == nil || errors.Is(err, ErrHasuraUnavailable) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("probe = %v, want the 500", err)
	}
	if got := d.reached.Load(); got != before+1 {
		t.Fatalf("the probe sent %d requests, want 1", got-before)
	}
	if err := slugsOfNew(h); !errors.Is(err, ErrHasuraUnavailable) || !strings.Contains(err.Error(), "after 3 consecutive failures") {
		t.Fatalf("after a failed probe = %v, want the breaker's refusal counting 3 failures", err)
	}

	// A probe that hangs: the others are refused meanwhile.
	time.Sleep(openFor + 100*time.Millisecond)
	d.set(modeHang)
	before = d.reached.Load()
	probe := make(chan error, 1)
	go func() { probe <- slugsOfNew(h) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.reached.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the probe never reached Hasura")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := slugsOfNew(h); !errors.Is(err, ErrHasuraUnavailable) || !strings.Contains(err.Error(), "circuit half-open after 3 consecutive failures; a probe request is under way") {
		t.Fatalf("lookup during the probe = %v, want the half-open refusal", err)
	}
	if err := h.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "circuit half-open") {
		t.Errorf("Ready during the probe = %v", err)
	}
	// Hasura answers the probe: closed.
	d.set(modeUp)
	if err := <-probe; err != nil {
		t.Fatalf("probe answered = %v", err)
	}
	if got := d.reached.Load(); got != before+1 {
		t.Fatalf("%d requests reached Hasura during the probe, want 1", got-before)
	}
	for range 3 {
		if err := slugsOfNew(h); err != nil {
			t.Fatalf("lookup after the probe closed it = %v", err)
		}
	}
	if err := h.Ready(context.Background()); err != nil {
		t.Errorf("Ready after recovery = %v", err)
	}
	if m := gather(t, reg); m["realtime_directory_breaker_open"] != 0 || m["realtime_directory_up"] != 1 {
		t.Errorf("metrics after recovery: %v", m)
	}
	for msg, want := range map[string]int{logOpen: 1, logReopen: 1, logHalfOpen: 2, logClosed: 1} {
		if n := strings.Count(logs.String(), msg); n != want {
			t.Errorf("%d %q log lines, want %d:\n%s", n, msg, want, logs)
		}
	}
}

// TestBreakerIgnoresAnswers: answers that show Hasura working — a GraphQL
// error, a 4xx, a body that does not decode — never open the breaker, and
// they break a run of counted failures.
func TestBreakerIgnoresAnswers(t *testing.T) {
	for _, mode := range []string{modeGQL, mode400, modeGarbage} {
		t.Run(mode, func(t *testing.T) {
			d := newDownHasura(t)
			h, _, reg := newBreakerHasura(t, d, WithBreaker(2, time.Hour))
			d.set(mode)
			for range 10 {
				if err := slugsOfNew(h); err == nil || errors.Is(err, ErrHasuraUnavailable) {
					t.Fatalf("lookup = %v, want the answer's error", err)
				}
			}
			// A failure between two answers: never 2 in a row.
			for range 5 {
				d.set(mode500)
				if err := slugsOfNew(h); err == nil || errors.Is(err, ErrHasuraUnavailable) {
					t.Fatalf("lookup on a 500 = %v", err)
				}
				d.set(mode)
				if err := slugsOfNew(h); err == nil || errors.Is(err, ErrHasuraUnavailable) {
					t.Fatalf("lookup = %v, want the answer's error", err)
				}
			}
			if got := d.reached.Load(); got != 20 {
				t.Errorf("%d requests reached Hasura, want all 20", got)
			}
			if m := gather(t, reg); m["realtime_directory_breaker_open"] != 0 ||
				m["realtime_directory_requests_total{query=GetUserConferenceSlugs}{result=breaker_open}"] != 0 {
				t.Errorf("metrics: %v", m)
			}
		})
	}
}

// TestBreakerCallerGaveUp: a caller cancelling its request says nothing
// about Hasura: it does not count.
func TestBreakerCallerGaveUp(t *testing.T) {
	d := newDownHasura(t)
	h, _, _ := newBreakerHasura(t, d, WithBreaker(2, time.Hour))
	d.set(modeHang)
	for i := range 4 {
		ctx, cancel := context.WithCancel(context.Background())
		before := d.reached.Load()
		go func() {
			for d.reached.Load() == before {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
		}()
		// MessageModerators is not cached: it queries with the caller's
		// context.
		_, _, err := h.MessageModerators(ctx, msgFlagged)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call %d = %v, want context.Canceled", i, err)
		}
	}
	if got := d.reached.Load(); got != 4 {
		t.Errorf("%d requests reached Hasura, want 4 (cancelled calls must not open the breaker)", got)
	}
}

// TestBreakerKeepsCache: while the breaker is open, cached answers keep
// working and never reach it.
func TestBreakerKeepsCache(t *testing.T) {
	ctx := context.Background()
	d := newDownHasura(t)
	h, _, reg := newBreakerHasura(t, d, WithBreaker(2, time.Hour))
	if slugs, err := h.ConferenceSlugs(ctx, "alice"); err != nil || len(slugs) != 1 {
		t.Fatalf("ConferenceSlugs(alice) = %v, %v", slugs, err)
	}
	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || !ok {
		t.Fatalf("CanSelectChat = %v, %v", ok, err)
	}
	d.set(modeRefuse)
	for range 2 {
		_ = slugsOfNew(h)
	}
	if err := slugsOfNew(h); !errors.Is(err, ErrHasuraUnavailable) {
		t.Fatalf("new user while Hasura refuses = %v, want the breaker's refusal", err)
	}
	if slugs, err := h.ConferenceSlugs(ctx, "alice"); err != nil || len(slugs) != 1 || slugs[0] != "conf1" {
		t.Errorf("cached ConferenceSlugs while open = %v, %v", slugs, err)
	}
	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatPublic); err != nil || !ok {
		t.Errorf("cached CanSelectChat while open = %v, %v", ok, err)
	}
	// An uncached lookup of a cached user's other data is refused.
	if _, err := h.CanSelectChat(ctx, sock("alice"), chatPrivate); !errors.Is(err, ErrHasuraUnavailable) {
		t.Errorf("uncached chat while open = %v, want the breaker's refusal", err)
	}
	if m := gather(t, reg); m["realtime_directory_cache_total{cache=ConferenceSlugs}{result=hit}"] != 1 || m["realtime_directory_breaker_open"] != 1 {
		t.Errorf("metrics: %v", m)
	}
}
