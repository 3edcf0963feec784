package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue reads a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// testKeys are generated once per test binary.
var testKeys = sync.OnceValue(func() map[string]*rsa.PrivateKey {
	out := map[string]*rsa.PrivateKey{}
	for _, name := range []string{"a", "b", "c", "t", "other"} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		out[name] = k
	}
	return out
})

func key(name string) *rsa.PrivateKey { return testKeys()[name] }

// pubJWK is the public JWK of a test key with the given kid.
func pubJWK(name, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &key(name).PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}
}

// privJWK is the private JWK of a test key with the given kid.
func privJWK(name, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key(name), KeyID: kid, Algorithm: "RS256", Use: "sig"}
}

// keySetJSON encodes {"keys":[...]}.
func keySetJSON(t testing.TB, keys ...jose.JSONWebKey) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Keys []jose.JSONWebKey `json:"keys"`
	}{keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claimsFor are valid claims for user uid.
func claimsFor(uid string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		HasuraClaimsKey: map[string]any{
			"x-hasura-user-id":       uid,
			"x-hasura-default-role":  "user",
			"x-hasura-allowed-roles": []string{"user"},
		},
		"sub": "sub-" + uid,
		"iat": now.Unix(),
		"exp": now.Add(24 * time.Hour).Unix(),
	}
}

// mint signs claims with method and key, setting kid unless it is "".
func mint(t testing.TB, method jwt.SigningMethod, k any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rs256 signs valid claims for uid with test key name and kid.
func rs256(t testing.TB, name, kid, uid string) string {
	t.Helper()
	return mint(t, jwt.SigningMethodRS256, key(name), kid, claimsFor(uid))
}

// payload is the CONNECT payload {"token": tok}.
func payload(tok string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"token": tok})
	return b
}

// jwksServer serves a mutable key set and counts requests.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	hang    bool
	gate    chan struct{} // when non-nil, requests wait for it to close
	hits    atomic.Int64
	release chan struct{}
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	t.Helper()
	s := &jwksServer{body: body, status: http.StatusOK, release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) }) // runs before s.Close
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	body, status, hang, gate := s.body, s.status, s.hang, s.gate
	s.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		case <-s.release:
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (s *jwksServer) set(fn func(s *jwksServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// waitReady polls Ready until it succeeds (test fails after 5 s).
func waitReady(t *testing.T, v *Verifier) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := v.Ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("verifier not ready: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// verifyBounded runs Verify and fails the test if it does not return in 5 s.
func verifyBounded(t *testing.T, v *Verifier, p json.RawMessage) (Identity, error) {
	t.Helper()
	type res struct {
		id  Identity
		err error
	}
	ch := make(chan res, 1)
	go func() {
		id, err := v.Verify(context.Background(), p)
		ch <- res{id, err}
	}()
	select {
	case r := <-ch:
		return r.id, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Verify hung")
		return Identity{}, nil
	}
}

// wantRefusal checks err is a Refusal with the exact code and message for code.
func wantRefusal(t *testing.T, err error, code, reason string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("err = %v, want *Refusal", err)
	}
	wantMsg := MessageInvalidToken
	if code == CodeCredentialsRequired {
		wantMsg = MessageNoToken
	}
	if r.Code != code || r.Message != wantMsg {
		t.Fatalf("refusal = {%q, %q}, want {%q, %q}", r.Code, r.Message, code, wantMsg)
	}
	if reason != "" && r.Reason != reason {
		t.Fatalf("reason = %q, want %q (err %v)", r.Reason, reason, r.Err)
	}
}
