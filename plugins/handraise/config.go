package handraise

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
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
type Duration struct {
	D   time.Duration
	Set bool
}

// UnmarshalJSON accepts a duration string such as "90m"; null unsets it.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*d = Duration{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"24h\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", s, err)
	}
	*d = Duration{D: v, Set: true}
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.D.String()) }

// parseConfig decodes, defaults and validates raw (nil, empty or null means
// "{}"). Unknown keys and bad values give an error naming the key.
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(t, &keys); err != nil {
			return c, fmt.Errorf("handraise config: want an object: %w", err)
		}
		if v, ok := keys["hand_ttl"]; ok {
			var d Duration
			if err := d.UnmarshalJSON(v); err != nil {
				return c, fmt.Errorf("handraise config: key \"hand_ttl\": %w", err)
			}
		}
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return c, fmt.Errorf("handraise config: key %q: want %s, got %s", te.Field, te.Type, te.Value)
			}
			return c, fmt.Errorf("handraise config: %w", err)
		}
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
