package auth

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-jose/go-jose/v4"
)

const (
	// maxKeys bounds how many keys of one set are kept.
	maxKeys = 64
	// minRSABits is the smallest accepted modulus (crypto/rsa refuses less).
	minRSABits = 1024
)

// jwk is one usable RSA signing key.
type jwk struct {
	kid  string
	pub  *rsa.PublicKey
	priv *rsa.PrivateKey // nil unless the JWK had private parts
}

// parseKeySet parses {"keys":[JWK...]} and keeps the usable RSA signing keys
// (use "sig" or empty, alg RS256 or empty), in order. Unusable keys are
// skipped and logged; a set with no usable key is an error.
func parseKeySet(data []byte, logger *slog.Logger) ([]*jwk, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("key set is not {\"keys\":[...]} JSON: %w", err)
	}
	var out []*jwk
	var skipped []string
	for i, raw := range set.Keys {
		if len(out) == maxKeys {
			skipped = append(skipped, fmt.Sprintf("#%d: more than %d keys", i, maxKeys))
			break
		}
		k, err := parseKey(raw)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("#%d: %v", i, err))
			continue
		}
		out = append(out, k)
	}
	if len(skipped) > 0 && logger != nil {
		logger.Debug("auth: skipped JWKs", "skipped", skipped)
	}
	if len(out) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no usable RSA signing key (%s)", skipped[0])
		}
		return nil, errors.New("no usable RSA signing key")
	}
	return out, nil
}

// parseKey parses one JWK.
func parseKey(raw json.RawMessage) (*jwk, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("bad JWK: %w", err)
	}
	if k.Use != "" && k.Use != "sig" {
		return nil, fmt.Errorf("kid %q: use %q is not sig", k.KeyID, k.Use)
	}
	if k.Algorithm != "" && k.Algorithm != "RS256" {
		return nil, fmt.Errorf("kid %q: alg %q is not RS256", k.KeyID, k.Algorithm)
	}
	out := &jwk{kid: k.KeyID}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		out.pub = key
	case *rsa.PrivateKey:
		key.Precompute()
		out.priv = key
		out.pub = &key.PublicKey
	default:
		return nil, fmt.Errorf("kid %q: not an RSA key (%T)", k.KeyID, k.Key)
	}
	if out.pub.N == nil || out.pub.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("kid %q: RSA key shorter than %d bits", k.KeyID, minRSABits)
	}
	return out, nil
}
