package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// withoutPlugins turns every built-in plugin off: /test/jwt is the host's.
func withoutPlugins(sets ...string) []string {
	for _, n := range sdk.Registered() {
		sets = append(sets, "plugins."+n+".enabled=false")
	}
	return sets
}

// TestTestJWT: with TEST_JWKS set, GET /test/jwt answers a token signed with
// its first key carrying the original's claims (spec §8.3), which the
// verifier accepts; a missing parameter answers the original's 500 texts.
func TestTestJWT(t *testing.T) {
	// A key set with private parts, as TEST_JWKS must be for /test/jwt.
	jwks, err := auth.DevKeySet(filepath.Join(t.TempDir(), "test-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("key set %s: %v", jwks, err)
	}
	base := start(t, withoutPlugins("auth.test_jwks="+string(jwks))...)

	resp, err := http.Get(base + "/test/jwt?userId=u&confSlug=c")
	if err != nil {
		t.Fatal(err)
	}
	tok := readBody(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/test/jwt: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), tok)
	}

	// The verifier checks signature, expiry, issuer and audience.
	v, err := auth.New(config.AuthConfig{TestJWKS: string(jwks), Issuer: "https://auth.midspace.app/", Audience: "hasura"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	payload, _ := json.Marshal(map[string]string{"token": tok})
	id, err := v.Verify(context.Background(), payload)
	if err != nil {
		t.Fatalf("verify the token from /test/jwt: %v", err)
	}
	if id.UserID != "u" || id.Subject != "u" || id.Claims["x-hasura-default-role"] != "user" {
		t.Errorf("identity %+v, want user and subject u with default role user", id)
	}
	if roles, _ := id.Claims["x-hasura-allowed-roles"].([]any); len(roles) != 1 || roles[0] != "user" {
		t.Errorf("x-hasura-allowed-roles %v, want [user]", id.Claims["x-hasura-allowed-roles"])
	}

	// The claims the verifier does not expose: both audiences, 30 minutes
	// of validity, the first key's kid.
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	aud, _ := claims.GetAudience()
	if !slices.Equal(aud, jwt.ClaimStrings{"hasura", "https://clowdr.eu.auth0.com/userinfo"}) {
		t.Errorf("aud %v", aud)
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if exp == nil || iat == nil || exp.Sub(iat.Time).Seconds() != 1800 {
		t.Errorf("exp %v iat %v, want exp = iat + 1800 s", exp, iat)
	}
	if parsed.Header["kid"] != set.Keys[0].Kid || parsed.Method.Alg() != "RS256" {
		t.Errorf("header %v, want RS256 with kid %q", parsed.Header, set.Keys[0].Kid)
	}

	for _, c := range []struct{ query, want string }{
		{"confSlug=c", "Error: Missing userId query parameter"},
		{"userId=u", "Error: Missing confSlug query parameter"},
		{"", "Error: Missing userId query parameter"},
	} {
		if code, body := get(t, "GET", base+"/test/jwt?"+c.query); code != 500 || body != c.want {
			t.Errorf("/test/jwt?%s: %d %q, want 500 %q", c.query, code, body, c.want)
		}
	}
}

// TestTestJWTNeedsTestJWKS: without TEST_JWKS there is no /test/jwt; the
// request gets whatever any unknown path gets.
func TestTestJWTNeedsTestJWKS(t *testing.T) {
	base := start(t, withoutPlugins()...)
	code, body := get(t, "GET", base+"/test/jwt?userId=u&confSlug=c")
	otherCode, otherBody := get(t, "GET", base+"/no/such/route?userId=u&confSlug=c")
	if code != otherCode || body != otherBody {
		t.Fatalf("/test/jwt without TEST_JWKS: %d %q, want the catch-all's %d %q", code, body, otherCode, otherBody)
	}
	if _, _, err := jwt.NewParser().ParseUnverified(body, jwt.MapClaims{}); err == nil {
		t.Fatalf("/test/jwt without TEST_JWKS answered a token")
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
