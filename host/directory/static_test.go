package directory

import (
	"context"
	"slices"
	"testing"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

func TestStatic(t *testing.T) {
	ctx := context.Background()
	d := NewStatic(config.DirectoryConfig{Conferences: []string{"c1", "c2"}, Chairs: []string{"chair"}})
	if d.Name() != "static" {
		t.Errorf("Name = %q", d.Name())
	}
	member := sdk.Socket{ID: "s1", UserID: "alice", ConferenceSlugs: []string{"c1"}}
	chair := sdk.Socket{ID: "s2", UserID: "chair", ConferenceSlugs: []string{"c1"}}
	outsider := sdk.Socket{ID: "s3", UserID: "bob"}
	anon := sdk.Socket{ID: "s4", ConferenceSlugs: []string{"c1"}}

	tests := []struct {
		name string
		call func() (bool, error)
		want bool
	}{
		{"select: member", func() (bool, error) { return d.CanSelectChat(ctx, member, "chat") }, true},
		{"select: no conference", func() (bool, error) { return d.CanSelectChat(ctx, outsider, "chat") }, false},
		{"select: no user", func() (bool, error) { return d.CanSelectChat(ctx, anon, "chat") }, false},
		{"write: own message", func() (bool, error) { return d.CanWriteChat(ctx, member, "chat", "alice") }, true},
		{"write: other's message", func() (bool, error) { return d.CanWriteChat(ctx, member, "chat", "bob") }, false},
		{"write: no sender", func() (bool, error) { return d.CanWriteChat(ctx, member, "chat", "") }, false},
		{"write: chair, no sender", func() (bool, error) { return d.CanWriteChat(ctx, chair, "chat", "") }, true},
		{"write: chair, other's message", func() (bool, error) { return d.CanWriteChat(ctx, chair, "chat", "alice") }, true},
		{"write: own, no conference", func() (bool, error) { return d.CanWriteChat(ctx, outsider, "chat", "bob") }, false},
		{"event: member", func() (bool, error) { return d.CanAccessEvent(ctx, member, "ev") }, true},
		{"event: no conference", func() (bool, error) { return d.CanAccessEvent(ctx, outsider, "ev") }, false},
		{"chair: chair", func() (bool, error) { return d.IsEventChair(ctx, chair, "ev") }, true},
		{"chair: member", func() (bool, error) { return d.IsEventChair(ctx, member, "ev") }, false},
		{"chair: anonymous", func() (bool, error) { return d.IsEventChair(ctx, anon, "ev") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}

	slugs, err := d.ConferenceSlugs(ctx, "anyone")
	if err != nil || !slices.Equal(slugs, []string{"c1", "c2"}) {
		t.Errorf("ConferenceSlugs = %v, %v", slugs, err)
	}
	slugs[0] = "mutated"
	if again, _ := d.ConferenceSlugs(ctx, "anyone"); again[0] != "c1" {
		t.Error("ConferenceSlugs returns the internal slice")
	}
	if slugs, _ := d.ConferenceSlugs(ctx, ""); len(slugs) != 0 {
		t.Errorf("no user: %v", slugs)
	}
	r, found, err := d.Registrant(ctx, "alice")
	if err != nil || !found || r != (sdk.Registrant{ID: "alice", UserID: "alice", DisplayName: "alice"}) {
		t.Errorf("Registrant = %+v, %v, %v", r, found, err)
	}
	if _, found, _ := d.Registrant(ctx, ""); found {
		t.Error("empty registrant found")
	}
}

func TestStaticTestMode(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.DirectoryConfig
		want []string
	}{
		{"test mode", config.DirectoryConfig{TestMode: true}, []string{TestConferenceSlug}},
		{"test mode with conferences", config.DirectoryConfig{TestMode: true, Conferences: []string{"x"}}, []string{"x", TestConferenceSlug}},
		{"test mode with its slug listed", config.DirectoryConfig{TestMode: true, Conferences: []string{TestConferenceSlug, "x"}}, []string{TestConferenceSlug, "x"}},
		{"conferences without test mode", config.DirectoryConfig{Conferences: []string{"x"}}, []string{"x"}},
		{"neither", config.DirectoryConfig{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewStatic(tc.cfg).ConferenceSlugs(context.Background(), "u")
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TEST_MODE=true alone, on the default config (conferences [demo]), gives
// every user the original's test-conference-slug.
func TestStaticTestModeFromEnv(t *testing.T) {
	cfg, err := config.Load(config.LoadOptions{Environ: []string{"TEST_MODE=true"}})
	if err != nil {
		t.Fatal(err)
	}
	if b := Backend(cfg.Directory); b != BackendStatic {
		t.Fatalf("backend = %q, want static", b)
	}
	got, err := NewStatic(cfg.Directory).ConferenceSlugs(context.Background(), "u")
	if err != nil || !slices.Contains(got, TestConferenceSlug) {
		t.Fatalf("conferences = %v, %v; want %q among them", got, err, TestConferenceSlug)
	}
}
