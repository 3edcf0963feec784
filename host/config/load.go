package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// DefaultFile is the file Load reads when no path is given, if it exists.
const DefaultFile = "config.yaml"

// EnvPrefix starts the environment variables that name any key:
// RT_REDIS__POOL_SIZE sets redis.pool_size.
const EnvPrefix = "RT_"

// LoadOptions says where Load reads the configuration from.
type LoadOptions struct {
	// File is the YAML file. "" means the --config flag when the user set it
	// in Flags (--config "" means no file), else ./config.yaml if it exists,
	// else no file. A path given here or with --config must exist.
	File string
	// Environ is the environment as "NAME=value" strings; nil means
	// os.Environ().
	Environ []string
	// Flags is the parsed flag set holding the flags of AddFlags; it may be
	// nil. Only flags that the user set override the other layers; flags
	// that AddFlags did not define are ignored.
	Flags *pflag.FlagSet
	// BuiltinPlugins, when non-nil, lists the plugins built into the binary
	// (sdk.Registered()); Load then also fails for an enabled plugin that is
	// neither among them nor given a path, as the plugin host would at
	// start. Nil skips that check: this package cannot know the registry.
	BuiltinPlugins []string
}

// envVar maps one variable of the original Node service to a key.
type envVar struct {
	name string
	key  string
	// conv turns the (non-empty) value into the key's value; nil keeps the
	// string, which the decoder converts to the key's type.
	conv func(string) any
}

// originalEnv lists the original service's variables, in the order they are
// applied. An empty variable is treated as unset.
var originalEnv = []envVar{
	{name: "PORT", key: "port"},
	{name: "REDIS_URL", key: "redis.url"},
	{name: "MAX_REDIS_CONNECTIONS", key: "redis.pool_size"},
	{name: "MIN_REDIS_CONNECTIONS", key: "redis.min_idle"},
	{name: "AUTH0_API_DOMAIN", key: "auth.auth0_domain"},
	{name: "TEST_JWKS", key: "auth.test_jwks"},
	{name: "CORS_ORIGIN", key: "socketio.cors_origin"},
	{name: "SECRET_FOR_SUMMARY", key: "secrets.summary"},
	{name: "SECRET_FOR_FLUSHING", key: "secrets.flush"},
	{name: "EVENT_SECRET", key: "secrets.event"},
	{name: "CLOUDAMQP_URL", key: "bus.url"},
	{name: "RABBITMQ_USERNAME", key: "bus.username"},
	{name: "RABBITMQ_PASSWORD", key: "bus.password"},
	{name: "GRAPHQL_API_DOMAIN", key: "directory.graphql_domain"},
	// The original: anything but "false" means https/wss.
	{name: "GRAPHQL_API_SECURE_PROTOCOLS", key: "directory.graphql_secure", conv: func(v string) any { return v != "false" }},
	{name: "HASURA_ADMIN_SECRET", key: "directory.admin_secret"},
	// The original: only "true" turns test mode on.
	{name: "TEST_MODE", key: "directory.test_mode", conv: func(v string) any { return v == "true" }},
}

// envDyno is Heroku's dyno name: it names the instance when nothing else
// does, and makes the default log format json.
const envDyno = "DYNO"

// flagKeys maps the dedicated flags of AddFlags to their keys.
var flagKeys = map[string]string{
	"port":      "port",
	"log-level": "log.level",
}

const (
	flagConfig = "config"
	flagSet    = "set"
)

// layer is one source of flat key/value pairs.
type layer struct {
	values map[string]any
	source map[string]string // key -> "env PORT" etc.
}

func newLayer() *layer {
	return &layer{values: map[string]any{}, source: map[string]string{}}
}

func (l *layer) set(key string, val any, source string) {
	l.values[key] = val
	l.source[key] = source
}

// loader accumulates layers into one koanf instance and remembers where each
// key's value came from.
type loader struct {
	k      *koanf.Koanf
	origin map[string]string
}

