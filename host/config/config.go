package config

import "time"

// Config is the whole effective configuration. Every field has a koanf key
// (lowercase, dotted), a default in defaults.go (Defaults) and a doc comment.
// Build one with Load; a Config built by hand should be checked with Validate.
type Config struct {
	// Port is the HTTP/websocket listen port (env PORT).
	Port int `koanf:"port"`
	// Host is the listen address (default all interfaces).
	Host string `koanf:"host"`
	// Instance optionally names this instance (env DYNO when unset elsewhere);
	// empty means the host picks hostname-pid-random.
	Instance string `koanf:"instance"`
	// Log configures logging.
	Log LogConfig `koanf:"log"`
	// SocketIO configures the websocket endpoint.
	SocketIO SocketIOConfig `koanf:"socketio"`
	// Auth configures token checks.
	Auth AuthConfig `koanf:"auth"`
	// Redis configures the shared store.
	Redis RedisConfig `koanf:"redis"`
	// Bus configures the message bus.
	Bus BusConfig `koanf:"bus"`
	// Directory configures who-may-see-what.
	Directory DirectoryConfig `koanf:"directory"`
	// Secrets are the shared secrets of the HTTP routes.
	Secrets SecretsConfig `koanf:"secrets"`
	// Shutdown configures draining on SIGTERM.
	Shutdown ShutdownConfig `koanf:"shutdown"`
	// Plugins maps a plugin name to its settings.
	Plugins map[string]PluginConfig `koanf:"plugins"`
}

// LogConfig configures log/slog.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is text or json. "" means json when DYNO is set, else text; Load
	// resolves it, so a loaded Config always holds text or json.
	Format string `koanf:"format"`
}

// SocketIOConfig configures Engine.IO/Socket.IO.
type SocketIOConfig struct {
	// PingInterval between server pings (Engine.IO pingInterval).
	PingInterval time.Duration `koanf:"ping_interval"`
	// PingTimeout is how long to wait for a pong.
	PingTimeout time.Duration `koanf:"ping_timeout"`
	// ConnectTimeout closes sockets that send no CONNECT in time.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// MaxPayload is the largest accepted frame in bytes (maxHttpBufferSize).
	MaxPayload int `koanf:"max_payload"`
	// CORSOrigin is the comma-separated list of allowed Origins (env CORS_ORIGIN);
	// empty or "*" allows any.
	CORSOrigin string `koanf:"cors_origin"`
	// OutboundQueue is the most frames queued to one socket before it is
	// disconnected as a slow consumer.
	OutboundQueue int `koanf:"outbound_queue"`
	// BatchDelay is how long a frame for a big room (100+ local members) may
	// wait to share one write with the socket's next frames when the socket
	// wrote less than BatchDelay ago; 0 writes every frame at once.
	BatchDelay time.Duration `koanf:"batch_delay"`
	// EventsPerSecond is the sustained rate of events one socket may send.
	EventsPerSecond float64 `koanf:"events_per_second"`
	// EventBurst is how many events one socket may send at once above
	// EventsPerSecond.
	EventBurst int `koanf:"event_burst"`
}

