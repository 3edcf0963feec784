package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
)

// Redaction is what Redacted shows instead of a secret.
const Redaction = "<redacted>"

// Redacted returns the effective configuration as a nested map keyed like the
// YAML file, with secrets replaced by "<redacted>": everything under secrets,
// every key whose name contains "secret", "password", "private_key" or
// "api_key" (plugin config included), auth.test_jwks, and the password of
// any URL ("redis://:pw@host" shows as "redis://:<redacted>@host"). Empty
// secrets stay "" so that one can see they are unset. Durations are strings
// such as "25s".
func (c *Config) Redacted() map[string]any {
	if c == nil {
		return nil
	}
	m, _ := toPlain(reflect.ValueOf(*c)).(map[string]any)
	return redactMap(m, false)
}

// YAML returns Redacted as YAML, for `realtime config check`. The output
// loads back with Load.
func (c *Config) YAML() ([]byte, error) {
	b, err := yaml.Parser().Marshal(c.Redacted())
	if err != nil {
		return nil, fmt.Errorf("config: marshal yaml: %w", err)
	}
	return b, nil
}

// PluginConfigJSON returns plugins.<name>.config as a JSON object; "{}" when
// the plugin or its config is absent.
func (c *Config) PluginConfigJSON(name string) (json.RawMessage, error) {
	p, ok := c.Plugins[name]
	if !ok || len(p.Config) == 0 {
		return json.RawMessage(`{}`), nil
	}
	b, err := json.Marshal(stringKeys(p.Config))
	if err != nil {
		return nil, fmt.Errorf("config: plugins.%s.config as JSON: %w", name, err)
	}
	return b, nil
}

// EnabledPlugins returns the names of the enabled plugins, sorted.
func (c *Config) EnabledPlugins() []string {
	var out []string
	for name, p := range c.Plugins {
		if p.Enabled {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// DevMode reports whether no real token issuer is configured (no Auth0
// domain, no TEST_JWKS, no JWKS URL): the host then signs its own dev tokens
// with the key set in auth.dev_key_file.
func (c *Config) DevMode() bool {
	return c.Auth.Auth0Domain == "" && c.Auth.TestJWKS == "" && c.Auth.JWKSURL == ""
}

// toPlain turns the Config (or a part of it) into maps, slices and scalars
// keyed by the koanf tags.
func toPlain(v reflect.Value) any {
	if v.Type() == durationType {
		return formatDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			out[tag] = toPlain(v.Field(i))
		}
		return out
	case reflect.Map:
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out[fmt.Sprint(iter.Key().Interface())] = toPlain(iter.Value())
		}
		return out
	case reflect.Slice:
		if v.IsNil() && v.Type() != stringSliceType {
			return nil
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = toPlain(v.Index(i))
		}
		return out
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return toPlain(v.Elem())
	default:
		return v.Interface()
	}
}

// formatDuration prints d the short way a person would write it: 5m, not
// 5m0s.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return d.String()
	}
}

// secretWords mark a key whose value is a secret.
var secretWords = []string{"secret", "password", "passwd", "private_key", "privatekey", "api_key", "apikey"}

func isSecretKey(key string) bool {
	lk := strings.ToLower(key)
	if lk == "test_jwks" {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(lk, w) {
			return true
		}
	}
	return false
}

// redactMap copies m with secrets hidden. Under a secret-named map (such as
// secrets) every non-empty leaf is a secret.
func redactMap(m map[string]any, secret bool) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = redactValue(v, secret || isSecretKey(k))
	}
	return out
}

func redactValue(v any, secret bool) any {
	switch x := v.(type) {
	case map[string]any:
		return redactMap(x, secret)
	case []any:
		if secret && len(x) > 0 {
			return Redaction
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e, false)
		}
		return out
	case string:
		if secret && x != "" {
			return Redaction
		}
		return redactURL(x)
	case nil:
		return nil
	default:
		if secret {
			return Redaction
		}
		return v
	}
}

// redactURL replaces the password in the userinfo of a URL-looking string:
// scheme://user:pw@host/... -> scheme://user:<redacted>@host/... Other
// strings are returned as they are.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i <= 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return s
	}
	colon := strings.Index(authority[:at], ":")
	if colon < 0 {
		return s
	}
	return s[:i+3] + authority[:colon+1] + Redaction + rest[at:]
}

// stringKeys converts map[any]any, which some YAML decoders produce, into
// map[string]any so that the value marshals to JSON.
func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = stringKeys(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = stringKeys(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stringKeys(e)
		}
		return out
	default:
		return v
	}
}
