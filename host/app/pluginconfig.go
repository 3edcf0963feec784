package app

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/host/directory"
)

// envDyno is set by Heroku in every dyno.
const envDyno = "DYNO"

// hostProvided lists, per plugin, config keys the host fills from its own
// settings when plugins.<name>.config leaves them unset. Plugins never read
// the host's environment (they run with SkipHostEnv), so this is how the
// original's secrets (SECRET_FOR_SUMMARY, EVENT_SECRET, ...) reach the
// plugins that check them.
func hostProvided(cfg *config.Config) map[string]map[string]any {
	graphqlURL := ""
	if cfg.Directory.GraphQLDomain != "" {
		scheme := "https"
		if !cfg.Directory.GraphQLSecure {
			scheme = "http"
		}
		graphqlURL = scheme + "://" + cfg.Directory.GraphQLDomain + "/v1/graphql"
	}
	hasura := map[string]any{"graphql_url": graphqlURL, "admin_secret": cfg.Directory.AdminSecret}
	with := func(m map[string]any, extra map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	return map[string]map[string]any{
		"admin": {
			"summary_secret": cfg.Secrets.Summary,
			"flush_secret":   cfg.Secrets.Flush,
			"admin_secret":   cfg.Secrets.Admin,
			// On Heroku (DYNO set) every request comes through the router,
			// which appends the client address to X-Forwarded-For: without
			// it all clients would share the router's address in the
			// plugin's failed-attempt limit. Elsewhere the header may come
			// from the client itself, so the operator must opt in.
			"trust_forwarded_for": os.Getenv(envDyno) != "",
		},
		"chat": with(hasura, map[string]any{
			"event_secret": cfg.Secrets.Event,
			// Messages are written back to Hasura when it is the directory,
			// as the original did (§6.4).
			"writeback": directory.Backend(cfg.Directory) == directory.BackendHasura,
			// Notifications go through the push plugin when it runs.
			"web_push": cfg.Plugins["push"].Enabled,
		}),
		// With Hasura, accept makes the person a participant of the event
		// and broadcasts it, as the original did (handraise doc.go).
		"handraise": with(hasura, map[string]any{"event_secret": cfg.Secrets.Event}),
		"push":      with(hasura, map[string]any{"event_secret": cfg.Secrets.Event}),
		"analytics": hasura,
	}
}

// pluginConfigJSON returns plugins.<name>.config as JSON with the
// host-provided keys filled in where unset and non-empty.
func pluginConfigJSON(cfg *config.Config) func(string) (json.RawMessage, error) {
	provided := hostProvided(cfg)
	return func(name string) (json.RawMessage, error) {
		raw, err := cfg.PluginConfigJSON(name)
		if err != nil {
			return nil, err
		}
		extra := provided[name]
		if len(extra) == 0 {
			return raw, nil
		}
		m := map[string]any{}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, fmt.Errorf("plugins.%s.config: %w", name, err)
			}
		}
		for k, v := range extra {
			if _, set := m[k]; set || v == "" || v == false {
				continue
			}
			m[k] = v
		}
		return json.Marshal(m)
	}
}
