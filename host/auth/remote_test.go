package auth

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
)

// newRemoteVerifier builds an auth0-mode verifier (no TEST_JWKS) on srv with
// a fake clock.
func newRemoteVerifier(t *testing.T, srv *jwksServer, cfg config.AuthConfig) (*Verifier, *fakeClock) {
	t.Helper()
	cfg.JWKSURL = srv.URL
	clock := newFakeClock()
	v, err := newVerifier(cfg, nil, prometheus.NewRegistry(), clock.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v, clock
}

func TestRemoteCacheRefreshAndRateLimit(t *testing.T) {
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	v, clock := newRemoteVerifier(t, srv, config.AuthConfig{JWKSRefreshInterval: time.Hour})
	waitReady(t, v)

	steps := []struct {
		name     string
		setKeys  string // new server key set, "" = unchanged
		tok      string
		advance  time.Duration
		wantOK   bool
		wantHits int64
	}{
		{name: "prefetched kid hits the cache", tok: rs256(t, "a", "a", "u"), wantOK: true, wantHits: 1},
		{name: "cache hit again", tok: rs256(t, "a", "a", "u"), wantOK: true, wantHits: 1},
		{name: "no kid, single key set", tok: rs256(t, "a", "", "u"), wantOK: true, wantHits: 1},
		{name: "unknown kid refetches", setKeys: keySetJSON(t, pubJWK("a", "a"), pubJWK("b", "b")), tok: rs256(t, "b", "b", "u"), wantOK: true, wantHits: 2},
		{name: "new kid is cached", tok: rs256(t, "b", "b", "u"), wantOK: true, wantHits: 2},
		{name: "no kid, two keys", tok: rs256(t, "a", "", "u"), wantOK: false, wantHits: 2},
		{name: "second unknown kid within interval does not fetch", setKeys: keySetJSON(t, pubJWK("a", "a"), pubJWK("b", "b"), pubJWK("c", "c")), tok: rs256(t, "c", "c", "u"), wantOK: false, wantHits: 2},
		{name: "after the interval it fetches", advance: time.Hour, tok: rs256(t, "c", "c", "u"), wantOK: true, wantHits: 3},
		{name: "rotated-out key is dropped after a successful fetch", setKeys: keySetJSON(t, pubJWK("c", "c")), advance: time.Hour, tok: rs256(t, "other", "x", "u"), wantOK: false, wantHits: 4},
		{name: "dropped kid a", tok: rs256(t, "a", "a", "u"), wantOK: false, wantHits: 4},
	}
	for _, st := range steps {
		if st.setKeys != "" {
			srv.set(func(s *jwksServer) { s.body = st.setKeys })
		}
		clock.advance(st.advance)
		_, err := verifyBounded(t, v, payload(st.tok))
		if st.wantOK && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !st.wantOK {
			wantRefusal(t, err, CodeInvalidToken, "")
		}
		if got := srv.hits.Load(); got != st.wantHits {
			t.Fatalf("%s: JWKS fetched %d times, want %d", st.name, got, st.wantHits)
		}
	}
	if got := counterValue(t, v.m.fetches.WithLabelValues("ok")); got != 4 {
		t.Fatalf("fetch ok metric = %v, want 4", got)
	}
}

func TestRemoteStaleRefreshInBackground(t *testing.T) {
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	v, clock := newRemoteVerifier(t, srv, config.AuthConfig{JWKSRefreshInterval: time.Minute})
	waitReady(t, v)
	clock.advance(staleAfter + time.Second)
	// The stale key is still used, and a refresh starts in the background.
	if _, err := verifyBounded(t, v, payload(rs256(t, "a", "a", "u"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.hits.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh of a stale JWKS")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoteSingleFlight(t *testing.T) {
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	// A tiny interval: only single-flight prevents one fetch per miss.
	v, _ := newRemoteVerifier(t, srv, config.AuthConfig{JWKSRefreshInterval: time.Nanosecond})
	waitReady(t, v)

	gate := make(chan struct{})
	srv.set(func(s *jwksServer) {
		s.body = keySetJSON(t, pubJWK("a", "a"), pubJWK("b", "b"))
		s.gate = gate
	})
	tok := payload(rs256(t, "b", "b", "u"))
	const n = 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the misses pile up on the one fetch
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent miss: %v", err)
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times for %d concurrent misses, want 2 (prefetch + one)", got, n)
	}
}

func TestRemoteDownKeepsCachedKeys(t *testing.T) {
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	v, clock := newRemoteVerifier(t, srv, config.AuthConfig{JWKSRefreshInterval: time.Hour})
	waitReady(t, v)
	srv.set(func(s *jwksServer) { s.status = http.StatusInternalServerError; s.body = "down" })

	good := payload(rs256(t, "a", "a", "u"))
	if _, err := verifyBounded(t, v, good); err != nil {
		t.Fatalf("cached kid with JWKS down: %v", err)
	}
	_, err := verifyBounded(t, v, payload(rs256(t, "b", "b", "u")))
	wantRefusal(t, err, CodeInvalidToken, ReasonJWKSUnavailable)
	if srv.hits.Load() != 2 {
		t.Fatalf("hits = %d, want 2", srv.hits.Load())
	}
	// After the failure backoff a miss may retry although the interval has not passed.
	clock.advance(failedFetchBackoff)
	_, err = verifyBounded(t, v, payload(rs256(t, "b", "b", "u")))
	wantRefusal(t, err, CodeInvalidToken, ReasonJWKSUnavailable)
	if srv.hits.Load() != 3 {
		t.Fatalf("hits = %d, want 3", srv.hits.Load())
	}
	// Cached keys survive failed fetches; a server answering garbage is a failure too.
	srv.set(func(s *jwksServer) { s.status = http.StatusOK; s.body = `{"keys":[]}` })
	clock.advance(failedFetchBackoff)
	_, err = verifyBounded(t, v, payload(rs256(t, "b", "b", "u")))
	wantRefusal(t, err, CodeInvalidToken, ReasonJWKSUnavailable)
	if _, err := verifyBounded(t, v, good); err != nil {
		t.Fatalf("cached kid after failed fetches: %v", err)
	}
	if v.Ready() != nil {
		t.Fatalf("Ready after one good fetch: %v", v.Ready())
	}
	if got := counterValue(t, v.m.fetches.WithLabelValues("error")); got != 3 {
		t.Fatalf("fetch error metric = %v, want 3", got)
	}
}

func TestRemoteHangingJWKS(t *testing.T) {
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	srv.set(func(s *jwksServer) { s.hang = true })
	v, _ := newRemoteVerifier(t, srv, config.AuthConfig{JWKSTimeout: time.Minute, JWKSRefreshInterval: time.Hour})

	// The prefetch hangs: Verify waits for it, then gives up.
	_, err := verifyBounded(t, v, payload(rs256(t, "a", "a", "u")))
	wantRefusal(t, err, CodeInvalidToken, ReasonTimeout)
	if err := v.Ready(); err == nil || !strings.Contains(err.Error(), "not fetched yet") {
		t.Fatalf("Ready = %v", err)
	}
	// Close cancels the hanging fetch and returns.
	done := make(chan struct{})
	go func() { _ = v.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a hanging JWKS fetch")
	}
	// After Close, Verify still answers (no new fetch).
	_, err = verifyBounded(t, v, payload(rs256(t, "a", "a", "u")))
	wantRefusal(t, err, CodeInvalidToken, "")
}

func TestRemoteReadyRecovers(t *testing.T) {
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	srv.set(func(s *jwksServer) { s.status = http.StatusServiceUnavailable })
	v, clock := newRemoteVerifier(t, srv, config.AuthConfig{JWKSRefreshInterval: time.Hour})

	deadline := time.Now().Add(5 * time.Second)
	for {
		err := v.Ready()
		if err != nil && strings.Contains(err.Error(), "503") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready = %v, want the 503 error", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.set(func(s *jwksServer) { s.status = http.StatusOK })
	clock.advance(failedFetchBackoff)
	waitReady(t, v) // Ready itself starts the retry
	if _, err := verifyBounded(t, v, payload(rs256(t, "a", "a", "u"))); err != nil {
		t.Fatal(err)
	}
}
