package handraise

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
)

// Config is the plugin's configuration (plugins.handraise.config, as JSON).
// Every key is optional; zero values take the defaults below.
type Config struct {
	// EventSecret guards POST /event/ended (header x-hasura-event-secret).
	// The host injects EVENT_SECRET here. Empty refuses every call with 401.
	EventSecret string `json:"event_secret"`
	// RequireChair restricts accept and reject to the event's chairs
	// (Directory.IsEventChair). Default true; false restores the original's
	// "any attendee may accept or reject".
	RequireChair *bool `json:"require_chair"`
	// HandTTL bounds how long an event's raised hands are kept after the
	// last raise when /event/ended is never called (default "24h").
	HandTTL Duration `json:"hand_ttl"`
	// GraphQLURL, when set, makes accept upsert a schedule_EventProgramPerson
	// in Hasura (as the original); without it accept only broadcasts, with
	// eventPerson null.
	GraphQLURL string `json:"graphql_url"`
	// AdminSecret is sent as x-hasura-admin-secret to GraphQLURL.
	AdminSecret string `json:"admin_secret"`
}

// Defaults of the Config fields.
const (
	// DefaultHandTTL is the default of hand_ttl.
	DefaultHandTTL = 24 * time.Hour
)

// requireChair reports the effective require_chair.
func (c Config) requireChair() bool { return c.RequireChair == nil || *c.RequireChair }

// Duration is a time.Duration written as a Go duration string ("24h").
type Duration = kit.Duration

// parseConfig decodes, defaults and validates raw (nil, empty or null means
// "{}"). Unknown keys and bad values give an error naming the key.
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := kit.DecodeConfig(raw, &c, "handraise config", "24h", "hand_ttl"); err != nil {
		return c, err
	}
	if !c.HandTTL.Set {
		c.HandTTL = Duration{D: DefaultHandTTL, Set: true}
	}
	if c.HandTTL.D < time.Minute || c.HandTTL.D > 30*24*time.Hour {
		return c, fmt.Errorf("handraise config: key \"hand_ttl\": %v must be in [1m, 720h]", c.HandTTL.D)
	}
	if c.GraphQLURL != "" {
		u, err := url.Parse(c.GraphQLURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("handraise config: key \"graphql_url\": %q is not an http(s) URL", c.GraphQLURL)
		}
	}
	return c, nil
}
