package presence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/clowdr/realtime/plugins/sdk"
)

// NoConferencePrefix is what the browser client hashes in front of a path
// that is not under /conference/ (frontend PresenceState.ts). The original
// server used "/<<NO-CONF>>/" and so never matched its own client; we match
// the client.
const NoConferencePrefix = "<<NO-CONFERENCE>>"

// conferencePathPrefix marks a conference page.
const conferencePathPrefix = "/conference/"

// Reasons an argument is refused (wrapped in the errors ListID and
// ConferenceListID return).
var (
	// ErrEmpty: the path or slug is empty.
	ErrEmpty = errors.New("empty")
	// ErrTooLong: the path or slug is longer than the configured limit.
	ErrTooLong = errors.New("too long")
	// ErrInvalidUTF8: the path or slug is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("not valid UTF-8")
	// ErrForeignConference: the conference is not among the socket's.
	ErrForeignConference = errors.New("conference not among the socket's conferences")
)

// hashHex is lowercase hex sha256(a ‖ b).
func hashHex(a, b string) string {
	h := sha256.New()
	h.Write([]byte(a))
	h.Write([]byte(b))
	return hex.EncodeToString(h.Sum(nil))
}

func checkArg(what, v string, maxBytes int) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: %w", what, ErrEmpty)
	case maxBytes > 0 && len(v) > maxBytes:
		return fmt.Errorf("%s of %d bytes (max %d): %w", what, len(v), maxBytes, ErrTooLong)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s: %w", what, ErrInvalidUTF8)
	}
	return nil
}

// ListID computes the page key of path for socket s, as the browser client
// does: for "/conference/<slug>/..." it is hex(sha256(slug ‖ path)), allowed
// only when slug is among s.ConferenceSlugs; for any other path it is
// hex(sha256(NoConferencePrefix ‖ path)). No normalization is applied.
// maxBytes <= 0 means no length limit.
func ListID(s sdk.Socket, path string, maxBytes int) (string, error) {
	if err := checkArg("path", path, maxBytes); err != nil {
		return "", err
	}
	if !strings.HasPrefix(path, conferencePathPrefix) {
		return hashHex(NoConferencePrefix, path), nil
	}
	slug := strings.Split(path, "/")[2]
	if slug == "" || !s.HasConference(slug) {
		return "", fmt.Errorf("path %q: %w", truncate(path, 80), ErrForeignConference)
	}
	return hashHex(slug, path), nil
}

// ConferenceListID is the list id of a whole conference (conferencePresence,
// observeConference): the bare slug, allowed only when it is among
// s.ConferenceSlugs.
func ConferenceListID(s sdk.Socket, slug string, maxBytes int) (string, error) {
	if err := checkArg("slug", slug, maxBytes); err != nil {
		return "", err
	}
	if !s.HasConference(slug) {
		return "", fmt.Errorf("slug %q: %w", truncate(slug, 80), ErrForeignConference)
	}
	return slug, nil
}

// truncate shortens s for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
