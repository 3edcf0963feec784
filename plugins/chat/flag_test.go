package chat

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clowdr/realtime/plugins/sdk"
)

// TestFlagNotifiesConferenceModerators: a reported message notifies the
// moderators the directory names for it, with the moderation hub's link
// (§8.3); when the directory cannot say, the configured moderators get the
// notification without a link.
func TestFlagNotifiesConferenceModerators(t *testing.T) {
	const (
		desc = "A message has been reported. Please go to the moderation hub to resolve it."
		link = "/conference/conf9/manage/chats/moderation"
	)
	found := func(m sdk.ConferenceModerators) func(context.Context, string) (sdk.ConferenceModerators, bool, error) {
		return func(context.Context, string) (sdk.ConferenceModerators, bool, error) { return m, true, nil }
	}
	fails := func(err error) func(context.Context, string) (sdk.ConferenceModerators, bool, error) {
		return func(context.Context, string) (sdk.ConferenceModerators, bool, error) {
			return sdk.ConferenceModerators{}, false, err
		}
	}
	withSId := `{"id":"f1","messageSId":"` + sid1 + `","type":"Spam","created_at":"2021","updated_at":"2021"}`
	tests := []struct {
		name      string
		flag      string
		dir       func(context.Context, string) (sdk.ConferenceModerators, bool, error) // nil: the fake's "not found"
		wantAsked []string
		wantTo    []string
		want      Notification
	}{
		{
			name:      "directory names the conference's moderators",
			flag:      withSId,
			dir:       found(sdk.ConferenceModerators{ConferenceSlug: "conf9", UserIDs: []string{"cmod1", "cmod2"}}),
			wantAsked: []string{sid1},
			wantTo:    []string{"cmod1", "cmod2"},
			want:      Notification{Title: "Message reported", Subtitle: "Reason: Spam", Description: desc, LinkURL: link},
		},
		{
			name:      "conference without moderators: no one, as the original",
			flag:      withSId,
			dir:       found(sdk.ConferenceModerators{ConferenceSlug: "conf9"}),
			wantAsked: []string{sid1},
		},
		{
			name:      "directory error: configured moderators, no link",
			flag:      withSId,
			dir:       fails(errors.New("hasura down")),
			wantAsked: []string{sid1},
			wantTo:    []string{"mod1", "mod2"},
			want:      Notification{Title: "Message reported", Subtitle: "Reason: Spam", Description: desc},
		},
		{
			name:      "host older than MessageModerators: configured moderators",
			flag:      withSId,
			dir:       fails(status.Error(codes.Unimplemented, `directory: unknown method "MessageModerators"`)),
			wantAsked: []string{sid1},
			wantTo:    []string{"mod1", "mod2"},
			want:      Notification{Title: "Message reported", Subtitle: "Reason: Spam", Description: desc},
		},
		{
			name:      "message unknown to the directory: configured moderators",
			flag:      withSId,
			wantAsked: []string{sid1},
			wantTo:    []string{"mod1", "mod2"},
			want:      Notification{Title: "Message reported", Subtitle: "Reason: Spam", Description: desc},
		},
		{
			name:   "flag without messageSId: configured moderators, directory not asked",
			flag:   `{"id":"f1","type":"Offensive"}`,
			dir:    found(sdk.ConferenceModerators{ConferenceSlug: "conf9", UserIDs: []string{"cmod1"}}),
			wantTo: []string{"mod1", "mod2"},
			want:   Notification{Title: "Message reported", Subtitle: "Reason: Offensive", Description: desc},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := newTestPlugin(t, map[string]any{"event_secret": "s3cret", "moderators": []string{"mod1", "mod2"}})
			var asked []string
			h.Dir.MessageModeratorsFunc = func(ctx context.Context, sid string) (sdk.ConferenceModerators, bool, error) {
				asked = append(asked, sid)
				if tt.dir == nil {
					return sdk.ConferenceModerators{}, false, nil
				}
				return tt.dir(ctx, sid)
			}
			hdr := http.Header{}
			hdr.Set("X-Hasura-Event-Secret", "s3cret")
			res, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: http.MethodPost, Path: RouteFlagInserted, Header: hdr, Body: []byte(hasuraBody("INSERT", "null", tt.flag, "null"))})
			if err != nil || res.Status != http.StatusOK || string(res.Body) != "OK" {
				t.Fatalf("response %d %q %v, want 200 OK", res.Status, res.Body, err)
			}
			if !reflect.DeepEqual(asked, tt.wantAsked) {
				t.Errorf("directory asked for %v, want %v", asked, tt.wantAsked)
			}
			emits := emitsNamed(h, "notification")
			var to []string
			for i, e := range emits {
				to = append(to, e.To.ID)
				if e.To != sdk.UserTarget(e.To.ID) {
					t.Errorf("emit %d to %+v, want a user", i, e.To)
				}
				var n Notification
				if err := e.Arg(0, &n); err != nil {
					t.Fatal(err)
				}
				if n != tt.want {
					t.Errorf("notification to %s = %+v, want %+v", e.To.ID, n, tt.want)
				}
			}
			if !reflect.DeepEqual(to, tt.wantTo) {
				t.Errorf("notified %v, want %v", to, tt.wantTo)
			}
		})
	}
}
