package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
)

// newAuth0Verifier builds a verifier with TEST_JWKS key "t" (kid t) and a
// JWKS server holding key "a" (kid a), and waits until the JWKS is fetched.
func newAuth0Verifier(t *testing.T, cfg config.AuthConfig) (*Verifier, *jwksServer) {
	t.Helper()
	srv := newJWKSServer(t, keySetJSON(t, pubJWK("a", "a")))
	cfg.JWKSURL = srv.URL
	if cfg.TestJWKS == "" {
		cfg.TestJWKS = keySetJSON(t, privJWK("t", "t"))
	}
	if cfg.JWKSRefreshInterval == 0 {
		cfg.JWKSRefreshInterval = time.Hour
	}
	v, err := New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	waitReady(t, v)
	return v, srv
}

func TestVerifyRefusals(t *testing.T) {
	v, _ := newAuth0Verifier(t, config.AuthConfig{})

	pemPub, err := x509.MarshalPKIXPublicKey(&key("a").PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pemPub})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	expired := claimsFor("u1")
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	notYet := claimsFor("u1")
	notYet["nbf"] = time.Now().Add(time.Hour).Unix()
	badExp := claimsFor("u1")
	badExp["exp"] = "tomorrow"
	good := rs256(t, "a", "a", "u1")
	parts := strings.Split(good, ".")
	otherPayload := strings.Split(rs256(t, "a", "a", "admin"), ".")[1]
	tampered := parts[0] + "." + otherPayload + "." + parts[2]
	numKid := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claimsFor("u1"))
		tok.Header["kid"] = 42
		s, err := tok.SignedString(key("a"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	unknownAlg := func() string {
		h := `{"alg":"XX256","typ":"JWT","kid":"a"}`
		return base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + parts[1] + "." + parts[2]
	}()

	cases := []struct {
		name    string
		payload json.RawMessage
		code    string
		reason  string
	}{
		{"nil payload", nil, CodeCredentialsRequired, ReasonNoToken},
		{"null payload", json.RawMessage(`null`), CodeCredentialsRequired, ReasonNoToken},
		{"empty object", json.RawMessage(`{}`), CodeCredentialsRequired, ReasonNoToken},
		{"token null", json.RawMessage(`{"token":null}`), CodeCredentialsRequired, ReasonNoToken},
		{"token number", json.RawMessage(`{"token":123}`), CodeCredentialsRequired, ReasonNoToken},
		{"token object", json.RawMessage(`{"token":{"a":1}}`), CodeCredentialsRequired, ReasonNoToken},
		{"token empty", json.RawMessage(`{"token":""}`), CodeCredentialsRequired, ReasonNoToken},
		{"payload string", json.RawMessage(`"` + good + `"`), CodeCredentialsRequired, ReasonNoToken},
		{"payload array", json.RawMessage(`[1]`), CodeCredentialsRequired, ReasonNoToken},
		{"payload invalid JSON", json.RawMessage(`{"token":`), CodeCredentialsRequired, ReasonNoToken},
		{"garbage", payload("not-a-jwt"), CodeInvalidToken, ReasonMalformed},
		{"three garbage segments", payload("a.b.c"), CodeInvalidToken, ReasonMalformed},
		{"bearer prefix", payload("Bearer " + good), CodeInvalidToken, ReasonMalformed},
		{"alg none", payload(mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"HS256 shared secret", payload(mint(t, jwt.SigningMethodHS256, []byte("secret"), "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"HS256 with RSA public key as secret", payload(mint(t, jwt.SigningMethodHS256, pemBytes, "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"HS256 with RSA public key DER as secret", payload(mint(t, jwt.SigningMethodHS256, pemPub, "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"RS384", payload(mint(t, jwt.SigningMethodRS384, key("a"), "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"RS512", payload(mint(t, jwt.SigningMethodRS512, key("a"), "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"PS256", payload(mint(t, jwt.SigningMethodPS256, key("a"), "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"ES256", payload(mint(t, jwt.SigningMethodES256, ecKey, "a", claimsFor("u1"))), CodeInvalidToken, ReasonBadAlgorithm},
		{"unknown alg", payload(unknownAlg), CodeInvalidToken, ReasonBadAlgorithm},
		{"signed by another key, known kid", payload(rs256(t, "other", "a", "u1")), CodeInvalidToken, ReasonBadSignature},
		{"signed by another key, test kid", payload(rs256(t, "other", "t", "u1")), CodeInvalidToken, ReasonBadSignature},
		{"no kid, not a test key", payload(rs256(t, "other", "", "u1")), CodeInvalidToken, ReasonBadSignature},
		{"tampered payload", payload(tampered), CodeInvalidToken, ReasonBadSignature},
		{"expired", payload(mint(t, jwt.SigningMethodRS256, key("a"), "a", expired)), CodeInvalidToken, ReasonExpired},
		{"not yet valid", payload(mint(t, jwt.SigningMethodRS256, key("t"), "t", notYet)), CodeInvalidToken, ReasonNotYetValid},
		{"exp not a number", payload(mint(t, jwt.SigningMethodRS256, key("a"), "a", badExp)), CodeInvalidToken, ReasonInvalidClaims},
		{"unknown kid after refresh", payload(rs256(t, "other", "zzz", "u1")), CodeInvalidToken, ReasonUnknownKID},
		{"second unknown kid", payload(rs256(t, "b", "b", "u1")), CodeInvalidToken, ReasonUnknownKID},
		{"kid not a string", payload(numKid), CodeInvalidToken, ReasonUnknownKID},
		{"too large", payload(strings.Repeat("x", maxTokenLen+1)), CodeInvalidToken, ReasonTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verifyBounded(t, v, tc.payload)
			wantRefusal(t, err, tc.code, tc.reason)
			if id.UserID != "" {
				t.Fatalf("refused token gave user %q", id.UserID)
			}
		})
	}
	if got := counterValue(t, v.m.failures.WithLabelValues(CodeInvalidToken, ReasonBadAlgorithm)); got < 9 {
		t.Fatalf("bad_algorithm failures counted = %v, want >= 9", got)
	}
	if got := counterValue(t, v.m.failures.WithLabelValues(CodeCredentialsRequired, ReasonNoToken)); got != 10 {
		t.Fatalf("no_token failures counted = %v, want 10", got)
	}
}

func TestVerifyGoodTokens(t *testing.T) {
	v, srv := newAuth0Verifier(t, config.AuthConfig{})
	if v.Mode() != ModeAuth0 {
		t.Fatalf("mode = %q", v.Mode())
	}
	cases := []struct {
		name, tok, user string
	}{
		{"TEST_JWKS key by kid", rs256(t, "t", "t", "u-test"), "u-test"},
		{"TEST_JWKS key without kid", rs256(t, "t", "", "u-nokid"), "u-nokid"},
		{"JWKS key by kid", rs256(t, "a", "a", "u-remote"), "u-remote"},
		{"JWKS key again", rs256(t, "a", "a", "u-remote2"), "u-remote2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verifyBounded(t, v, payload(tc.tok))
			if err != nil {
				t.Fatal(err)
			}
			if id.UserID != tc.user || id.Subject != "sub-"+tc.user {
				t.Fatalf("identity = %+v", id)
			}
			if id.Claims["x-hasura-default-role"] != "user" {
				t.Fatalf("claims = %v", id.Claims)
			}
			if d := time.Until(id.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour+time.Minute {
				t.Fatalf("ExpiresAt = %v", id.ExpiresAt)
			}
		})
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (cache hits)", n)
	}
}

func TestVerifyNoHasuraClaims(t *testing.T) {
	v, _ := newAuth0Verifier(t, config.AuthConfig{})
	noClaims := claimsFor("u")
	delete(noClaims, HasuraClaimsKey)
	emptyUser := claimsFor("")
	numUser := claimsFor("u")
	numUser[HasuraClaimsKey] = map[string]any{"x-hasura-user-id": 7}
	strClaims := claimsFor("u")
	strClaims[HasuraClaimsKey] = `{"x-hasura-user-id":"u"}`
	noExp := claimsFor("u")
	delete(noExp, "exp")

	cases := []struct {
		name    string
		claims  jwt.MapClaims
		wantErr error
		subject string
	}{
		{"no claims object", noClaims, ErrNoHasuraClaims, "sub-u"},
		{"empty user id", emptyUser, ErrNoHasuraClaims, "sub-"},
		{"numeric user id", numUser, ErrNoHasuraClaims, "sub-u"},
		{"stringified claims", strClaims, ErrNoHasuraClaims, "sub-u"},
		{"no exp is accepted", noExp, nil, "sub-u"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verifyBounded(t, v, payload(mint(t, jwt.SigningMethodRS256, key("t"), "t", tc.claims)))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var r *Refusal
			if errors.As(err, &r) {
				t.Fatalf("got a refusal %v", r)
			}
			if id.Subject != tc.subject {
				t.Fatalf("subject = %q, want %q", id.Subject, tc.subject)
			}
		})
	}
}

func TestVerifyIssuerAudience(t *testing.T) {
	const iss, aud = "https://issuer.example/", "realtime"
	v, _ := newAuth0Verifier(t, config.AuthConfig{Issuer: iss, Audience: aud})
	with := func(mod func(c jwt.MapClaims)) string {
		c := claimsFor("u")
		c["iss"] = iss
		c["aud"] = []string{"hasura", aud}
		mod(c)
		return mint(t, jwt.SigningMethodRS256, key("a"), "a", c)
	}
	cases := []struct {
		name   string
		tok    string
		reason string // "" = accepted
	}{
		{"matching", with(func(jwt.MapClaims) {}), ""},
		{"aud as string", with(func(c jwt.MapClaims) { c["aud"] = aud }), ""},
		{"wrong issuer", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" }), ReasonIssuer},
		{"missing issuer", with(func(c jwt.MapClaims) { delete(c, "iss") }), ReasonIssuer},
		{"wrong audience", with(func(c jwt.MapClaims) { c["aud"] = []string{"hasura"} }), ReasonAudience},
		{"missing audience", with(func(c jwt.MapClaims) { delete(c, "aud") }), ReasonAudience},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verifyBounded(t, v, payload(tc.tok))
			if tc.reason == "" {
				if err != nil || id.UserID != "u" {
					t.Fatalf("id %+v, err %v", id, err)
				}
				return
			}
			wantRefusal(t, err, CodeInvalidToken, tc.reason)
		})
	}

	// Without Issuer/Audience configured, neither is checked (as the original).
	v2, _ := newAuth0Verifier(t, config.AuthConfig{})
	if _, err := verifyBounded(t, v2, payload(with(func(c jwt.MapClaims) { c["iss"] = "x"; c["aud"] = "y" }))); err != nil {
		t.Fatalf("unchecked iss/aud refused: %v", err)
	}
}

func TestTestModeAndSign(t *testing.T) {
	cfg := config.AuthConfig{TestJWKS: keySetJSON(t, privJWK("t", "kid-t"), privJWK("b", "kid-b")), Audience: "rt", Issuer: "https://iss/"}
	v, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Mode() != ModeTest || !v.CanSign() || v.Ready() != nil {
		t.Fatalf("mode %q canSign %v ready %v", v.Mode(), v.CanSign(), v.Ready())
	}
	tok, err := v.Sign("user-1", 10*time.Minute, map[string]any{"x-hasura-conference-slug": "conf", "extra": "e", "x-hasura-user-id": "spoof"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), payload(tok))
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "user-1" || id.Subject != "user-1" || id.Claims["x-hasura-conference-slug"] != "conf" {
		t.Fatalf("identity = %+v", id)
	}

	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	c := parsed.Claims.(jwt.MapClaims)
	if parsed.Header["kid"] != "kid-t" || parsed.Header["alg"] != "RS256" {
		t.Fatalf("header = %v", parsed.Header)
	}
	h := c[HasuraClaimsKey].(map[string]any)
	if h["x-hasura-default-role"] != "user" || len(h["x-hasura-allowed-roles"].([]any)) != 1 {
		t.Fatalf("hasura claims = %v", h)
	}
	aud, _ := c.GetAudience()
	if c["iss"] != "https://iss/" || len(aud) != 3 || aud[0] != "rt" || c["extra"] != "e" {
		t.Fatalf("claims = %v", c)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 600 {
		t.Fatalf("exp-iat = %v", exp-iat)
	}

	// Public-only TEST_JWKS cannot sign.
	pub, err := New(config.AuthConfig{TestJWKS: keySetJSON(t, pubJWK("t", "t"))}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pub.CanSign() {
		t.Fatal("public-only key set can sign")
	}
	if _, err := pub.Sign("u", 0, nil); !errors.Is(err, ErrCannotSign) {
		t.Fatalf("Sign err = %v", err)
	}
	if _, err := v.Sign("", 0, nil); err == nil {
		t.Fatal("Sign with empty user id succeeded")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	encKey := pubJWK("t", "t")
	encKey.Use = "enc"
	cases := []struct {
		name string
		cfg  config.AuthConfig
	}{
		{"TEST_JWKS not JSON", config.AuthConfig{TestJWKS: "nope"}},
		{"TEST_JWKS without RSA signing key", config.AuthConfig{TestJWKS: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`}},
		{"TEST_JWKS enc key only", config.AuthConfig{TestJWKS: keySetJSON(t, encKey)}},
		{"bad JWKS URL", config.AuthConfig{JWKSURL: "ftp://x/"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if v, err := New(tc.cfg, nil, nil); err == nil {
				v.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestJWKSURL(t *testing.T) {
	cases := []struct{ domain, override, want string }{
		{"clowdr.eu.auth0.com", "", "https://clowdr.eu.auth0.com/.well-known/jwks.json"},
		{"https://x.auth0.com/", "", "https://x.auth0.com/.well-known/jwks.json"},
		{"x.auth0.com", "http://127.0.0.1:1/jwks", "http://127.0.0.1:1/jwks"},
		{"", "", ""},
	}
	for _, tc := range cases {
		got, err := jwksURL(config.AuthConfig{Auth0Domain: tc.domain, JWKSURL: tc.override})
		if err != nil || got != tc.want {
			t.Errorf("jwksURL(%q, %q) = %q, %v; want %q", tc.domain, tc.override, got, err, tc.want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	v, err := New(config.AuthConfig{TestJWKS: keySetJSON(b, privJWK("t", "t"))}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := payload(rs256(b, "t", "t", "u"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}
