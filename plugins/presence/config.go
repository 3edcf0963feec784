package presence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Config is the plugin's configuration (plugins.presence.config); every key
// is optional.
type Config struct {
	// Window is how long a socket stays present without a refresh; key
	// "window", default 45s. Must be more than twice RefreshInterval.
	Window time.Duration
	// RefreshInterval is how often an instance pushes the deadlines of its
	// sockets forward; key "refresh_interval", default 15s.
	RefreshInterval time.Duration
	// SweepInterval is how often an instance removes expired sockets; key
	// "sweep_interval", default 5s.
	SweepInterval time.Duration
	// MaxPathBytes bounds a path or slug argument; key "max_path_bytes",
	// default 1024.
	MaxPathBytes int
	// EventsPerSecond and EventBurst rate-limit each socket's presence events;
	// keys "events_per_second" (default 20) and "event_burst" (default 40).
	EventsPerSecond float64
	EventBurst      int
	// MaxListsPerSocket bounds the pages one socket can be present on at once;
	// key "max_lists_per_socket", default 64.
	MaxListsPerSocket int
	// Recheck is how long after a transition that followed another
	// process's delta of the same user and page within RecheckMark the
	// plugin re-sends the user's current state on that page ("entered" or
	// "left"), so observers whose deltas arrived swapped converge (see
	// recheck.go); key "recheck", default 1s, "0s" turns it off. It must
	// exceed the Redis pub/sub latency between instances.
	Recheck time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Window:            45 * time.Second,
		RefreshInterval:   15 * time.Second,
		SweepInterval:     5 * time.Second,
		MaxPathBytes:      1024,
		EventsPerSecond:   20,
		EventBurst:        40,
		MaxListsPerSocket: 64,
		Recheck:           time.Second,
	}
}

// rawConfig is the JSON form; pointers tell "absent" from zero.
type rawConfig struct {
	Window            *string  `json:"window"`
	RefreshInterval   *string  `json:"refresh_interval"`
	SweepInterval     *string  `json:"sweep_interval"`
	MaxPathBytes      *int     `json:"max_path_bytes"`
	EventsPerSecond   *float64 `json:"events_per_second"`
	EventBurst        *int     `json:"event_burst"`
	MaxListsPerSocket *int     `json:"max_lists_per_socket"`
	Recheck           *string  `json:"recheck"`
}

// Limits on config values, so a typo cannot make the plugin unbounded.
const (
	maxMaxPathBytes = 64 << 10
	maxListsLimit   = 10000
	maxRecheck      = time.Minute
)

// ParseConfig reads the plugin's JSON config (nil, empty or null = all
// defaults), rejecting unknown keys and invalid values with an error that
// names the key.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return cfg, cfg.validate()
	}
	var rc rawConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return Config{}, fmt.Errorf("presence config: %w", err)
	}
	durs := []struct {
		key string
		src *string
		dst *time.Duration
	}{
		{"window", rc.Window, &cfg.Window},
		{"refresh_interval", rc.RefreshInterval, &cfg.RefreshInterval},
		{"sweep_interval", rc.SweepInterval, &cfg.SweepInterval},
		{"recheck", rc.Recheck, &cfg.Recheck},
	}
	for _, d := range durs {
		if d.src == nil {
			continue
		}
		v, err := time.ParseDuration(*d.src)
		if err != nil {
			return Config{}, fmt.Errorf("presence config: %s: %w", d.key, err)
		}
		*d.dst = v
	}
	if rc.MaxPathBytes != nil {
		cfg.MaxPathBytes = *rc.MaxPathBytes
	}
	if rc.EventsPerSecond != nil {
		cfg.EventsPerSecond = *rc.EventsPerSecond
	}
	if rc.EventBurst != nil {
		cfg.EventBurst = *rc.EventBurst
	}
	if rc.MaxListsPerSocket != nil {
		cfg.MaxListsPerSocket = *rc.MaxListsPerSocket
	}
	return cfg, cfg.validate()
}

func (c Config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("presence config: %s: "+format, append([]any{key}, args...)...))
	}
	if c.Window < time.Millisecond {
		bad("window", "must be at least 1ms, got %s", c.Window)
	}
	if c.RefreshInterval < time.Millisecond {
		bad("refresh_interval", "must be at least 1ms, got %s", c.RefreshInterval)
	}
	if c.SweepInterval < time.Millisecond {
		bad("sweep_interval", "must be at least 1ms, got %s", c.SweepInterval)
	}
	if c.Window <= 2*c.RefreshInterval {
		bad("window", "must be more than twice refresh_interval (%s), got %s", c.RefreshInterval, c.Window)
	}
	if c.MaxPathBytes < 1 || c.MaxPathBytes > maxMaxPathBytes {
		bad("max_path_bytes", "must be in [1, %d], got %d", maxMaxPathBytes, c.MaxPathBytes)
	}
	if !(c.EventsPerSecond > 0) {
		bad("events_per_second", "must be > 0, got %v", c.EventsPerSecond)
	}
	if c.EventBurst < 1 {
		bad("event_burst", "must be >= 1, got %d", c.EventBurst)
	}
	if c.Recheck < 0 || c.Recheck > maxRecheck {
		bad("recheck", "must be in [0s, %s], got %s", maxRecheck, c.Recheck)
	}
	if c.MaxListsPerSocket < 1 || c.MaxListsPerSocket > maxListsLimit {
		bad("max_lists_per_socket", "must be in [1, %d], got %d", maxListsLimit, c.MaxListsPerSocket)
	}
	return errors.Join(errs...)
}

// sessionListsTTL is the PEXPIRE on SessionLists:<socketId>. It is only a
// backstop against orphaned keys: the sweeper deletes the key when the socket
// expires. It is much longer than Window on purpose: if the key expired before
// the sweeper reached the socket (every instance down for a while), the
// socket's pages could no longer be found and its user would stay listed.
func (c Config) sessionListsTTL() time.Duration {
	return max(24*time.Hour, 4*c.Window)
}

// RecheckMark is how long a transition's mark (PresenceDelta:<listId>:<userId>)
// lives: a later transition of the same user and page by another process
// within it schedules a recheck. It covers the recheck delay and the
// pub/sub latency it allows for, with room to spare.
func (c Config) RecheckMark() time.Duration {
	return 5 * c.Recheck
}
