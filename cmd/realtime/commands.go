package main

import (
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
	"go.uber.org/fx"

	"github.com/clowdr/realtime/host/app"
	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// loadConfig parses the common flags (plus extra ones registered by the
// caller) and loads the layered config.
func loadConfig(name string, args []string, stderr io.Writer, extra func(*pflag.FlagSet)) (*config.Config, *pflag.FlagSet, error) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	config.AddFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	file, _ := fs.GetString("config")
	cfg, err := config.Load(config.LoadOptions{File: file, Flags: fs})
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
	cfg, _, err := loadConfig("serve", args, stderr, nil)
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
	fxApp := fx.New(app.Options(cfg, logger, nil))
	if err := fxApp.Err(); err != nil {
		logger.Error("realtime failed to build", "err", err)
		return 1
	}
	fxApp.Run() // returns after SIGINT/SIGTERM and a drained stop
	return 0
}

func token(args []string, stdout, stderr io.Writer) int {
	var user string
	var ttl time.Duration
	cfg, _, err := loadConfig("token", args, stderr, func(fs *pflag.FlagSet) {
		fs.StringVar(&user, "user", "", "user id to put in x-hasura-user-id (required)")
		fs.DurationVar(&ttl, "ttl", 12*time.Hour, "token lifetime")
	})
	if err != nil {
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

func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: realtime config check [--config PATH] [--set key=value]")
		return 2
	}
	cfg, _, err := loadConfig("config check", args[1:], stderr, nil)
	if err != nil {
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
	cfg, _, err := loadConfig("plugins", args, stderr, func(fs *pflag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
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
