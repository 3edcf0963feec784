package auth

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of the tokens made by Sign (those of the original GET /test/jwt).
const (
	DefaultTokenTTL = 30 * time.Minute
	defaultIssuer   = "https://auth.midspace.app/"
)

var defaultAudience = []string{"hasura", "https://clowdr.eu.auth0.com/userinfo"}

// CanSign reports whether Sign works: the first TEST_JWKS or dev key has
// private parts.
func (v *Verifier) CanSign() bool {
	return len(v.local) > 0 && v.local[0].priv != nil
}

// Sign makes an RS256 token for userID with the first local key (header kid
// set), like the original GET /test/jwt: Hasura claims with x-hasura-user-id,
// default role "user" and allowed roles ["user"]; sub; aud (with
// AuthConfig.Audience added when set); iss (AuthConfig.Issuer, or the
// original's); iat; exp = now + ttl (DefaultTokenTTL when ttl <= 0).
// extra keys starting with "x-hasura-" go into the Hasura claims object (a map
// under HasuraClaimsKey is merged into it); other keys are top-level claims
// and override the defaults. x-hasura-user-id is always userID.
func (v *Verifier) Sign(userID string, ttl time.Duration, extra map[string]any) (string, error) {
	if !v.CanSign() {
		return "", ErrCannotSign
	}
	if userID == "" {
		return "", errors.New("auth: sign: empty user id")
	}
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	now := v.now()
	hasura := map[string]any{
		"x-hasura-default-role":  "user",
		"x-hasura-allowed-roles": []string{"user"},
	}
	iss := defaultIssuer
	if v.cfg.Issuer != "" {
		iss = v.cfg.Issuer
	}
	aud := slices.Clone(defaultAudience)
	if v.cfg.Audience != "" && !slices.Contains(aud, v.cfg.Audience) {
		aud = append([]string{v.cfg.Audience}, aud...)
	}
	claims := jwt.MapClaims{
		"sub": userID,
		"aud": aud,
		"iss": iss,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	for k, val := range extra {
		switch {
		case k == HasuraClaimsKey:
			if m, ok := val.(map[string]any); ok {
				maps.Copy(hasura, m)
			}
		case strings.HasPrefix(k, "x-hasura-"):
			hasura[k] = val
		default:
			claims[k] = val
		}
	}
	hasura["x-hasura-user-id"] = userID
	claims[HasuraClaimsKey] = hasura

	key := v.local[0]
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if key.kid != "" {
		t.Header["kid"] = key.kid
	}
	s, err := t.SignedString(key.priv)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}
