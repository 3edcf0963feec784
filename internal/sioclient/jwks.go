package sioclient

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
)

// GenerateTestJWKS makes a fresh RS256 key and returns it as a JSON key set
// with private parts, {"keys":[{...}]}: the form of the server's TEST_JWKS,
// whose first key the server (and host/auth's Sign) signs tokens with.
func GenerateTestJWKS() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("sioclient: generate key: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("sioclient: generate kid: %w", err)
	}
	enc := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	key.Precompute()
	jwk := map[string]string{
		"kty": "RSA", "kid": "bench-" + hex.EncodeToString(b[:]), "alg": "RS256", "use": "sig",
		"n": enc(key.N), "e": enc(big.NewInt(int64(key.E))),
		"d": enc(key.D), "p": enc(key.Primes[0]), "q": enc(key.Primes[1]),
		"dp": enc(key.Precomputed.Dp), "dq": enc(key.Precomputed.Dq), "qi": enc(key.Precomputed.Qinv),
	}
	out, err := json.Marshal(map[string]any{"keys": []any{jwk}})
	if err != nil {
		return nil, fmt.Errorf("sioclient: encode key set: %w", err)
	}
	return out, nil
}
