package app

import (
	"encoding/json"
	"testing"

	"github.com/clowdr/realtime/host/config"
)

// TestChatWritebackFollowsDirectory: with Hasura as the directory (the
// original's deployment), chat writes messages back to it unless told not
// to; on the embedded defaults it does not.
func TestChatWritebackFollowsDirectory(t *testing.T) {
	chatConfig := func(t *testing.T, env ...string) map[string]any { return pluginConfig(t, "chat", env...) }
	hasura := []string{"GRAPHQL_API_DOMAIN=hasura.example:8080", "HASURA_ADMIN_SECRET=s"}
	if m := chatConfig(t, hasura...); m["writeback"] != true || m["graphql_url"] != "https://hasura.example:8080/v1/graphql" {
		t.Errorf("hasura directory: chat config = %v, want writeback true with the GraphQL URL", m)
	}
	if m := chatConfig(t, append(hasura, "RT_PLUGINS__CHAT__CONFIG__WRITEBACK=false")...); m["writeback"] != false {
		t.Errorf("writeback=false set by the operator: chat config = %v", m)
	}
	if m := chatConfig(t); m["writeback"] != nil {
		t.Errorf("static directory: chat config = %v, want no writeback", m)
	}
}

// pluginConfig is the config JSON the host hands plugin name, decoded.
func pluginConfig(t *testing.T, name string, env ...string) map[string]any {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{File: "", Environ: env, Flags: nil})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pluginConfigJSON(cfg)(name)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestHandraiseGetsHasura: with Hasura as the directory, hand-raise accept
// upserts the participant as the original did, so the plugin gets the
// GraphQL URL and secret; without it, only the event secret.
func TestHandraiseGetsHasura(t *testing.T) {
	m := pluginConfig(t, "handraise", "GRAPHQL_API_DOMAIN=hasura.example:8080", "HASURA_ADMIN_SECRET=s", "EVENT_SECRET=e")
	if m["graphql_url"] != "https://hasura.example:8080/v1/graphql" || m["admin_secret"] != "s" || m["event_secret"] != "e" {
		t.Errorf("hasura directory: handraise config = %v, want the GraphQL URL, admin and event secrets", m)
	}
	m = pluginConfig(t, "handraise", "EVENT_SECRET=e")
	if _, ok := m["graphql_url"]; ok || m["event_secret"] != "e" {
		t.Errorf("static directory: handraise config = %v, want only the event secret", m)
	}
}

// TestAdminTrustsForwardedForOnHeroku: the admin plugin takes the client
// address from X-Forwarded-For only on Heroku (DYNO set), whose router
// appends it, unless the operator says otherwise.
func TestAdminTrustsForwardedForOnHeroku(t *testing.T) {
	t.Setenv("DYNO", "")
	if m := pluginConfig(t, "admin"); m["trust_forwarded_for"] != nil {
		t.Errorf("off Heroku: admin config = %v, want no trust_forwarded_for (false)", m)
	}
	if m := pluginConfig(t, "admin", "RT_PLUGINS__ADMIN__CONFIG__TRUST_FORWARDED_FOR=true"); m["trust_forwarded_for"] != true {
		t.Errorf("off Heroku, set by the operator: admin config = %v, want trust_forwarded_for true", m)
	}
	t.Setenv("DYNO", "web.1")
	if m := pluginConfig(t, "admin"); m["trust_forwarded_for"] != true {
		t.Errorf("on Heroku: admin config = %v, want trust_forwarded_for true", m)
	}
	if m := pluginConfig(t, "admin", "RT_PLUGINS__ADMIN__CONFIG__TRUST_FORWARDED_FOR=false"); m["trust_forwarded_for"] != false {
		t.Errorf("on Heroku, turned off by the operator: admin config = %v, want trust_forwarded_for false", m)
	}
}
