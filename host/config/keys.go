package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// ErrUnknownKey is wrapped by the errors for keys that the Config does not
// have.
var ErrUnknownKey = errors.New("unknown key")

// ErrInvalid is wrapped by the errors for values that do not fit their key.
var ErrInvalid = errors.New("invalid value")

// KeyError is a problem with one configuration key. Load and Validate return
// them, joined with errors.Join when there are several.
type KeyError struct {
	// Key is the dotted key, e.g. "redis.pool_size".
	Key string
	// Source says where the value came from: a file path, "env NAME",
	// "flag --port", "flag --set"; empty for defaults or when unknown.
	Source string
	// Problem describes what is wrong; empty for unknown keys.
	Problem string
	// Err is ErrUnknownKey or ErrInvalid, possibly wrapping a cause.
	Err error
}

// Error implements error.
func (e *KeyError) Error() string {
	var b strings.Builder
	if errors.Is(e.Err, ErrUnknownKey) {
		fmt.Fprintf(&b, "config: unknown key %q", e.Key)
		if e.Problem != "" {
			b.WriteString(": " + e.Problem)
		}
	} else {
		fmt.Fprintf(&b, "config: %s: %s", e.Key, e.Problem)
	}
	if e.Source != "" {
		fmt.Fprintf(&b, " (from %s)", e.Source)
	}
	return b.String()
}

// Unwrap returns ErrUnknownKey or ErrInvalid.
func (e *KeyError) Unwrap() error { return e.Err }

// schema is the set of keys the Config struct has, derived once from its
// koanf tags.
type schema struct {
	leaves   map[string]reflect.Type // "redis.pool_size" -> int
	sections map[string]bool         // "redis", "log", ...
}

var (
	schemaOnce sync.Once
	theSchema  schema
)

func keySchema() schema {
	schemaOnce.Do(func() {
		theSchema = schema{leaves: map[string]reflect.Type{}, sections: map[string]bool{}}
		walkSchema(reflect.TypeOf(Config{}), "", &theSchema)
	})
	return theSchema
}

func walkSchema(t reflect.Type, prefix string, s *schema) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		switch {
		case f.Type.Kind() == reflect.Struct:
			s.sections[key] = true
			walkSchema(f.Type, key+".", s)
		case key == "plugins":
			s.sections[key] = true // checked by checkPluginKey
		default:
			s.leaves[key] = f.Type
		}
	}
}

// pluginFields are the keys of one plugins.<name> entry besides config.
var pluginFields = map[string]bool{"enabled": true, "mode": true, "path": true, "tls": true}

// isPluginConfigKey reports whether key is plugins.<name>.config or below it.
func isPluginConfigKey(key string) bool {
	parts := strings.SplitN(key, ".", 4)
	return len(parts) >= 3 && parts[0] == "plugins" && parts[1] != "" && parts[2] == "config"
}

// Keys returns every key that Config has, sorted, with plugin entries as
// "plugins.<name>.enabled" etc. It is meant for documentation and tests.
func Keys() []string {
	s := keySchema()
	out := make([]string, 0, len(s.leaves)+4)
	for k := range s.leaves {
		out = append(out, k)
	}
	for f := range pluginFields {
		out = append(out, "plugins.<name>."+f)
	}
	out = append(out, "plugins.<name>.config")
	sort.Strings(out)
	return out
}

// checkKey reports whether a flat key with value val may be set. It returns
// nil for a leaf key of the struct, for anything under plugins.<name>.config,
// and for an empty or null section.
func checkKey(key string, val any, source string) error {
	s := keySchema()
	if _, ok := s.leaves[key]; ok {
		return nil
	}
	// An empty map or null (YAML "redis:" with nothing below) is an empty
	// section.
	isEmptySection := func() bool {
		if val == nil {
			return true
		}
		m, ok := val.(map[string]any)
		return ok && len(m) == 0
	}
	if s.sections[key] {
		if isEmptySection() {
			return nil
		}
		return &KeyError{Key: key, Source: source, Problem: fmt.Sprintf("is a section, not a value (got %T)", val), Err: ErrInvalid}
	}
	parts := strings.Split(key, ".")
	if parts[0] == "plugins" && len(parts) >= 2 && parts[1] != "" {
		switch {
		case len(parts) == 2:
			if isEmptySection() {
				return nil
			}
			return &KeyError{Key: key, Source: source, Problem: fmt.Sprintf("a plugin entry is a section, not a value (got %T)", val), Err: ErrInvalid}
		case len(parts) == 3 && pluginFields[parts[2]]:
			return nil
		case parts[2] == "config":
			return nil
		}
	}
	return &KeyError{Key: key, Source: source, Err: ErrUnknownKey}
}
