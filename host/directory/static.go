package directory

import (
	"context"
	"slices"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Static is the directory for local runs and tests: it answers from config
// alone, with no database.
//
// The rules:
//   - every user is a member of cfg.Conferences and, when cfg.TestMode is
//     set (the original's TEST_MODE), of "test-conference-slug" too;
//   - a registrant id equals the user id it belongs to: Registrant(id) is
//     {ID: id, UserID: id, DisplayName: id} for any non-empty id;
//   - chat rooms and event rooms are public: CanSelectChat and CanAccessEvent
//     are true when the socket has at least one conference;
//   - CanWriteChat is true, for a socket with a conference, when the stored
//     sender is the socket's user (its own message) or the user is a chair
//     (moderators may edit anyone's message and send without a sender);
//   - IsEventChair is true when the user id is in cfg.Chairs.
type Static struct {
	conferences []string
	chairs      map[string]struct{}
}

var _ sdk.Directory = (*Static)(nil)

// NewStatic builds the static directory from cfg.
func NewStatic(cfg config.DirectoryConfig) *Static {
	confs := slices.Clone(cfg.Conferences)
	// directory.conferences defaults to [demo], so test mode adds its slug
	// rather than replacing an empty list: TEST_MODE=true alone must give
	// the original's test-conference-slug.
	if cfg.TestMode && !slices.Contains(confs, TestConferenceSlug) {
		confs = append(confs, TestConferenceSlug)
	}
	chairs := make(map[string]struct{}, len(cfg.Chairs))
	for _, c := range cfg.Chairs {
		if c != "" {
			chairs[c] = struct{}{}
		}
	}
	return &Static{conferences: confs, chairs: chairs}
}

// Name returns "static".
func (d *Static) Name() string { return BackendStatic }

// Ready is always nil: the static directory depends on nothing. It exists so
// /readyz lists the directory whichever the backend.
func (d *Static) Ready(context.Context) error { return nil }

// ConferenceSlugs returns the configured conferences for any non-empty user.
func (d *Static) ConferenceSlugs(_ context.Context, userID string) ([]string, error) {
	if userID == "" {
		return nil, nil
	}
	return slices.Clone(d.conferences), nil
}

// CanSelectChat is true when the socket has a conference.
func (d *Static) CanSelectChat(_ context.Context, s sdk.Socket, _ string) (bool, error) {
	return s.UserID != "" && len(s.ConferenceSlugs) > 0, nil
}

// CanWriteChat is true for the sender's own messages and for chairs.
func (d *Static) CanWriteChat(_ context.Context, s sdk.Socket, _ string, senderRegistrantID string) (bool, error) {
	if s.UserID == "" || len(s.ConferenceSlugs) == 0 {
		return false, nil
	}
	return senderRegistrantID == s.UserID || d.isChair(s.UserID), nil
}

// Registrant resolves id to a registrant of the user with the same id.
func (d *Static) Registrant(_ context.Context, registrantID string) (sdk.Registrant, bool, error) {
	if registrantID == "" {
		return sdk.Registrant{}, false, nil
	}
	return sdk.Registrant{ID: registrantID, UserID: registrantID, DisplayName: registrantID}, true, nil
}

// CanAccessEvent is true when the socket has a conference.
func (d *Static) CanAccessEvent(_ context.Context, s sdk.Socket, _ string) (bool, error) {
	return s.UserID != "" && len(s.ConferenceSlugs) > 0, nil
}

// IsEventChair is true when the user is in the configured chairs.
func (d *Static) IsEventChair(_ context.Context, s sdk.Socket, _ string) (bool, error) {
	return d.isChair(s.UserID), nil
}

func (d *Static) isChair(userID string) bool {
	if userID == "" {
		return false
	}
	_, ok := d.chairs[userID]
	return ok
}
