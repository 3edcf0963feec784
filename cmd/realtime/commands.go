package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/clowdr/realtime/host/app"
	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// command describes one subcommand for loadConfig.
type command struct {
	name     string // for pflag's messages
	synopsis string // first line of --help, after "Usage: "
	// builtinCheck makes Load refuse an enabled plugin that is neither
	// built in nor given a path, as serve's plugin host does at start.
	builtinCheck bool
}

// loadConfig parses the common flags (plus extra ones registered by the
// caller) and loads the layered config. With --help/-h it prints the usage
// once and returns an error that wraps pflag.ErrHelp: callers exit 0 on it.
func loadConfig(c command, args []string, stderr io.Writer, extra func(*pflag.FlagSet)) (*config.Config, *pflag.FlagSet, error) {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", c.synopsis)
		fs.PrintDefaults()
	}
	config.AddFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	file, _ := fs.GetString("config")
	opts := config.LoadOptions{File: file, Flags: fs}
	if c.builtinCheck {
		opts.BuiltinPlugins = sdk.Registered()
	}
	cfg, err := config.Load(opts)
	return cfg, fs, err
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.Log.Format
	if format == "" {
		format = "text"
		if os.Getenv("DYNO") != "" {
			format = "json"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stderr io.Writer) int {
	cfg, _, err := loadConfig(command{name: "serve", synopsis: "realtime [serve] [flags]"}, args, stderr, nil)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "realtime: %v\n", err)
		return 1
	}
	logger := newLogger(cfg, stderr)
	slog.SetDefault(logger)
	if _, err := raiseFileLimit(); err != nil {
		logger.Warn("could not raise the open file limit", "err", err)
	}
	fxApp := fx.New(app.Options(cfg, logger, nil),
		// fx's own events, errors included, go to debug: its errors are
		// dependency chains ("could not build arguments for ...
		// startHeartbeat ...") that bury the cause, so serve logs failures
		// itself below, cause first. This replaces host/app's fx logger.
		fx.WithLogger(func() fxevent.Logger {
			l := &fxevent.SlogLogger{Logger: logger}
			l.UseLogLevel(slog.LevelDebug)
			l.UseErrorLevel(slog.LevelDebug)
			return l
		}))
	if err := fxApp.Err(); err != nil {
		logFailure(logger, "realtime failed to build", err)
		return 1
	}
	// What fxApp.Run does, with the failures logged by logFailure.
	startCtx, cancel := context.WithTimeout(context.Background(), fxApp.StartTimeout())
	err = fxApp.Start(startCtx) // on error fx has already stopped what started
	cancel()
	if err != nil {
		logFailure(logger, "realtime failed to start", err)
		return 1
	}
	sig := <-fxApp.Wait() // SIGINT/SIGTERM or a Shutdowner
	logger.Info("realtime stopping", "signal", sig.Signal)
	stopCtx, cancel := context.WithTimeout(context.Background(), fxApp.StopTimeout())
	defer cancel()
	if err := fxApp.Stop(stopCtx); err != nil {
		logFailure(logger, "realtime did not stop cleanly", err)
		return 1
	}
	return sig.ExitCode
}

// logFailure logs err's root cause at error level (for a constructor's or a
// hook's failure, the error it returned, e.g. "plugin "x": not a built-in
// plugin ..."), then fx's whole dependency chain at debug when it says more.
func logFailure(logger *slog.Logger, msg string, err error) {
	cause := dig.RootCause(err)
	logger.Error(msg, "err", cause)
	if cause.Error() != err.Error() {
		logger.Debug(msg+" (the whole fx error)", "err", err)
	}
}

func token(args []string, stdout, stderr io.Writer) int {
	var user string
	var ttl time.Duration
	cfg, _, err := loadConfig(command{name: "token", synopsis: "realtime token --user ID [flags]"}, args, stderr, func(fs *pflag.FlagSet) {
		fs.StringVar(&user, "user", "", "user id to put in x-hasura-user-id (required)")
		fs.DurationVar(&ttl, "ttl", 12*time.Hour, "token lifetime")
	})
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "realtime token: %v\n", err)
		return 2
	}
	if user == "" {
		fmt.Fprintln(stderr, "realtime token: --user is required, e.g. realtime token --user alice")
		return 2
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := auth.New(cfg.Auth, logger, nil)
	if err != nil {
		fmt.Fprintf(stderr, "realtime token: %v\n", err)
		return 1
	}
	if !v.CanSign() {
		fmt.Fprintf(stderr, "realtime token: this config verifies %s tokens and has no private key to sign with; tokens come from your identity provider (dev mode: unset AUTH0_API_DOMAIN and TEST_JWKS)\n", v.Mode())
		return 1
	}
	tok, err := v.Sign(user, ttl, nil)
	if err != nil {
		fmt.Fprintf(stderr, "realtime token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

const configUsage = "usage: realtime config check [--config PATH] [--set key=value] (realtime config check --help lists every flag)\n"

func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, configUsage)
		return 0
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	// The plugin lookup makes check refuse what serve's plugin host would.
	cfg, _, err := loadConfig(command{name: "config check", synopsis: "realtime config check [flags]", builtinCheck: true}, args[1:], stderr, nil)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "config invalid: %v\n", err)
		return 1
	}
	out, err := cfg.YAML()
	if err != nil {
		fmt.Fprintf(stderr, "config: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	fmt.Fprintln(stderr, "config ok")
	return 0
}

func pluginsCmd(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	cfg, _, err := loadConfig(command{name: "plugins", synopsis: "realtime plugins [--json] [flags]"}, args, stderr, func(fs *pflag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "realtime plugins: %v\n", err)
		return 1
	}
	type row struct {
		Name    string         `json:"name"`
		Enabled bool           `json:"enabled"`
		Mode    string         `json:"mode"`
		Source  string         `json:"source"`
		Desc    sdk.Descriptor `json:"declares"`
	}
	names := map[string]bool{}
	for _, n := range sdk.Registered() {
		names[n] = true
	}
	for n := range cfg.Plugins {
		names[n] = true
	}
	var rows []row
	for n := range names {
		pc := cfg.Plugins[n]
		r := row{Name: n, Enabled: pc.Enabled, Mode: pc.Mode, Source: "built-in"}
		if r.Mode == "" {
			r.Mode = "subprocess"
		}
		if pc.Path != "" {
			r.Source = pc.Path
		} else if f, ok := sdk.Lookup(n); ok {
			r.Desc = f().Describe()
		} else {
			r.Source = "unknown (not built in and no path)"
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tENABLED\tMODE\tSOURCE\tEVENTS\tROUTES\tQUEUES")
	for _, r := range rows {
		var routes, queues []string
		for _, rt := range r.Desc.Routes {
			routes = append(routes, strings.TrimSpace(rt.Method+" "+rt.Path))
		}
		for _, q := range r.Desc.Queues {
			queues = append(queues, q.Name)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Enabled, r.Mode, r.Source,
			dash(strings.Join(r.Desc.Events, ",")), dash(strings.Join(routes, ",")), dash(strings.Join(queues, ",")))
	}
	_ = tw.Flush()
	return 0
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
