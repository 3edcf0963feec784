package kit

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/clowdr/realtime/plugins/sdk"
)

// EventSecretHeader is the header Hasura sends the event secret in.
const EventSecretHeader = "X-Hasura-Event-Secret"

// SecretEqual compares got and want in constant time (both are hashed
// first, so the length does not leak either).
func SecretEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// EventSecretOK reports whether h carries exactly one x-hasura-event-secret
// header equal to secret. An empty secret refuses everything.
func EventSecretOK(h http.Header, secret string) bool {
	if secret == "" {
		return false
	}
	got := h.Values(EventSecretHeader)
	if len(got) != 1 {
		return false
	}
	return SecretEqual(got[0], secret)
}

// HTMLHeader returns a new header with the Content-Type of an HTML answer
// (what Express sends for a string body).
func HTMLHeader() http.Header { return http.Header{"Content-Type": {"text/html; charset=utf-8"}} }

// JSONHeader returns a new header with the Content-Type of a JSON answer.
func JSONHeader() http.Header {
	return http.Header{"Content-Type": {"application/json; charset=utf-8"}}
}

// TextResponse is an answer with a plain string body, sent as HTML.
func TextResponse(status int, body string) sdk.HTTPResponse {
	return sdk.HTTPResponse{Status: status, Header: HTMLHeader(), Body: []byte(body)}
}

// uuidRE is uuid@8's validate regex: versions 1-5 with an RFC variant, or the
// nil UUID, case-insensitive.
var uuidRE = regexp.MustCompile(`(?i)^(?:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|00000000-0000-0000-0000-000000000000)$`)

// ValidUUID reports whether s passes uuid@8's validate.
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// JSONString returns raw as a string when it is a JSON string (no leading
// space allowed), and false for any other value.
func JSONString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
