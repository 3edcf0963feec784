package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// writeYAML writes content to a temporary config file and returns its path.
func writeYAML(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// flags returns a flag set with AddFlags parsed from args.
func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// value returns the effective (unredacted) value of a dotted key.
func value(t *testing.T, c *Config, key string) any {
	t.Helper()
	var cur any = toPlain(reflect.ValueOf(*c))
	for part := range strings.SplitSeq(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("key %s: %T is not a map at %q", key, cur, part)
		}
		if cur, ok = m[part]; !ok {
			t.Fatalf("key %s: no %q", key, part)
		}
	}
	return cur
}

func mustLoad(t *testing.T, opts LoadOptions) *Config {
	t.Helper()
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	c, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaultsCoverEveryKey(t *testing.T) {
	s := keySchema()
	var missing, extra []string
	d := Defaults()
	for key := range s.leaves {
		if _, ok := d[key]; !ok {
			missing = append(missing, key)
		}
	}
	for key := range d {
		if _, ok := s.leaves[key]; !ok && !strings.HasPrefix(key, "plugins.") {
			extra = append(extra, key)
		}
	}
	if len(missing)+len(extra) > 0 {
		t.Fatalf("Defaults() missing %v, extra %v", missing, extra)
	}
	// Each call returns a fresh map.
	d["port"] = 1
	if Defaults()["port"] != DefaultPort {
		t.Fatal("Defaults() shares its map between calls")
	}
}

func TestDefaultsLoad(t *testing.T) {
	c := mustLoad(t, LoadOptions{})
	checks := []struct {
		key  string
		want any
	}{
		{"port", 3002},
		{"host", ""},
		{"log.level", "info"},
		{"log.format", "text"},
		{"socketio.ping_interval", "25s"},
		{"socketio.ping_timeout", "5s"},
		{"socketio.connect_timeout", "45s"},
		{"socketio.max_payload", 1000000},
		{"socketio.outbound_queue", 1024},
		{"socketio.events_per_second", 50.0},
		{"socketio.event_burst", 100},
		{"auth.jwks_refresh_interval", "30s"},
		{"auth.jwks_timeout", "3s"},
		{"redis.pool_size", 0},
		{"redis.min_idle", 2},
		{"redis.timeout", "3s"},
		{"redis.heartbeat_interval", "5s"},
		{"redis.instance_ttl", "20s"},
		{"bus.host", "localhost"},
		{"bus.port", 5672},
		{"bus.publish_timeout", "5s"},
		{"directory.backend", ""},
		{"directory.graphql_secure", true},
		{"directory.conferences", []any{"demo"}},
		{"directory.chairs", []any{}},
		{"directory.cache_ttl", "5m"},
		{"shutdown.timeout", "25s"},
		{"plugins.presence.enabled", true},
		{"plugins.presence.mode", "subprocess"},
		{"plugins.chat.enabled", true},
		{"plugins.admin.enabled", true},
		{"plugins.echo.enabled", false},
	}
	for _, tc := range checks {
		if got := value(t, c, tc.key); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.key, got, tc.want)
		}
	}
	if got := c.EnabledPlugins(); !slices.Equal(got, []string{"admin", "analytics", "chat", "handraise", "presence", "push"}) {
		t.Errorf("EnabledPlugins() = %v", got)
	}
	if !c.DevMode() {
		t.Error("defaults are not dev mode")
	}
	if c.SocketIO.PingInterval != 25*time.Second {
		t.Errorf("PingInterval = %v", c.SocketIO.PingInterval)
	}
}

