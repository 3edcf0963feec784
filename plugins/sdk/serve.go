package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// parentPollInterval is how often a plugin process checks that its host is alive.
const parentPollInterval = time.Second

// Serve serves p as a plugin process and returns when the host is done with
// it. It is the whole main() of an external plugin binary:
//
//	func main() { sdk.Serve(myplugin.New()) }
//
// Rules it enforces: logs are hclog JSON on stderr (the host re-logs them in
// its own log with plugin=<name>); nothing may be written to stdout (it is the
// handshake channel); SIGTERM does not kill the plugin (the host drains and
// stops it: the signal usually hits the whole process group); the process
// exits when its parent, the host, is gone.
//
// Run by hand (without the host's magic cookie) it prints a short message and
// exits with status 1.
func Serve(p Plugin) {
	name := "plugin"
	if err := safely(nil, "Describe", func() error { name = p.Describe().Name; return nil }); err != nil || name == "" {
		name = "plugin"
	}
	hl := hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Debug,
		JSONFormat: true,
		Output:     os.Stderr, // the real stderr, captured before plugin.Serve swaps it
	})
	logger := slog.New(NewHCLogHandler(hl))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	defer signal.Stop(sig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-sig:
				hl.Info("SIGTERM ignored: the host drains and stops its plugins")
			case <-ctx.Done():
				return
			}
		}
	}()
	go watchParent(ctx, hl)

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginKey: &GRPCPlugin{Impl: p, Logger: logger}},
		GRPCServer:      newGRPCServerWithLimits,
		Logger:          hl,
	})
}

// watchParent exits the process when the parent process changes (the host
// died without stopping us: SIGKILL, OOM). Pdeathsig is not used: it fires on
// the exit of the parent's thread, not process (golang/go#27505).
func watchParent(ctx context.Context, hl hclog.Logger) {
	ppid := os.Getppid()
	if ppid <= 1 {
		return
	}
	t := time.NewTicker(parentPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				hl.Error("host process is gone; exiting", "host_pid", ppid)
				os.Exit(3)
			}
		}
	}
}

// ServeBuiltinIfRequested serves a registered plugin and exits when this
// process was started by a host to serve one (env RT_PLUGIN_SERVE=<name> and
// the handshake's magic cookie); otherwise it returns at once. Call it first
// thing in main(), and in TestMain of test packages that start subprocess
// plugins (the test binary is re-executed as the plugin):
//
//	func TestMain(m *testing.M) { sdk.ServeBuiltinIfRequested(); os.Exit(m.Run()) }
func ServeBuiltinIfRequested() {
	name := os.Getenv(ServeEnv)
	if name == "" || os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		return
	}
	factory, ok := Lookup(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "realtime: %s=%q: no such built-in plugin (registered: %v)\n", ServeEnv, name, Registered())
		os.Exit(1)
	}
	Serve(factory())
	os.Exit(0)
}
