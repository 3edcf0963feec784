package config

import "github.com/spf13/pflag"

// AddFlags defines the configuration flags on fs: --config PATH, --port,
// --log-level and --set key=value (repeatable, any key, applied before
// --port and --log-level). Pass the parsed set to Load in LoadOptions.Flags.
// Flags that fs already has are left alone.
func AddFlags(fs *pflag.FlagSet) {
	if fs.Lookup(flagConfig) == nil {
		fs.String(flagConfig, "", "YAML configuration file (default ./"+DefaultFile+" when it exists; \"\" for none)")
	}
	if fs.Lookup("port") == nil {
		fs.Int("port", DefaultPort, "HTTP and websocket listen port (key port, env PORT)")
	}
	if fs.Lookup("log-level") == nil {
		fs.String("log-level", DefaultLogLevel, "debug, info, warn or error (key log.level)")
	}
	if fs.Lookup(flagSet) == nil {
		fs.StringArray(flagSet, nil, "set any key, e.g. --set redis.pool_size=20 (repeatable)")
	}
}
