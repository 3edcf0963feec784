package analytics

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
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
type Duration = kit.Duration

// parseConfig decodes, defaults and validates raw (nil, empty or null means
// "{}"). Unknown keys and bad values give an error naming the key.
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := kit.DecodeConfig(raw, &c, "analytics config", "60s", "writeback_interval", "dedupe_window"); err != nil {
		return c, err
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
