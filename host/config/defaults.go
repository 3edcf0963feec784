package config

import "time"

// Default values that other code may want to show (flag help, docs).
const (
	// DefaultPort is the listen port of the original service.
	DefaultPort = 3002
	// DefaultLogLevel is the default log.level.
	DefaultLogLevel = "info"
	// DefaultPluginMode is the mode of a plugin whose mode is not set.
	DefaultPluginMode = "subprocess"
)

// Defaults returns every key's built-in default as flat dotted keys. It is the
// one place where defaults live; each call returns a fresh map.
func Defaults() map[string]any {
	return map[string]any{
		"port":     DefaultPort,
		"host":     "",
		"instance": "",

		"log.level":  DefaultLogLevel,
		"log.format": "",

		// Engine.IO 4 defaults: the client waits pingInterval+pingTimeout.
		"socketio.ping_interval":     25 * time.Second,
		"socketio.ping_timeout":      5 * time.Second,
		"socketio.connect_timeout":   45 * time.Second,
		"socketio.max_payload":       1000000,
		"socketio.cors_origin":       "",
		"socketio.outbound_queue":    1024,
		"socketio.batch_delay":       30 * time.Millisecond,
		"socketio.events_per_second": 50.0,
		"socketio.event_burst":       100,

		"auth.auth0_domain":          "",
		"auth.jwks_url":              "",
		"auth.test_jwks":             "",
		"auth.issuer":                "",
		"auth.audience":              "",
		"auth.jwks_refresh_interval": 30 * time.Second,
		"auth.jwks_timeout":          3 * time.Second,
		"auth.dev_key_file":          "",

		"redis.url":                      "",
		"redis.pool_size":                0,
		"redis.min_idle":                 2,
		"redis.timeout":                  3 * time.Second,
		"redis.heartbeat_interval":       5 * time.Second,
		"redis.instance_ttl":             20 * time.Second,
		"redis.tls_insecure_skip_verify": false,

		"bus.url":             "",
		"bus.username":        "",
		"bus.password":        "",
		"bus.host":            "localhost",
		"bus.port":            5672,
		"bus.publish_timeout": 5 * time.Second,

		"directory.backend":        "",
		"directory.graphql_domain": "",
		"directory.graphql_secure": true,
		"directory.admin_secret":   "",
		"directory.test_mode":      false,
		"directory.conferences":    []string{"demo"},
		"directory.chairs":         []string{},
		"directory.cache_ttl":      5 * time.Minute,

		"secrets.summary": "",
		"secrets.flush":   "",
		"secrets.event":   "",
		"secrets.admin":   "",

		"shutdown.timeout": 25 * time.Second,

		"plugins.presence.enabled":  true,
		"plugins.presence.mode":     DefaultPluginMode,
		"plugins.chat.enabled":      true,
		"plugins.chat.mode":         DefaultPluginMode,
		"plugins.admin.enabled":     true,
		"plugins.admin.mode":        DefaultPluginMode,
		"plugins.handraise.enabled": true,
		"plugins.handraise.mode":    DefaultPluginMode,
		"plugins.analytics.enabled": true,
		"plugins.analytics.mode":    DefaultPluginMode,
		"plugins.push.enabled":      true,
		"plugins.push.mode":         DefaultPluginMode,
		"plugins.echo.enabled":      false,
		"plugins.echo.mode":         DefaultPluginMode,
	}
}