// AuthConfig configures token verification.
type AuthConfig struct {
	// Auth0Domain is the Auth0 API domain (env AUTH0_API_DOMAIN); the JWKS is at
	// https://<domain>/.well-known/jwks.json.
	Auth0Domain string `koanf:"auth0_domain"`
	// JWKSURL overrides the JWKS address (tests, other issuers).
	JWKSURL string `koanf:"jwks_url"`
	// TestJWKS is a JSON key set tried first (env TEST_JWKS).
	TestJWKS string `koanf:"test_jwks"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `koanf:"issuer"`
	// Audience, when set, must be among the token's aud claim.
	Audience string `koanf:"audience"`
	// JWKSRefreshInterval is the least time between two JWKS fetches triggered
	// by unknown kids.
	JWKSRefreshInterval time.Duration `koanf:"jwks_refresh_interval"`
	// JWKSTimeout bounds one JWKS fetch.
	JWKSTimeout time.Duration `koanf:"jwks_timeout"`
	// DevKeyFile is where dev mode keeps its key set (used when none of
	// Auth0Domain, JWKSURL and TestJWKS is set; see Config.DevMode).
	DevKeyFile string `koanf:"dev_key_file"`
}

// RedisConfig configures the store.
type RedisConfig struct {
	// URL of Redis (env REDIS_URL); empty = embedded Redis.
	URL string `koanf:"url"`
	// PoolSize is the most connections in the pool (env MAX_REDIS_CONNECTIONS);
	// 0 means the go-redis default (10 per GOMAXPROCS).
	PoolSize int `koanf:"pool_size"`
	// MinIdle is how many idle connections are kept open (env
	// MIN_REDIS_CONNECTIONS).
	MinIdle int `koanf:"min_idle"`
	// Timeout bounds each command.
	Timeout time.Duration `koanf:"timeout"`
	// HeartbeatInterval is how often this instance refreshes its liveness key.
	HeartbeatInterval time.Duration `koanf:"heartbeat_interval"`
	// InstanceTTL is after how long without a heartbeat an instance is dead.
	InstanceTTL time.Duration `koanf:"instance_ttl"`
	// TLSInsecureSkipVerify turns off the check of the server's certificate
	// for rediss:// URLs (Heroku Redis serves a self-signed one); it is
	// ignored for other URLs.
	TLSInsecureSkipVerify bool `koanf:"tls_insecure_skip_verify"`
}

// BusConfig configures the message bus.
type BusConfig struct {
	// URL is the AMQP URL (env CLOUDAMQP_URL). When empty and Username is set,
	// amqp://Username:Password@Host:Port/ is used; when both are empty the
	// in-memory bus is used.
	URL string `koanf:"url"`
	// Username is the RabbitMQ user when URL is empty (env RABBITMQ_USERNAME).
	Username string `koanf:"username"`
	// Password is the RabbitMQ password when URL is empty (env
	// RABBITMQ_PASSWORD).
	Password string `koanf:"password"`
	// Host is the RabbitMQ host when URL is empty.
	Host string `koanf:"host"`
	// PortNum is the RabbitMQ port when URL is empty (key bus.port).
	PortNum int `koanf:"port"`
	// PublishTimeout bounds a confirmed publish.
	PublishTimeout time.Duration `koanf:"publish_timeout"`
}

// DirectoryConfig configures the directory backend.
type DirectoryConfig struct {
	// Backend is "static" or "hasura" ("" = hasura when GraphQL is configured,
	// else static).
	Backend string `koanf:"backend"`
	// GraphQLDomain is Hasura's host[:port] (env GRAPHQL_API_DOMAIN).
	GraphQLDomain string `koanf:"graphql_domain"`
	// GraphQLSecure selects https (env GRAPHQL_API_SECURE_PROTOCOLS != "false").
	GraphQLSecure bool `koanf:"graphql_secure"`
	// AdminSecret is Hasura's admin secret (env HASURA_ADMIN_SECRET).
	AdminSecret string `koanf:"admin_secret"`
	// TestMode is the original's TEST_MODE: static directory with slug
	// test-conference-slug.
	TestMode bool `koanf:"test_mode"`
	// Conferences are the slugs every user belongs to in static mode.
	Conferences []string `koanf:"conferences"`
	// Chairs are the user ids allowed to accept/reject raised hands in static mode.
	Chairs []string `koanf:"chairs"`
	// CacheTTL is how long hasura answers are cached.
	CacheTTL time.Duration `koanf:"cache_ttl"`
}

// SecretsConfig holds the HTTP routes' shared secrets.
type SecretsConfig struct {
	// Summary guards POST /summary (env SECRET_FOR_SUMMARY).
	Summary string `koanf:"summary"`
	// Flush guards POST /flush (env SECRET_FOR_FLUSHING).
	Flush string `koanf:"flush"`
	// Event guards the Hasura event routes (env EVENT_SECRET).
	Event string `koanf:"event"`
	// Admin guards the /admin page (no original variable).
	Admin string `koanf:"admin"`
}

// ShutdownConfig configures draining.
type ShutdownConfig struct {
	// Timeout is the whole drain budget (Heroku gives 30 s).
	Timeout time.Duration `koanf:"timeout"`
}

// PluginConfig configures one plugin.
type PluginConfig struct {
	// Enabled turns the plugin on.
	Enabled bool `koanf:"enabled"`
	// Mode is "subprocess" (default; Load turns "" into it) or "inprocess".
	Mode string `koanf:"mode"`
	// Path is the executable of a plugin that is not built in.
	Path string `koanf:"path"`
	// TLS turns on go-plugin's AutoMTLS between the host and this plugin's
	// process (subprocess mode only). Off by default: the sockets sit in a
	// directory only the host's user can enter, which already keeps other
	// users out (see host/pluginhost's package doc); TLS adds encryption and
	// certificate authentication per message at a CPU cost.
	TLS bool `koanf:"tls"`
	// Config is handed to the plugin as JSON (see Config.PluginConfigJSON). It
	// is free-form: the host checks no key under it.
	Config map[string]any `koanf:"config"`
}
