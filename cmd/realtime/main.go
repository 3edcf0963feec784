// Command realtime is the realtime service: a Socket.IO host whose features
// are plugins.
//
//	realtime [serve]            run the service (default)
//	realtime token --user ID    print a token the running service accepts (dev mode / TEST_JWKS)
//	realtime config check       print the effective config (secrets redacted); exit 1 if invalid
//	realtime plugins            list the known plugins, which are enabled, and what each declares
//	realtime bench SCENARIO     measure a loopback server (connect, presence, chat, coldchat, plugin, all)
//	realtime help [COMMAND]     list the commands, or one command's flags
//
// When the host re-executes itself to serve a built-in plugin, main hands over
// to the plugin before anything else runs.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/clowdr/realtime/plugins/sdk"

	_ "github.com/clowdr/realtime/plugins/builtin" // registers the built-in plugins
)

func main() {
	sdk.ServeBuiltinIfRequested()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "--help":
			// Checked before the flags that mean serve: top-level help
			// lists the commands; "realtime serve --help" lists serve's flags.
			fmt.Fprint(stdout, usage)
			return 0
		case a != "" && a[0] != '-':
			cmd, args = a, args[1:]
		}
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "token":
		return token(args, stdout, stderr)
	case "config":
		return configCmd(args, stdout, stderr)
	case "plugins":
		return pluginsCmd(args, stdout, stderr)
	case "bench":
		return benchCmd(args, stdout, stderr)
	case "help":
		if len(args) > 0 && args[0] != "help" { // realtime help COMMAND
			return run([]string{args[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "realtime: unknown command %q\n\n%s", cmd, usage)
	return 2
}

const usage = `Usage:
  realtime [serve] [flags]         run the service (default command)
  realtime token --user ID         print a token the service accepts (dev mode or TEST_JWKS)
  realtime config check [flags]    print the effective config, secrets redacted; exit 1 if invalid
  realtime plugins [flags]         list known plugins, which are enabled, and what each declares
  realtime bench SCENARIO [flags]  load a loopback server: connect, presence, chat, coldchat, plugin, all
  realtime help [COMMAND]          this help, or a command's flags (same as realtime COMMAND --help)

Common flags (realtime serve --help lists them all):
  --config PATH      config file (default ./config.yaml when present)
  --port N           listen port (env PORT, default 3002)
  --set key=value    set any config key (repeatable)
  --log-level LEVEL  debug, info, warn, error
`
