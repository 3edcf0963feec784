// Package config loads the host's configuration.
//
// Load reads four layers, each overriding the one before:
//
//  1. built-in defaults (Defaults, the one place where defaults live);
//  2. a YAML file: LoadOptions.File, else --config PATH, else ./config.yaml
//     when it exists. The config.yaml at the repository root lists and
//     explains every key;
//  3. the environment: first the original Node service's variable names
//     (PORT, REDIS_URL, AUTH0_API_DOMAIN, CORS_ORIGIN, ...; empty ones are
//     ignored), then RT_-prefixed keys, which win: the key in upper case with
//     "__" between levels, so RT_REDIS__POOL_SIZE sets redis.pool_size and
//     RT_PLUGINS__CHAT__CONFIG__MAX_MESSAGE_BYTES sets
//     plugins.chat.config.max_message_bytes;
//  4. flags that the user set: --set key=value (repeatable, any key), then
//     --port and --log-level.
//
// Keys are lowercase and dotted. Loading is strict: a key that the Config
// struct does not have fails with an error naming the key and where it came
// from, in every layer; only plugins.<name>.config.* is free-form, for the
// plugin to read. A value that does not fit its key (a port "abc", a duration
// "soon" or 25 instead of "25s") fails the same way, and Validate checks
// ranges and relations (ping_timeout < ping_interval, URL schemes, enums).
//
// Durations are strings such as "25s" or "5m". Lists may be given as YAML
// lists or as comma-separated strings (handy in the environment). A YAML key
// with no value (null) keeps the value of the layers below.
//
// Redacted and YAML show the effective configuration with secrets hidden, for
// `realtime config check`.
package config
