package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// problems collects validation errors.
type problems struct {
	origin map[string]string
	errs   []error
}

func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, &KeyError{Key: key, Source: p.origin[key], Problem: fmt.Sprintf(format, args...), Err: ErrInvalid})
}

func (p *problems) positive(key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "must be a positive duration, got %s", d)
	}
}

func (p *problems) atLeast(key string, v, minimum int) {
	if v < minimum {
		p.add(key, "must be at least %d, got %d", minimum, v)
	}
}

func (p *problems) port(key string, v int) {
	if v < 1 || v > 65535 {
		p.add(key, "must be a port number 1..65535, got %d", v)
	}
}

func (p *problems) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	shown := make([]string, len(allowed))
	for i, a := range allowed {
		shown[i] = fmt.Sprintf("%q", a)
	}
	p.add(key, "must be one of %s, got %q", strings.Join(shown, ", "), v)
}

// url checks an URL's scheme and that it parses; it never prints the URL's
// password.
func (p *problems) url(key, raw string, schemes ...string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.add(key, "is not a valid URL: %q", redactURL(raw))
		return
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return
		}
	}
	p.add(key, "URL scheme must be %s, got %q in %q", strings.Join(schemes, " or "), u.Scheme, redactURL(raw))
}

// Validate checks every value and returns all problems joined, each a
// *KeyError naming its key.
func (c *Config) Validate() error {
	return c.validate(nil, nil)
}

// validate checks every value; origin maps keys to where their values came
// from. builtin, when non-nil, lists the built-in plugins (see
// LoadOptions.BuiltinPlugins).
func (c *Config) validate(origin map[string]string, builtin []string) error {
	p := &problems{origin: origin}

	p.port("port", c.Port)
	p.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", c.Log.Format, "", "text", "json")

	s := c.SocketIO
	p.positive("socketio.ping_interval", s.PingInterval)
	p.positive("socketio.ping_timeout", s.PingTimeout)
	if s.PingTimeout > 0 && s.PingInterval > 0 && s.PingTimeout >= s.PingInterval {
		p.add("socketio.ping_timeout", "must be less than socketio.ping_interval (%s), got %s", s.PingInterval, s.PingTimeout)
	}
	p.positive("socketio.connect_timeout", s.ConnectTimeout)
	p.atLeast("socketio.max_payload", s.MaxPayload, 1)
	p.atLeast("socketio.outbound_queue", s.OutboundQueue, 1)
	if s.BatchDelay < 0 || s.BatchDelay > time.Second {
		p.add("socketio.batch_delay", "must be between 0 and 1s, got %s", s.BatchDelay)
	}
	if !(s.EventsPerSecond > 0) { // also catches NaN
		p.add("socketio.events_per_second", "must be positive, got %v", s.EventsPerSecond)
	}
	p.atLeast("socketio.event_burst", s.EventBurst, 1)
	for origin := range strings.SplitSeq(s.CORSOrigin, ",") {
		origin = strings.TrimSpace(origin)
		if origin == "" || origin == "*" {
			continue
		}
		u, err := url.Parse(origin)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			p.add("socketio.cors_origin", "%q is not an origin like https://app.example.org", origin)
		}
	}

	a := c.Auth
	if a.Auth0Domain != "" && strings.Contains(a.Auth0Domain, "/") {
		p.add("auth.auth0_domain", "must be a domain without scheme or path, got %q", a.Auth0Domain)
	}
	p.url("auth.jwks_url", a.JWKSURL, "https", "http")
	if a.TestJWKS != "" {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal([]byte(a.TestJWKS), &set); err != nil || set.Keys == nil {
			p.add("auth.test_jwks", `must be a JSON key set {"keys":[...]}`)
		}
	}
	p.positive("auth.jwks_refresh_interval", a.JWKSRefreshInterval)
	p.positive("auth.jwks_timeout", a.JWKSTimeout)

	r := c.Redis
	p.url("redis.url", r.URL, "redis", "rediss", "unix")
	p.atLeast("redis.pool_size", r.PoolSize, 0)
	p.atLeast("redis.min_idle", r.MinIdle, 0)
	if r.PoolSize > 0 && r.MinIdle > r.PoolSize {
		p.add("redis.min_idle", "must not exceed redis.pool_size (%d), got %d", r.PoolSize, r.MinIdle)
	}
	p.positive("redis.timeout", r.Timeout)
	p.positive("redis.heartbeat_interval", r.HeartbeatInterval)
	p.positive("redis.instance_ttl", r.InstanceTTL)
	if r.HeartbeatInterval > 0 && r.InstanceTTL > 0 && r.InstanceTTL <= r.HeartbeatInterval {
		p.add("redis.instance_ttl", "must be longer than redis.heartbeat_interval (%s), got %s", r.HeartbeatInterval, r.InstanceTTL)
	}

	b := c.Bus
	p.url("bus.url", b.URL, "amqp", "amqps")
	if b.URL == "" && b.Username == "" && b.Password != "" {
		p.add("bus.password", "is set but bus.username is empty")
	}
	p.port("bus.port", b.PortNum)
	p.positive("bus.publish_timeout", b.PublishTimeout)

	d := c.Directory
	p.oneOf("directory.backend", d.Backend, "", "static", "hasura")
	if d.Backend == "hasura" && d.GraphQLDomain == "" {
		p.add("directory.backend", `"hasura" needs directory.graphql_domain`)
	}
	if strings.Contains(d.GraphQLDomain, "/") {
		p.add("directory.graphql_domain", "must be host[:port] without scheme or path, got %q", d.GraphQLDomain)
	}
	for i, slug := range d.Conferences {
		if strings.TrimSpace(slug) == "" {
			p.add("directory.conferences", "item %d is empty", i)
		}
	}
	for i, id := range d.Chairs {
		if strings.TrimSpace(id) == "" {
			p.add("directory.chairs", "item %d is empty", i)
		}
	}
	p.positive("directory.cache_ttl", d.CacheTTL)

	p.positive("shutdown.timeout", c.Shutdown.Timeout)

	names := make([]string, 0, len(c.Plugins))
	for name := range c.Plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pc := c.Plugins[name]
		if name == "" || strings.ContainsAny(name, ". \t/") {
			p.add("plugins", "bad plugin name %q", name)
			continue
		}
		p.oneOf("plugins."+name+".mode", pc.Mode, "", "subprocess", "inprocess")
		// A plugin with a path is an executable of its own: it can only run
		// as a subprocess (the plugin host refuses it at start otherwise).
		if pc.Path != "" && pc.Mode == "inprocess" {
			p.add("plugins."+name+".mode", `must be "subprocess" for a plugin with a path (plugins.%s.path = %q), got "inprocess"`, name, pc.Path)
		}
		// TLS is between the host and a plugin process; an in-process
		// plugin has no connection to protect, so asking for it is a mistake.
		if pc.TLS && pc.Mode == "inprocess" {
			p.add("plugins."+name+".tls", `is only meaningful for mode "subprocess", but plugins.%s.mode is "inprocess"`, name)
		}
		if builtin != nil && pc.Enabled && pc.Path == "" && !slices.Contains(builtin, name) {
			// The source shown is where the plugin was enabled.
			p.errs = append(p.errs, &KeyError{Key: "plugins." + name, Source: p.origin["plugins."+name+".enabled"], Err: ErrInvalid,
				Problem: fmt.Sprintf("is enabled but is not a built-in plugin (built-ins: %s) and has no path; set plugins.%s.path, or plugins.%s.enabled=false",
					strings.Join(builtin, ", "), name, name)})
		}
	}

	return errors.Join(p.errs...)
}
