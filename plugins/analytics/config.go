package analytics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"
)

// Config is the plugin's configuration (plugins.analytics.config, as JSON).
// Every key is optional; zero values take the defaults below.
type Config struct {
	// GraphQLURL is Hasura's GraphQL endpoint; the host injects it in hasura
	// mode. Empty means no writeback: counts stay in Redis.
	GraphQLURL string `json:"graphql_url"`
	// AdminSecret is sent as x-hasura-admin-secret (injected by the host).
	AdminSecret string `json:"admin_secret"`
	// WritebackInterval is the time between two writeback rounds (default "60s").
	WritebackInterval Duration `json:"writeback_interval"`
	// ViewsPerSecond is the sustained rate of counted views per socket (default 1).
	ViewsPerSecond float64 `json:"views_per_second"`
	// ViewBurst is the burst of counted views per socket (default 5).
	ViewBurst int `json:"view_burst"`
	// DedupeWindow: a socket's second view of the same content within this
	// window is not counted (default "60s"; "0s" turns dedupe off).
	DedupeWindow Duration `json:"dedupe_window"`
}

// Defaults of the Config fields.
const (
	// DefaultWritebackInterval is the default of writeback_interval (the original's 60 s).
	DefaultWritebackInterval = 60 * time.Second
	// DefaultViewsPerSecond is the default of views_per_second.
	DefaultViewsPerSecond = 1
	// DefaultViewBurst is the default of view_burst.
	DefaultViewBurst = 5
	// DefaultDedupeWindow is the default of dedupe_window.
	DefaultDedupeWindow = 60 * time.Second
)

// Duration is a time.Duration written as a Go duration string ("60s").
type Duration struct {
	D   time.Duration
	Set bool
}

// UnmarshalJSON accepts a duration string such as "90s"; null unsets it.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*d = Duration{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"60s\", got %s", b)
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
			return c, fmt.Errorf("analytics config: want an object: %w", err)
		}
		for _, k := range []string{"writeback_interval", "dedupe_window"} {
			if v, ok := keys[k]; ok {
				var d Duration
				if err := d.UnmarshalJSON(v); err != nil {
					return c, fmt.Errorf("analytics config: key %q: %w", k, err)
				}
			}
		}
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return c, fmt.Errorf("analytics config: key %q: want %s, got %s", te.Field, te.Type, te.Value)
			}
			return c, fmt.Errorf("analytics config: %w", err)
		}
	}
	if !c.WritebackInterval.Set {
		c.WritebackInterval = Duration{D: DefaultWritebackInterval, Set: true}
	}
	if c.WritebackInterval.D < time.Second || c.WritebackInterval.D > 24*time.Hour {
		return c, fmt.Errorf("analytics config: key \"writeback_interval\": %v must be in [1s, 24h]", c.WritebackInterval.D)
	}
	if c.ViewsPerSecond == 0 {
		c.ViewsPerSecond = DefaultViewsPerSecond
	}
	if c.ViewsPerSecond < 0 || math.IsNaN(c.ViewsPerSecond) || c.ViewsPerSecond > 1000 {
		return c, fmt.Errorf("analytics config: key \"views_per_second\": %v must be in (0, 1000]", c.ViewsPerSecond)
	}
	if c.ViewBurst == 0 {
		c.ViewBurst = DefaultViewBurst
	}
	if c.ViewBurst < 1 || c.ViewBurst > 1000 {
		return c, fmt.Errorf("analytics config: key \"view_burst\": %d must be in [1, 1000]", c.ViewBurst)
	}
	if !c.DedupeWindow.Set {
		c.DedupeWindow = Duration{D: DefaultDedupeWindow, Set: true}
	}
	if c.DedupeWindow.D < 0 || c.DedupeWindow.D > 24*time.Hour {
		return c, fmt.Errorf("analytics config: key \"dedupe_window\": %v must be in [0s, 24h]", c.DedupeWindow.D)
	}
	if c.GraphQLURL != "" {
		u, err := url.Parse(c.GraphQLURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("analytics config: key \"graphql_url\": %q is not an http(s) URL", c.GraphQLURL)
		}
	}
	return c, nil
}