// merge checks every key of l, drops null values (they keep the lower
// layers' values) and merges the rest.
func (ld *loader) merge(l *layer) error {
	keys := make([]string, 0, len(l.values))
	for key := range l.values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	var errs []error
	clean := make(map[string]any, len(l.values))
	for _, key := range keys {
		val := l.values[key]
		if err := checkKey(key, val, l.source[key]); err != nil {
			errs = append(errs, err)
			continue
		}
		if val == nil {
			continue
		}
		clean[key] = val
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := ld.k.Load(confmap.Provider(clean, "."), nil); err != nil {
		return fmt.Errorf("config: merge: %w", err)
	}
	for key := range clean {
		// A later layer replaces a whole subtree when it sets a map key over
		// it; keep origins simple: the last writer of a key is its origin.
		ld.origin[key] = l.source[key]
	}
	return nil
}

// Load builds the effective configuration from defaults, a YAML file, the
// environment and flags (see the package doc), then validates it. Every
// error names the key at fault and, when known, where its value came from.
func Load(opts LoadOptions) (*Config, error) {
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	env := parseEnviron(environ)
	ld := &loader{k: koanf.New("."), origin: map[string]string{}}

	// 1. Defaults.
	defaults := newLayer()
	for key, val := range Defaults() {
		defaults.set(key, val, "")
	}
	if err := ld.merge(defaults); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}

	// 2. The file.
	path, err := resolveFile(opts)
	if err != nil {
		return nil, err
	}
	if path != "" {
		l, err := fileLayer(path)
		if err != nil {
			return nil, err
		}
		if err := ld.merge(l); err != nil {
			return nil, err
		}
	}

	// 3. The environment: original names, then RT_ keys.
	orig := newLayer()
	for _, v := range originalEnv {
		val := env[v.name]
		if val == "" {
			continue
		}
		var out any = val
		if v.conv != nil {
			out = v.conv(val)
		}
		orig.set(v.key, out, "env "+v.name)
	}
	if dyno := env[envDyno]; dyno != "" && ld.k.String("instance") == "" {
		orig.set("instance", dyno, "env "+envDyno)
	}
	if err := ld.merge(orig); err != nil {
		return nil, err
	}
	rt, err := rtEnvLayer(environ)
	if err != nil {
		return nil, err
	}
	if err := ld.merge(rt); err != nil {
		return nil, err
	}

	// 4. Flags: --set, then the dedicated flags.
	if opts.Flags != nil {
		set, err := setFlagLayer(opts.Flags)
		if err != nil {
			return nil, err
		}
		if err := ld.merge(set); err != nil {
			return nil, err
		}
		fl, err := ld.flagLayer(opts.Flags)
		if err != nil {
			return nil, err
		}
		if err := ld.merge(fl); err != nil {
			return nil, err
		}
	}

	cfg, err := ld.decode()
	if err != nil {
		return nil, err
	}

	// Resolve the documented "empty means" rules.
	if cfg.Log.Format == "" {
		cfg.Log.Format = "text"
		if env[envDyno] != "" {
			cfg.Log.Format = "json"
		}
	}
	for name, p := range cfg.Plugins {
		if p.Mode == "" {
			p.Mode = DefaultPluginMode
			cfg.Plugins[name] = p
		}
	}

	if err := cfg.validate(ld.origin, opts.BuiltinPlugins); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseEnviron turns "NAME=value" strings into a map; like os.Getenv, the
// first of duplicate names wins.
func parseEnviron(environ []string) map[string]string {
	out := make(map[string]string, len(environ))
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		if _, dup := out[name]; !dup {
			out[name] = val
		}
	}
	return out
}

// resolveFile picks the YAML file: the explicit path, --config, or
// ./config.yaml when it exists.
func resolveFile(opts LoadOptions) (string, error) {
	path, explicit := opts.File, opts.File != ""
	if !explicit && opts.Flags != nil {
		if f := opts.Flags.Lookup(flagConfig); f != nil && f.Changed {
			path, explicit = f.Value.String(), true
			if path == "" {
				return "", nil // --config "": no file at all
			}
		}
	}
	if explicit {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("config: file %s: %w", path, err)
		}
		return path, nil
	}
	if _, err := os.Stat(DefaultFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("config: file %s: %w", DefaultFile, err)
	}
	return DefaultFile, nil
}

// fileLayer reads a YAML file into a flat layer.
func fileLayer(path string) (*layer, error) {
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	l := newLayer()
	for key, val := range fk.All() {
		l.set(key, val, path)
	}
	return l, nil
}

// rtEnvLayer reads the RT_ variables: RT_A__B_C -> a.b_c.
func rtEnvLayer(environ []string) (*layer, error) {
	l := newLayer()
	seen := map[string]string{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, EnvPrefix), "__", "."))
		if prev, dup := seen[key]; dup {
			if prev == name {
				continue // duplicate entry: the first wins, as with os.Getenv
			}
			return nil, &KeyError{Key: key, Source: "env " + name, Problem: "also set by env " + prev, Err: ErrInvalid}
		}
		seen[key] = name
		v, err := stringValue(key, val)
		if err != nil {
			return nil, &KeyError{Key: key, Source: "env " + name, Problem: err.Error(), Err: ErrInvalid}
		}
		l.set(key, v, "env "+name)
	}
	return l, nil
}

// setFlagLayer reads --set key=value flags.
func setFlagLayer(fset *pflag.FlagSet) (*layer, error) {
	l := newLayer()
	f := fset.Lookup(flagSet)
	if f == nil || !f.Changed {
		return l, nil
	}
	items, err := fset.GetStringArray(flagSet)
	if err != nil {
		return nil, fmt.Errorf("config: flag --%s: %w", flagSet, err)
	}
	for _, item := range items {
		key, val, ok := strings.Cut(item, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, fmt.Errorf("config: flag --%s %q: want key=value: %w", flagSet, item, ErrInvalid)
		}
		v, err := stringValue(key, val)
		if err != nil {
			return nil, &KeyError{Key: key, Source: "flag --set", Problem: err.Error(), Err: ErrInvalid}
		}
		l.set(key, v, "flag --set")
	}
	return l, nil
}