func TestLayering(t *testing.T) {
	path := writeYAML(t, "port: 4000\nlog:\n  level: warn\n")
	tests := []struct {
		name    string
		file    string
		env     []string
		args    []string
		port    int
		level   string
		portSrc string
	}{
		{name: "defaults", port: 3002, level: "info"},
		{name: "file", file: path, port: 4000, level: "warn"},
		{name: "original env over file", file: path, env: []string{"PORT=4001"}, port: 4001, level: "warn"},
		{name: "empty original env ignored", file: path, env: []string{"PORT="}, port: 4000, level: "warn"},
		{name: "RT_ over original", file: path, env: []string{"PORT=4001", "RT_PORT=4002", "RT_LOG__LEVEL=error"}, port: 4002, level: "error"},
		{name: "RT_ over original, any order", env: []string{"RT_PORT=4002", "PORT=4001"}, port: 4002, level: "info"},
		{name: "unset flags do not override", file: path, env: []string{"RT_PORT=4002"}, args: []string{}, port: 4002, level: "warn"},
		{name: "--set over env", file: path, env: []string{"RT_PORT=4002"}, args: []string{"--set", "port=4003", "--set", "log.level=debug"}, port: 4003, level: "debug"},
		{name: "--port over --set", file: path, env: []string{"RT_PORT=4002"}, args: []string{"--set", "port=4003", "--port", "4004", "--log-level", "error"}, port: 4004, level: "error"},
		{name: "--config", env: []string{}, args: []string{"--config", path}, port: 4000, level: "warn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{File: tc.file, Environ: tc.env}
			if tc.args != nil {
				opts.Flags = flags(t, tc.args...)
			}
			c := mustLoad(t, opts)
			if c.Port != tc.port || c.Log.Level != tc.level {
				t.Fatalf("port=%d level=%s, want %d %s", c.Port, c.Log.Level, tc.port, tc.level)
			}
		})
	}
}

func TestOriginalEnvNames(t *testing.T) {
	tests := []struct {
		env  string
		file string // optional YAML below the environment
		key  string
		want any
	}{
		{env: "PORT=4000", key: "port", want: 4000},
		{env: "REDIS_URL=redis://localhost:6380/1", key: "redis.url", want: "redis://localhost:6380/1"},
		{env: "MAX_REDIS_CONNECTIONS=20", key: "redis.pool_size", want: 20},
		{env: "MIN_REDIS_CONNECTIONS=4", key: "redis.min_idle", want: 4},
		{env: "AUTH0_API_DOMAIN=clowdr.eu.auth0.com", key: "auth.auth0_domain", want: "clowdr.eu.auth0.com"},
		{env: `TEST_JWKS={"keys":[]}`, key: "auth.test_jwks", want: `{"keys":[]}`},
		{env: "CORS_ORIGIN=https://a.example.org,http://localhost:3000", key: "socketio.cors_origin", want: "https://a.example.org,http://localhost:3000"},
		{env: "SECRET_FOR_SUMMARY=s1", key: "secrets.summary", want: "s1"},
		{env: "SECRET_FOR_FLUSHING=s2", key: "secrets.flush", want: "s2"},
		{env: "EVENT_SECRET=s3", key: "secrets.event", want: "s3"},
		{env: "CLOUDAMQP_URL=amqps://u:p@rabbit.example.org/vhost", key: "bus.url", want: "amqps://u:p@rabbit.example.org/vhost"},
		{env: "RABBITMQ_USERNAME=guest", key: "bus.username", want: "guest"},
		{env: "GRAPHQL_API_DOMAIN=hasura.example.org:8080", key: "directory.graphql_domain", want: "hasura.example.org:8080"},
		{env: "GRAPHQL_API_SECURE_PROTOCOLS=false", key: "directory.graphql_secure", want: false},
		{env: "GRAPHQL_API_SECURE_PROTOCOLS=no", key: "directory.graphql_secure", want: true},
		{env: "GRAPHQL_API_SECURE_PROTOCOLS=true", file: "directory: {graphql_secure: false}", key: "directory.graphql_secure", want: true},
		{env: "HASURA_ADMIN_SECRET=s4", key: "directory.admin_secret", want: "s4"},
		{env: "TEST_MODE=true", key: "directory.test_mode", want: true},
		{env: "TEST_MODE=1", file: "directory: {test_mode: true}", key: "directory.test_mode", want: false},
		{env: "TEST_MODE=", file: "directory: {test_mode: true}", key: "directory.test_mode", want: true},
		{env: "DYNO=web.1", key: "instance", want: "web.1"},
		{env: "DYNO=web.1", key: "log.format", want: "json"},
		{env: "DYNO=web.1", file: "instance: mine", key: "instance", want: "mine"},
		{env: "DYNO=web.1", file: "log: {format: text}", key: "log.format", want: "text"},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		name, _, _ := strings.Cut(tc.env, "=")
		covered[name] = true
		t.Run(tc.env, func(t *testing.T) {
			opts := LoadOptions{Environ: []string{tc.env}}
			if tc.file != "" {
				opts.File = writeYAML(t, tc.file)
			}
			c := mustLoad(t, opts)
			if got := value(t, c, tc.key); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("%s = %#v, want %#v", tc.key, got, tc.want)
			}
		})
	}
	for _, v := range originalEnv {
		if !covered[v.name] && v.name != "RABBITMQ_PASSWORD" {
			t.Errorf("original variable %s is not in the table", v.name)
		}
	}
	// RABBITMQ_PASSWORD needs a username to validate.
	c := mustLoad(t, LoadOptions{Environ: []string{"RABBITMQ_USERNAME=u", "RABBITMQ_PASSWORD=pw"}})
	if c.Bus.Password != "pw" {
		t.Errorf("bus.password = %q", c.Bus.Password)
	}
	// RT_ names win over DYNO too.
	c = mustLoad(t, LoadOptions{Environ: []string{"DYNO=web.1", "RT_INSTANCE=rt"}})
	if c.Instance != "rt" {
		t.Errorf("instance = %q, want rt", c.Instance)
	}
}

