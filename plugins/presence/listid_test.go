package presence

import (
	"errors"
	"strings"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
)

func TestListID(t *testing.T) {
	member := sdk.Socket{ID: "s1", UserID: "u1", ConferenceSlugs: []string{"test-conference-slug", "c1"}}
	tests := []struct {
		name    string
		path    string
		max     int
		want    string
		wantErr error
	}{
		{name: "conference vector", path: "/conference/test-conference-slug", max: 1024,
			want: "88fff4f0a39c2f20e459bba77266401b64615e5f52de931a40715806ca1c9dc9"},
		{name: "conference room page", path: "/conference/c1/room/r1", max: 1024,
			want: "ed637f608b97bc7080ee2795a1a2e449a28b9116c58dc60dbd5b57f8b240f1f6"},
		{name: "non-conference root uses the client's prefix", path: "/", max: 1024,
			want: "5e34ef7250bb12d21b351b7fbc78614bbd9c80493a3c29f8dc8da361f91c51b2"},
		{name: "non-conference page", path: "/profile", max: 1024,
			want: "740bfe54986f513a979f12f75ecedbcf4a721e64123cda0a77f05a94e76e167e"},
		{name: "not the original server's prefix", path: "/", max: 1024,
			want: hashHex("<<NO-CONFERENCE>>", "/")},
		{name: "prefix without trailing slash is not a conference", path: "/conference", max: 1024,
			want: hashHex(NoConferencePrefix, "/conference")},
		{name: "foreign conference refused", path: "/conference/other/room/r1", max: 1024, wantErr: ErrForeignConference},
		{name: "empty slug refused", path: "/conference//x", max: 1024, wantErr: ErrForeignConference},
		{name: "bare conference prefix refused", path: "/conference/", max: 1024, wantErr: ErrForeignConference},
		{name: "slug is case-sensitive", path: "/conference/C1", max: 1024, wantErr: ErrForeignConference},
		{name: "empty path", path: "", max: 1024, wantErr: ErrEmpty},
		{name: "too long", path: "/" + strings.Repeat("a", 1024), max: 1024, wantErr: ErrTooLong},
		{name: "exactly the limit", path: "/" + strings.Repeat("a", 1023), max: 1024,
			want: hashHex(NoConferencePrefix, "/"+strings.Repeat("a", 1023))},
		{name: "invalid utf-8", path: "/\xff", max: 1024, wantErr: ErrInvalidUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ListID(member, tt.path, tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ListID(%q) err = %v, want %v", tt.path, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ListID(%q): %v", tt.path, err)
			}
			if got != tt.want {
				t.Fatalf("ListID(%q) = %s, want %s", tt.path, got, tt.want)
			}
		})
	}
	// The original server's formula must not be used.
	if got, _ := ListID(member, "/", 0); got == hashHex("/<<NO-CONF>>/", "/") {
		t.Fatal("non-conference list id uses the original server's prefix")
	}
}

func TestConferenceListID(t *testing.T) {
	s := sdk.Socket{ID: "s1", UserID: "u1", ConferenceSlugs: []string{"c1"}}
	tests := []struct {
		slug    string
		want    string
		wantErr error
	}{
		{slug: "c1", want: "c1"},
		{slug: "c2", wantErr: ErrForeignConference},
		{slug: "", wantErr: ErrEmpty},
		{slug: strings.Repeat("c", 20), wantErr: ErrTooLong},
	}
	for _, tt := range tests {
		got, err := ConferenceListID(s, tt.slug, 10)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ConferenceListID(%q) err = %v, want %v", tt.slug, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ConferenceListID(%q) = %q, %v; want %q", tt.slug, got, err, tt.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("héllo", 2); got != "h…" {
		t.Fatalf("truncate cut a rune: %q", got)
	}
	if got := truncate("abc", 5); got != "abc" {
		t.Fatalf("truncate(abc) = %q", got)
	}
}