// flagLayer reads the dedicated flags (--port, --log-level) that the user
// set, through koanf's posflag provider.
func (ld *loader) flagLayer(fset *pflag.FlagSet) (*layer, error) {
	fk := koanf.New(".")
	p := posflag.ProviderWithFlag(fset, ".", ld.k, func(f *pflag.Flag) (string, any) {
		key, ok := flagKeys[f.Name]
		if !ok || !f.Changed {
			return "", nil
		}
		return key, posflag.FlagVal(fset, f)
	})
	if err := fk.Load(p, nil); err != nil {
		return nil, fmt.Errorf("config: flags: %w", err)
	}
	l := newLayer()
	for flagName, key := range flagKeys {
		if fk.Exists(key) {
			l.set(key, fk.Get(key), "flag --"+flagName)
		}
	}
	return l, nil
}

// stringValue converts a string from the environment or --set for key. Typed
// keys keep the string (the decoder converts it); under plugins.<name>.config
// integers, floats and true/false become numbers and booleans, and
// plugins.<name>.config itself takes a JSON object.
func stringValue(key, val string) (any, error) {
	if !isPluginConfigKey(key) {
		return val, nil
	}
	if strings.Count(key, ".") == 2 { // plugins.<name>.config
		m := map[string]any{}
		if strings.TrimSpace(val) == "" {
			return m, nil
		}
		if err := json.Unmarshal([]byte(val), &m); err != nil {
			return nil, fmt.Errorf("want a JSON object: %w", err)
		}
		return m, nil
	}
	return scalar(val), nil
}

// scalar turns "42", "1.5", "true" and "false" into numbers and booleans.
func scalar(s string) any {
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	if i, err := strconv.Atoi(s); err == nil {
		return i // int, as the YAML parser gives
	}
	if decimal.MatchString(s) {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	return s
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes duration strings ("25s", "5m") and rejects numbers,
// which would otherwise silently mean nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	if from.Kind() != reflect.String {
		return nil, fmt.Errorf("want a duration string such as \"25s\", got %T %v", data, data)
	}
	s := strings.TrimSpace(data.(string))
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("want a duration such as \"25s\", got %q", s)
	}
	return d, nil
}

// wholeNumberHook rejects fractions for integer keys, which the decoder
// would otherwise truncate (port: 3002.5).
func wholeNumberHook(from, to reflect.Type, data any) (any, error) {
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
	default:
		return data, nil
	}
	if to == durationType || (from.Kind() != reflect.Float32 && from.Kind() != reflect.Float64) {
		return data, nil
	}
	f := reflect.ValueOf(data).Float()
	if f != math.Trunc(f) || math.IsInf(f, 0) || f > math.MaxInt64 || f < math.MinInt64 {
		return nil, fmt.Errorf("want a whole number, got %v", f)
	}
	return int64(f), nil
}

var stringSliceType = reflect.TypeFor[[]string]()

// stringSliceHook splits comma-separated strings into lists, trimming spaces
// and dropping empty items ("" is the empty list).
func stringSliceHook(from, to reflect.Type, data any) (any, error) {
	if to != stringSliceType || from.Kind() != reflect.String {
		return data, nil
	}
	out := []string{}
	for item := range strings.SplitSeq(data.(string), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out, nil
}

// decimal matches the floats that scalar converts: no hex, no inf or NaN.
var decimal = regexp.MustCompile(`^-?[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?$`)

// mapIndex matches mapstructure's "plugins[chat]" field names.
var mapIndex = regexp.MustCompile(`\[([^\]]*)\]`)

// decode turns the merged map into a Config with a strict decoder.
func (ld *loader) decode() (*Config, error) {
	cfg := &Config{}
	dc := &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			wholeNumberHook,
			stringSliceHook,
			mapstructure.TextUnmarshallerHookFunc(),
		),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
	}
	err := ld.k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{DecoderConfig: dc})
	if err == nil {
		return cfg, nil
	}
	var errs []error
	for _, de := range decodeErrors(err) {
		key := mapIndex.ReplaceAllString(de.Name(), ".$1")
		problem := de.Unwrap().Error()
		var pe *mapstructure.ParseError
		if errors.As(de, &pe) && pe.Expected.IsValid() {
			problem = fmt.Sprintf("cannot use %q as %s", fmt.Sprint(pe.Value), pe.Expected.Type())
		}
		errs = append(errs, &KeyError{Key: key, Source: ld.origin[key], Problem: problem, Err: fmt.Errorf("%w: %w", ErrInvalid, de.Unwrap())})
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("config: decode: %w: %w", ErrInvalid, err)
	}
	return nil, errors.Join(errs...)
}

// decodeErrors collects the innermost mapstructure.DecodeErrors of err.
func decodeErrors(err error) []*mapstructure.DecodeError {
	var out []*mapstructure.DecodeError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if de, ok := e.(*mapstructure.DecodeError); ok {
			inner := len(out)
			walk(de.Unwrap())
			if len(out) == inner {
				out = append(out, de)
			}
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