func TestRTEnv(t *testing.T) {
	c := mustLoad(t, LoadOptions{Environ: []string{
		"RT_REDIS__POOL_SIZE=7",
		"RT_REDIS__MIN_IDLE=1",
		"RT_PLUGINS__CHAT__ENABLED=false",
		"RT_PLUGINS__CHAT__CONFIG__MAX_MESSAGE_BYTES=4096",
		"RT_PLUGINS__CHAT__CONFIG__ALLOW_EDITS=true",
		"RT_PLUGINS__CHAT__CONFIG__GREETING=hello",
		"RT_PLUGINS__HAND_RAISE__ENABLED=true",
		"RT_PLUGINS__HAND_RAISE__MODE=inprocess",
		"RT_DIRECTORY__CONFERENCES=a, b,,c",
		"RT_SOCKETIO__PING_INTERVAL=1m",
		"RT_SOCKETIO__EVENTS_PER_SECOND=2.5",
		"REDIS_URL=redis://original:6379",
		"RT_REDIS__URL=redis://rt:6379",
		"NOT_OURS=1",
	}})
	if c.Redis.PoolSize != 7 || c.Redis.MinIdle != 1 {
		t.Errorf("redis pool %d/%d", c.Redis.PoolSize, c.Redis.MinIdle)
	}
	if c.Plugins["chat"].Enabled {
		t.Error("plugins.chat.enabled not overridden")
	}
	if p := c.Plugins["hand_raise"]; !p.Enabled || p.Mode != "inprocess" {
		t.Errorf("plugins.hand_raise = %+v", p)
	}
	if !slices.Equal(c.Directory.Conferences, []string{"a", "b", "c"}) {
		t.Errorf("conferences = %q", c.Directory.Conferences)
	}
	if c.SocketIO.PingInterval != time.Minute || c.SocketIO.EventsPerSecond != 2.5 {
		t.Errorf("socketio = %+v", c.SocketIO)
	}
	if c.Redis.URL != "redis://rt:6379" {
		t.Errorf("RT_ did not win: %s", c.Redis.URL)
	}
	got, err := c.PluginConfigJSON("chat")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"allow_edits":true,"greeting":"hello","max_message_bytes":4096}`; string(got) != want {
		t.Errorf("chat config = %s, want %s", got, want)
	}
	if got := c.EnabledPlugins(); !slices.Equal(got, []string{"admin", "analytics", "hand_raise", "handraise", "presence", "push"}) {
		t.Errorf("EnabledPlugins() = %v", got)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		args  []string
		wants []string
	}{
		{name: "file", file: "redis:\n  poolsize: 3\n", wants: []string{`unknown key "redis.poolsize"`, "config.yaml"}},
		{name: "file top level", file: "prot: 3\n", wants: []string{`unknown key "prot"`}},
		{name: "file plugin field", file: "plugins:\n  chat:\n    enabeld: true\n", wants: []string{`unknown key "plugins.chat.enabeld"`}},
		{name: "file scalar section", file: "redis: fast\n", wants: []string{`redis: is a section`}},
		{name: "RT_ env", env: []string{"RT_REDIS__POOLSIZE=3"}, wants: []string{`unknown key "redis.poolsize"`, "env RT_REDIS__POOLSIZE"}},
		{name: "RT_ single underscore", env: []string{"RT_REDIS_POOL_SIZE=3"}, wants: []string{`unknown key "redis_pool_size"`, "RT_REDIS_POOL_SIZE"}},
		{name: "--set", args: []string{"--set", "socketio.pinginterval=3s"}, wants: []string{`unknown key "socketio.pinginterval"`, "--set"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{Environ: tc.env}
			if opts.Environ == nil {
				opts.Environ = []string{}
			}
			if tc.file != "" {
				opts.File = writeYAML(t, tc.file)
			}
			if tc.args != nil {
				opts.Flags = flags(t, tc.args...)
			}
			_, err := Load(opts)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Errorf("error %v is not a *KeyError", err)
			}
		})
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		key   string
		wants []string // more substrings of the error
	}{
		{name: "port not a number", env: []string{"PORT=abc"}, key: "port", wants: []string{`"abc"`, "env PORT"}},
		{name: "port zero", env: []string{"RT_PORT=0"}, key: "port"},
		{name: "port too big", file: "port: 70000", key: "port"},
		{name: "port fraction", file: "port: 3002.5", key: "port", wants: []string{"whole number"}},
		{name: "duration word", env: []string{"RT_SOCKETIO__PING_INTERVAL=soon"}, key: "socketio.ping_interval", wants: []string{`"soon"`}},
		{name: "duration as a number", file: "socketio:\n  ping_interval: 25\n", key: "socketio.ping_interval", wants: []string{"duration string"}},
		{name: "duration negative", env: []string{"RT_SHUTDOWN__TIMEOUT=-1s"}, key: "shutdown.timeout"},
		{name: "ping timeout >= interval", env: []string{"RT_SOCKETIO__PING_TIMEOUT=25s"}, key: "socketio.ping_timeout", wants: []string{"less than socketio.ping_interval"}},
		{name: "log level", env: []string{"RT_LOG__LEVEL=verbose"}, key: "log.level"},
		{name: "log format", file: "log: {format: xml}", key: "log.format"},
		{name: "plugin mode", env: []string{"RT_PLUGINS__CHAT__MODE=thread"}, key: "plugins.chat.mode"},
		{name: "plugin enabled", env: []string{"RT_PLUGINS__CHAT__ENABLED=maybe"}, key: "plugins.chat.enabled"},
		{name: "plugin config not JSON", env: []string{"RT_PLUGINS__CHAT__CONFIG=[1]"}, key: "plugins.chat.config"},
		{name: "directory backend", env: []string{"RT_DIRECTORY__BACKEND=ldap"}, key: "directory.backend"},
		{name: "hasura without domain", env: []string{"RT_DIRECTORY__BACKEND=hasura"}, key: "directory.backend"},
		{name: "bus url scheme", env: []string{"CLOUDAMQP_URL=http://rabbit"}, key: "bus.url"},
		{name: "bus password without user", env: []string{"RABBITMQ_PASSWORD=pw"}, key: "bus.password"},
		{name: "redis url scheme", env: []string{"REDIS_URL=http://u:hunter2@redis"}, key: "redis.url", wants: []string{"<redacted>"}},
		{name: "min idle over pool", env: []string{"MAX_REDIS_CONNECTIONS=2", "MIN_REDIS_CONNECTIONS=5"}, key: "redis.min_idle"},
		{name: "instance ttl", env: []string{"RT_REDIS__INSTANCE_TTL=5s"}, key: "redis.instance_ttl"},
		{name: "test jwks", env: []string{"TEST_JWKS=not json"}, key: "auth.test_jwks"},
		{name: "jwks url", env: []string{"RT_AUTH__JWKS_URL=ftp://x/jwks.json"}, key: "auth.jwks_url"},
		{name: "cors origin with path", env: []string{"CORS_ORIGIN=https://a.example.org/app"}, key: "socketio.cors_origin"},
		{name: "events per second", env: []string{"RT_SOCKETIO__EVENTS_PER_SECOND=0"}, key: "socketio.events_per_second"},
		{name: "outbound queue", env: []string{"RT_SOCKETIO__OUTBOUND_QUEUE=0"}, key: "socketio.outbound_queue"},
		{name: "batch delay", env: []string{"RT_SOCKETIO__BATCH_DELAY=2s"}, key: "socketio.batch_delay"},
		{name: "bus port", env: []string{"RT_BUS__PORT=-1"}, key: "bus.port"},
		{name: "max payload", env: []string{"RT_SOCKETIO__MAX_PAYLOAD=1MB"}, key: "socketio.max_payload"},
		{name: "bool", env: []string{"RT_DIRECTORY__GRAPHQL_SECURE=sometimes"}, key: "directory.graphql_secure"},
		{name: "plugin path inprocess", file: "plugins:\n  ext:\n    path: /opt/ext\n    mode: inprocess\n", key: "plugins.ext.mode",
			wants: []string{`must be "subprocess" for a plugin with a path`, "/opt/ext", "config.yaml"}},
		{name: "redis tls skip verify", env: []string{"RT_REDIS__TLS_INSECURE_SKIP_VERIFY=perhaps"}, key: "redis.tls_insecure_skip_verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{Environ: tc.env}
			if opts.Environ == nil {
				opts.Environ = []string{}
			}
			if tc.file != "" {
				opts.File = writeYAML(t, tc.file)
			}
			_, err := Load(opts)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Errorf("error %v: want a *KeyError for %s", err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %s", err, tc.key)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
}

// TestBuiltinPlugins checks LoadOptions.BuiltinPlugins: an enabled plugin
// that is neither built in nor given a path fails, naming plugins.<name> and
// where it was enabled; a disabled one, one with a path, or a nil list pass.
func TestBuiltinPlugins(t *testing.T) {
	builtin := []string{"chat", "presence"}
	environ := []string{}
	only := func(extra ...string) []string {
		// Disable the default plugins that are not in builtin.
		env := []string{}
		for _, n := range []string{"admin", "analytics", "handraise", "push", "echo"} {
			env = append(env, "RT_PLUGINS__"+strings.ToUpper(n)+"__ENABLED=false")
		}
		return append(env, extra...)
	}
	if _, err := Load(LoadOptions{Environ: only(), BuiltinPlugins: builtin}); err != nil {
		t.Fatalf("only built-ins enabled: %v", err)
	}
	_, err := Load(LoadOptions{Environ: only("RT_PLUGINS__NOPE__ENABLED=true"), BuiltinPlugins: builtin})
	var ke *KeyError
	if err == nil || !errors.As(err, &ke) || ke.Key != "plugins.nope" || !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown enabled plugin: err = %v, want a *KeyError for plugins.nope", err)
	}
	for _, w := range []string{"config: plugins.nope:", "not a built-in plugin (built-ins: chat, presence)", "env RT_PLUGINS__NOPE__ENABLED"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	// The default config enables admin etc.: each one not in the list fails.
	_, err = Load(LoadOptions{Environ: environ, BuiltinPlugins: builtin})
	if err == nil || !strings.Contains(err.Error(), "plugins.admin:") || !strings.Contains(err.Error(), "plugins.push:") {
		t.Errorf("defaults with a short built-in list: err = %v", err)
	}
	for name, env := range map[string][]string{
		"disabled":     only("RT_PLUGINS__NOPE__ENABLED=false"),
		"with a path":  only("RT_PLUGINS__NOPE__ENABLED=true", "RT_PLUGINS__NOPE__PATH=/opt/nope"),
		"nil list":     {"RT_PLUGINS__NOPE__ENABLED=true"},
		"empty config": environ,
	} {
		list := builtin
		if name == "nil list" || name == "empty config" {
			list = nil
		}
		if _, err := Load(LoadOptions{Environ: env, BuiltinPlugins: list}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRedisTLSInsecureSkipVerify(t *testing.T) {
	if c := mustLoad(t, LoadOptions{Environ: []string{}}); c.Redis.TLSInsecureSkipVerify {
		t.Error("redis.tls_insecure_skip_verify defaults to true")
	}
	c := mustLoad(t, LoadOptions{Environ: []string{"RT_REDIS__TLS_INSECURE_SKIP_VERIFY=true"}})
	if !c.Redis.TLSInsecureSkipVerify {
		t.Error("RT_REDIS__TLS_INSECURE_SKIP_VERIFY=true did not set redis.tls_insecure_skip_verify")
	}
}

func TestValidateZeroConfig(t *testing.T) {
	err := (&Config{}).Validate()
	if err == nil {
		t.Fatal("zero Config validates")
	}
	for _, key := range []string{"port", "log.level", "socketio.ping_interval", "redis.timeout", "bus.port", "shutdown.timeout"} {
		if !strings.Contains(err.Error(), "config: "+key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestPluginConfig(t *testing.T) {
	path := writeYAML(t, `
