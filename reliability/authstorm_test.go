package reliability

import (
	"context"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"
)

// badTokens returns n tokens of each kind the storm sends: garbage, a bad
// signature under the real kid, an unknown kid, and an expired token.
func badTokens(t *testing.T, good *rsa.PrivateKey, kid string, n int) []string {
	other, _, err := testserver.NewKey("other")
	if err != nil {
		t.Fatal(err)
	}
	expired := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"sub": "x", "iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix(),
			"https://hasura.io/jwt/claims": map[string]any{"x-hasura-user-id": "x"},
		})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(good)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var out []string
	for i := 0; i < n; i++ {
		out = append(out,
			"garbage."+newUUID()+".x",
			signToken(t, other, kid, "mallory"),
			signToken(t, other, "unknown-"+newUUID(), "mallory"),
			expired(),
		)
	}
	return out
}

// TestAuthStorm sends about 1,000 bad tokens per second for 3 s while good
// clients connect, against a server that verifies with a remote JWKS, and
// checks that every good connect succeeds, every bad attempt is refused,
// and unknown key ids do not turn into a stream of JWKS fetches. Then the
// JWKS endpoint goes down: good clients still connect with the cached keys.
func TestAuthStorm(t *testing.T) {
	t.Parallel()
	const (
		stormFor   = 3 * time.Second
		badPerSec  = 1000
		goodEvery  = 100 * time.Millisecond
		maxFetches = 3 // the prefetch, one refetch for unknown kids per 30s, one retry
	)
	key, kid, err := testserver.NewKey("auth")
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	var jwksDown atomic.Bool
	set := testserver.JWKSJSON(map[string]*rsa.PrivateKey{kid: key})
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if jwksDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(set))
	}))
	defer jwks.Close()
	s := launch(t, serverOpts{name: "auth-storm", noTestJWKS: true, args: []string{"--set", "auth.jwks_url=" + jwks.URL + "/.well-known/jwks.json"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bad := badTokens(t, key, kid, 25)
	fetchesBefore := fetches.Load()

	// The storm: workers share a 1,000/s limiter; each connection carries
	// up to 5 CONNECT attempts (the server's limit per connection).
	lim := rate.NewLimiter(badPerSec, 50)
	stormCtx, stopStorm := context.WithTimeout(ctx, stormFor)
	defer stopStorm()
	var attempts, refused, accepted, broken atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 24; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; stormCtx.Err() == nil; {
				ws, err := dialRaw(s.URL)
				if err != nil {
					broken.Add(1)
					continue
				}
				for a := 0; a < 5 && stormCtx.Err() == nil; a++ {
					if lim.Wait(stormCtx) != nil {
						break
					}
					i++
					attempts.Add(1)
					if err := ws.text(`40{"token":"` + bad[i%len(bad)] + `"}`); err != nil {
						broken.Add(1)
						break
					}
					m, err := ws.expect("4", 10*time.Second)
					switch {
					case err != nil:
						broken.Add(1)
					case strings.HasPrefix(m, `44{"message":"Unauthorized: Token is missing or invalid Bearer"`):
						refused.Add(1)
					default:
						accepted.Add(1)
					}
					if err != nil {
						break
					}
				}
				ws.Close()
			}
		}()
	}
	// Good clients connect meanwhile.
	var goodOK, goodFail atomic.Int64
	var slowest atomic.Int64
	var gwg sync.WaitGroup
	tick := time.NewTicker(goodEvery)
	started := time.Now()
	for time.Since(started) < stormFor {
		<-tick.C
		gwg.Add(1)
		go func() {
			defer gwg.Done()
			t0 := time.Now()
			c, err := sioclient.Dial(ctx, s.URL, sioclient.Options{Token: signToken(t, key, kid, "good-"+newUUID()), ConnectTimeout: 30 * time.Second})
			if err != nil {
				goodFail.Add(1)
				t.Errorf("good connect during the storm: %v", err)
				return
			}
			c.Close()
			goodOK.Add(1)
			for d := time.Since(t0).Nanoseconds(); ; {
				cur := slowest.Load()
				if d <= cur || slowest.CompareAndSwap(cur, d) {
					break
				}
			}
		}()
	}
	tick.Stop()
	gwg.Wait()
	wg.Wait()
	stormFetches := fetches.Load() - fetchesBefore
	t.Logf("storm: %d bad tokens in %v (%.0f/s): %d refused, %d accepted, %d broken connections; good connects %d ok, %d failed, slowest %v; JWKS fetches during the storm %d",
		attempts.Load(), stormFor, float64(attempts.Load())/stormFor.Seconds(), refused.Load(), accepted.Load(), broken.Load(),
		goodOK.Load(), goodFail.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), stormFetches)
	if accepted.Load() > 0 {
		t.Errorf("%d bad tokens were accepted", accepted.Load())
	}
	if refused.Load() != attempts.Load() {
		t.Errorf("%d bad attempts, %d refused with the invalid-token answer", attempts.Load(), refused.Load())
	}
	if goodOK.Load() == 0 || goodFail.Load() > 0 {
		t.Errorf("good connects: %d ok, %d failed", goodOK.Load(), goodFail.Load())
	}
	if stormFetches > maxFetches {
		t.Errorf("%d JWKS fetches during the storm, want at most %d (unknown kids must be rate-limited)", stormFetches, maxFetches)
	}
	if s.exited() {
		t.Fatalf("server exited during the storm: %v", s.err)
	}

	// The JWKS endpoint goes down: cached keys keep working.
	jwksDown.Store(true)
	unknown := signToken(t, key, "rotated-"+newUUID(), "someone") // forces a (failing) refetch
	if _, _, err := tryDial(ctx, s.URL, unknown); err == nil {
		t.Errorf("a token with an unknown kid was accepted while the JWKS is down")
	} else {
		var ce *sioclient.ConnectError
		if !errors.As(err, &ce) {
			t.Errorf("unknown kid while the JWKS is down: %v, want a CONNECT_ERROR", err)
		}
	}
	for i := 0; i < 10; i++ {
		c, err := sioclient.Dial(ctx, s.URL, sioclient.Options{Token: signToken(t, key, kid, "cached-"+newUUID()), ConnectTimeout: 30 * time.Second})
		if err != nil {
			t.Errorf("good connect %d while the JWKS is down: %v", i, err)
			continue
		}
		c.Close()
	}
	code, body := s.readyz()
	t.Logf("JWKS down: /readyz %d %.200s", code, body)
	if code != http.StatusOK {
		t.Errorf("/readyz %d while the JWKS is down but keys are cached: %s", code, body)
	}
}
