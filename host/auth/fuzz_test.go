package auth

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/clowdr/realtime/host/config"
)

// fuzzVerifier is a test-mode verifier (no network) shared by fuzz runs.
var fuzzVerifier = sync.OnceValues(func() (*Verifier, error) {
	b, err := json.Marshal(struct {
		Keys []any `json:"keys"`
	}{[]any{privJWK("t", "t")}})
	if err != nil {
		return nil, err
	}
	return New(config.AuthConfig{TestJWKS: string(b)}, nil, nil)
})

// FuzzVerify feeds random bytes as the CONNECT payload and as the token:
// Verify must never panic and must only answer the documented outcomes.
func FuzzVerify(f *testing.F) {
	v, err := fuzzVerifier()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(rs256(f, "t", "t", "u")))
	f.Add([]byte(rs256(f, "t", "", "u")))
	f.Add([]byte(`{"token":"a.b.c"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tokenPayload, _ := json.Marshal(map[string]string{"token": string(data)})
		for _, p := range []json.RawMessage{data, tokenPayload} {
			id, err := v.Verify(context.Background(), p)
			var r *Refusal
			switch {
			case err == nil:
				if id.UserID == "" {
					t.Fatal("accepted without a user id")
				}
			case errors.Is(err, ErrNoHasuraClaims):
			case errors.As(err, &r):
				ok := (r.Code == CodeCredentialsRequired && r.Message == MessageNoToken) ||
					(r.Code == CodeInvalidToken && r.Message == MessageInvalidToken)
				if !ok {
					t.Fatalf("unexpected refusal %+v", r)
				}
				if r.Reason == ReasonInternal {
					t.Fatalf("Verify panicked: %v", r.Err)
				}
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}