plugins:
  chat:
    config:
      max_message_bytes: 100
      limits:
        burst: [1, 2]
        Mixed_Case: yes
  push:
    enabled: true
    path: /usr/local/bin/push
  echo:
    config: {}
`)
	c := mustLoad(t, LoadOptions{File: path, Environ: []string{"RT_PLUGINS__CHAT__CONFIG__LIMITS__RATE=1.5"}})
	if c2 := mustLoad(t, LoadOptions{File: writeYAML(t, "socketio: {max_payload: 1e6}")}); c2.SocketIO.MaxPayload != 1000000 {
		t.Errorf("max_payload 1e6 = %d", c2.SocketIO.MaxPayload)
	}
	tests := []struct {
		name string
		want string
	}{
		{"chat", `{"limits":{"Mixed_Case":"yes","burst":[1,2],"rate":1.5},"max_message_bytes":100}`},
		{"push", `{}`},
		{"echo", `{}`},
		{"absent", `{}`},
	}
	for _, tc := range tests {
		got, err := c.PluginConfigJSON(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(got) || string(got) != tc.want {
			t.Errorf("PluginConfigJSON(%q) = %s, want %s", tc.name, got, tc.want)
		}
	}
	if p := c.Plugins["push"]; !p.Enabled || p.Mode != "subprocess" || p.Path != "/usr/local/bin/push" {
		t.Errorf("push = %+v", p)
	}

	// The whole subtree as JSON, from the environment or --set.
	c = mustLoad(t, LoadOptions{
		Environ: []string{`RT_PLUGINS__CHAT__CONFIG={"a":{"b":1}}`},
		Flags:   flags(t, "--set", "plugins.admin.config.title=Hi, there", "--set", "plugins.admin.config.n=3"),
	})
	for name, want := range map[string]string{"chat": `{"a":{"b":1}}`, "admin": `{"n":3,"title":"Hi, there"}`} {
		got, err := c.PluginConfigJSON(name)
		if err != nil || string(got) != want {
			t.Errorf("PluginConfigJSON(%q) = %s, %v; want %s", name, got, err, want)
		}
	}
}

func TestScalar(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"42", 42}, {"-3", -3}, {"1.5", 1.5}, {"true", true}, {"false", false},
		{"True", "True"}, {"0x10", "0x10"}, {"NaN", "NaN"}, {"Inf", "Inf"}, {"1e3", "1e3"}, {" 4", " 4"}, {"", ""}, {"abc", "abc"},
	}
	for _, tc := range tests {
		if got := scalar(tc.in); got != tc.want {
			t.Errorf("scalar(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	path := writeYAML(t, `
plugins:
  push:
    config:
      vapid_private_key: pk-SECRET-1
      nested:
        db_password: pw-SECRET-2
        note: plain
`)
	c := mustLoad(t, LoadOptions{File: path, Environ: []string{
		"REDIS_URL=redis://:pw-SECRET-3@redis.example.org:6379/0",
		"CLOUDAMQP_URL=amqps://user:pw-SECRET-4@rabbit.example.org/vh",
		"SECRET_FOR_SUMMARY=SECRET-5",
		"EVENT_SECRET=SECRET-6",
		"HASURA_ADMIN_SECRET=SECRET-7",
		`TEST_JWKS={"keys":[{"k":"SECRET-8"}]}`,
		"RT_SECRETS__ADMIN=SECRET-9",
		"RT_BUS__USERNAME=user",
		"RT_BUS__PASSWORD=SECRET-10",
		"AUTH0_API_DOMAIN=tenant.auth0.com",
	}})
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "SECRET") {
		t.Fatalf("YAML shows a secret:\n%s", out)
	}
	r := c.Redacted()
	checks := []struct {
		path []string
		want any
	}{
		{[]string{"redis", "url"}, "redis://:<redacted>@redis.example.org:6379/0"},
		{[]string{"bus", "url"}, "amqps://user:<redacted>@rabbit.example.org/vh"},
		{[]string{"bus", "password"}, Redaction},
		{[]string{"bus", "username"}, "user"},
		{[]string{"secrets", "summary"}, Redaction},
		{[]string{"secrets", "flush"}, ""}, // unset secrets stay visibly empty
		{[]string{"directory", "admin_secret"}, Redaction},
		{[]string{"auth", "test_jwks"}, Redaction},
		{[]string{"auth", "auth0_domain"}, "tenant.auth0.com"},
		{[]string{"plugins", "push", "config", "vapid_private_key"}, Redaction},
		{[]string{"plugins", "push", "config", "nested", "db_password"}, Redaction},
		{[]string{"plugins", "push", "config", "nested", "note"}, "plain"},
		{[]string{"socketio", "ping_interval"}, "25s"},
	}
	for _, tc := range checks {
		var cur any = r
		for _, p := range tc.path {
			cur = cur.(map[string]any)[p]
		}
		if cur != tc.want {
			t.Errorf("%s = %#v, want %#v", strings.Join(tc.path, "."), cur, tc.want)
		}
	}
	// Redacted does not touch the Config.
	if c.Secrets.Summary != "SECRET-5" || !strings.Contains(c.Redis.URL, "pw-SECRET-3") {
		t.Error("Redacted changed the Config")
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://:pw@host:6379", "redis://:<redacted>@host:6379"},
		{"redis://user:pw@host/0?x=1", "redis://user:<redacted>@host/0?x=1"},
		{"amqp://u:p@ss@host/", "amqp://u:<redacted>@host/"},
		{"redis://user@host", "redis://user@host"},
		{"redis://host:6379", "redis://host:6379"},
		{"https://host/path?u=a:b@c", "https://host/path?u=a:b@c"},
		{"not a url", "not a url"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c := mustLoad(t, LoadOptions{Environ: []string{
		"RT_PORT=4000", "RT_DIRECTORY__CHAIRS=u1,u2", "RT_PLUGINS__CHAT__CONFIG__N=3", "RT_REDIS__TIMEOUT=1500ms",
	}})
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	c2 := mustLoad(t, LoadOptions{File: writeYAML(t, string(out))})
	if !reflect.DeepEqual(c.Redacted(), c2.Redacted()) {
		t.Fatalf("round trip differs:\n%s", out)
	}
}

func TestNullKeepsDefault(t *testing.T) {
	c := mustLoad(t, LoadOptions{File: writeYAML(t, "port:\nredis:\nplugins:\n  chat:\n")})
	if c.Port != DefaultPort || c.Redis.MinIdle != 2 || !c.Plugins["chat"].Enabled {
		t.Fatalf("null values changed defaults: %+v", c)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	tests := []struct {
		name    string
		opts    LoadOptions
		wantErr string
	}{
		{name: "explicit path missing", opts: LoadOptions{File: missing}, wantErr: "nope.yaml"},
		{name: "--config missing", opts: LoadOptions{Flags: flags(t, "--config", missing)}, wantErr: "nope.yaml"},
		{name: "--config empty means none", opts: LoadOptions{Flags: flags(t, "--config", "")}},
		{name: "bad yaml", opts: LoadOptions{File: writeYAML(t, "port: [")}, wantErr: "config.yaml"},
		{name: "no file at all", opts: LoadOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Environ = []string{}
			_, err := Load(tc.opts)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Load error = %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultFileInWorkingDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DefaultFile), []byte("port: 4500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if c := mustLoad(t, LoadOptions{}); c.Port != 4500 {
		t.Fatalf("./config.yaml not read: port %d", c.Port)
	}
	// --config "" skips it.
	if c := mustLoad(t, LoadOptions{Flags: flags(t, "--config=")}); c.Port != DefaultPort {
		t.Fatalf("--config \"\" still read ./config.yaml: port %d", c.Port)
	}
}

func TestForeignFlagsIgnored(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Int("workers", 1, "")
	fs.String("host", "", "") // not ours even though a key is called host
	AddFlags(fs)
	AddFlags(fs) // twice is harmless
	if err := fs.Parse([]string{"--workers", "9", "--host", "1.2.3.4", "--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, LoadOptions{Flags: fs})
	if c.Host != "" || c.Log.Level != "debug" {
		t.Fatalf("host=%q level=%q", c.Host, c.Log.Level)
	}
	if _, err := Load(LoadOptions{Environ: []string{}, Flags: flags(t, "--set", "novalue")}); err == nil {
		t.Fatal("--set without = accepted")
	}
}

func TestDevMode(t *testing.T) {
	tests := []struct {
		env  string
		want bool
	}{
		{"", true},
		{"AUTH0_API_DOMAIN=t.auth0.com", false},
		{`TEST_JWKS={"keys":[]}`, false},
		{"RT_AUTH__JWKS_URL=http://127.0.0.1:1/jwks.json", false},
	}
	for _, tc := range tests {
		c := mustLoad(t, LoadOptions{Environ: []string{tc.env}})
		if got := c.DevMode(); got != tc.want {
			t.Errorf("%s: DevMode() = %v", tc.env, got)
		}
	}
}

// TestRepoConfigYAML checks the config.yaml at the repository root: it loads,
// validates, equals the defaults, lists every key, and documents each one.
func TestRepoConfigYAML(t *testing.T) {
	const path = "../../config.yaml"
	c := mustLoad(t, LoadOptions{File: path})
	def := mustLoad(t, LoadOptions{})
	if !reflect.DeepEqual(c.Redacted(), def.Redacted()) {
		got, _ := c.YAML()
		want, _ := def.YAML()
		t.Errorf("config.yaml differs from the defaults:\n%s\nwant\n%s", got, want)
	}
	if !slices.Equal(c.EnabledPlugins(), []string{"admin", "analytics", "chat", "handraise", "presence", "push"}) || c.Plugins["echo"].Enabled {
		t.Errorf("plugins = %+v", c.Plugins)
	}

	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, key := range Keys() {
		if strings.HasPrefix(key, "plugins.<name>.") {
			continue
		}
		if !k.Exists(key) {
			missing = append(missing, key)
		}
	}
	for name := range Defaults() {
		if !k.Exists(name) {
			missing = append(missing, name)
		}
	}
	for _, name := range []string{"presence", "chat", "admin", "echo"} {
		for _, f := range []string{"enabled", "mode", "path", "config"} {
			if key := "plugins." + name + "." + f; !k.Exists(key) {
				missing = append(missing, key)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("config.yaml lacks %v", slices.Compact(missing))
	}
	for name, val := range k.All() {
		if isSecretKey(name[strings.LastIndex(name, ".")+1:]) || strings.HasPrefix(name, "secrets.") {
			if val != "" {
				t.Errorf("config.yaml sets secret %s", name)
			}
		}
	}

	// Every key line is preceded by a comment line.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	prev := ""
	for i, line := range lines {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "#") || strings.HasPrefix(trim, "- ") {
			prev = trim
			continue
		}
		if !strings.HasPrefix(prev, "#") {
			t.Errorf("config.yaml line %d %q has no comment above it", i+1, trim)
		}
		prev = trim
	}
}

func TestKeyErrorFormat(t *testing.T) {
	tests := []struct {
		err  *KeyError
		want string
	}{
		{&KeyError{Key: "redis.poolsize", Source: "config.yaml", Err: ErrUnknownKey}, `config: unknown key "redis.poolsize" (from config.yaml)`},
		{&KeyError{Key: "port", Problem: "must be a port number 1..65535, got 0", Err: ErrInvalid}, `config: port: must be a port number 1..65535, got 0`},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {2 * time.Hour, "2h"}, {90 * time.Minute, "90m"}, {25 * time.Second, "25s"}, {1500 * time.Millisecond, "1.5s"},
	}
	for _, tc := range tests {
		if got := formatDuration(tc.in); got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if d, err := time.ParseDuration(formatDuration(tc.in)); err != nil || d != tc.in {
			t.Errorf("%q does not parse back to %v", formatDuration(tc.in), tc.in)
		}
	}
}

// TestPluginTLS checks plugins.<name>.tls: off by default, set from a file,
// the environment or --set, and refused with mode inprocess.
func TestPluginTLS(t *testing.T) {
	def := mustLoad(t, LoadOptions{})
	for name, p := range def.Plugins {
		if p.TLS {
			t.Errorf("plugins.%s.tls is on by default", name)
		}
	}

	path := writeYAML(t, "plugins:\n  presence:\n    tls: true\n")
	c := mustLoad(t, LoadOptions{
		File:    path,
		Environ: []string{"RT_PLUGINS__CHAT__TLS=true"},
		Flags:   flags(t, "--set", "plugins.admin.tls=true"),
	})
	for _, name := range []string{"presence", "chat", "admin"} {
		if !c.Plugins[name].TLS {
			t.Errorf("plugins.%s.tls = false, want true", name)
		}
	}
	if c.Plugins["push"].TLS {
		t.Error("plugins.push.tls = true, want false (not set)")
	}

	_, err := Load(LoadOptions{
		Environ: []string{"RT_PLUGINS__CHAT__MODE=inprocess", "RT_PLUGINS__CHAT__TLS=true"},
	})
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "plugins.chat.tls" || !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "inprocess") || !strings.Contains(err.Error(), "env RT_PLUGINS__CHAT__TLS") {
		t.Errorf("tls with inprocess: err = %v, want a KeyError for plugins.chat.tls from env RT_PLUGINS__CHAT__TLS", err)
	}

	// A hand-built Config: mode "" is subprocess, so tls is fine there.
	hand := *def
	hand.Plugins = map[string]PluginConfig{
		"a": {Enabled: true, TLS: true},
		"b": {Enabled: true, Mode: "inprocess", TLS: true},
	}
	err = hand.Validate()
	if !errors.As(err, &ke) || ke.Key != "plugins.b.tls" || strings.Contains(err.Error(), "plugins.a.") {
		t.Errorf("Validate: err = %v, want only plugins.b.tls", err)
	}
}
