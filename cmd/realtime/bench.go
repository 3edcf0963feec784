package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/clowdr/realtime/bench"
	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
)

const benchUsage = `Usage: realtime bench SCENARIO [flags]

Scenarios:
  connect    ramp --connections authenticated sockets (each enters one of --pages
             pages); connects/s, connect latency, server RSS per socket
  presence   --connections users churn enterPage/leavePage at --rate events/s
             over --pages pages watched by --observers sockets each;
             enterPage -> entered latency
  chat       --subscribers sockets in one chat; --senders sockets send in turn
             at --rate msgs/s in total, doubling every --duration up to --max-rate until p99 > --target-p99;
             deliveries/s, latency, drops; then one socket's acked send rate
  coldchat   --subscribers sockets (2000) chat.subscribe a fresh chat at once,
             then one message is sent: once after every chat.subscribe.ack
             (after_acks), once right after the subscribes were written
             (after_emits); subscribe latency, send -> receive per socket,
             how many within --cold-target (0.5s), how many missed it
             (nothing --duration, 5s, after the send)
  plugin     --connections sockets send "echo" with an ack (needs the echo
             plugin: --set plugins.echo.enabled=true); round trip and events/s
  all        every scenario in turn

Server: --url (a running server; tokens from --token-jwks or --dev-key-file), or
--spawn (start this binary's serve with a fresh TEST_JWKS, Redis --redis,
optional --amqp, raised rate limits and the echo plugin; stopped at the end).

Flags:
`

type benchFlags struct {
	url         string
	allowRemote bool
	tokenJWKS   string
	devKeyFile  string
	spawn       bool
	redis       string
	amqp        string
	serverArgs  []string
	serverLog   bool
	serverPID   int
	asJSON      bool
	cfg         bench.Config
}

// perScenarioInt is an int flag whose default depends on the scenario (its
// usage says which): unset it holds -1, which tells benchCmd to pick the
// scenario's default, and pflag shows no "(default -1)" since String is "".
// A negative value given on the command line means 0, as before.
type perScenarioInt struct{ p *int }

func (v perScenarioInt) String() string {
	if v.p == nil || *v.p < 0 {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v perScenarioInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*v.p = max(n, 0)
	return nil
}

func (v perScenarioInt) Type() string { return "int" }

// newBenchFlags defines bench's flags on a new flag set that writes to stderr.
func newBenchFlags(stderr io.Writer) (*pflag.FlagSet, *benchFlags) {
	f := &benchFlags{}
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.url, "url", "http://127.0.0.1:3002", "server base URL")
	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow a non-loopback --url (and --redis/--amqp with --spawn)")
	fs.StringVar(&f.tokenJWKS, "token-jwks", "", "JSON key set with private parts to sign tokens (the server's TEST_JWKS)")
	fs.StringVar(&f.devKeyFile, "dev-key-file", "", "sign with the dev key set at this path (default: the dev-mode file when no --token-jwks)")
	fs.BoolVar(&f.spawn, "spawn", false, "start the server (this binary's serve) and stop it at the end")
	fs.StringVar(&f.redis, "redis", bench.DefaultSpawnRedis, "--spawn: REDIS_URL (its DB is flushed; DB 0 is refused); \"embedded\" for miniredis")
	fs.StringVar(&f.amqp, "amqp", "", "--spawn: CLOUDAMQP_URL (default: in-memory bus)")
	fs.StringArrayVar(&f.serverArgs, "server-arg", nil, "--spawn: extra serve argument (repeatable), e.g. --server-arg=--set --server-arg=plugins.chat.mode=inprocess")
	fs.BoolVar(&f.serverLog, "server-log", false, "--spawn: copy the server's log to stderr")
	fs.IntVar(&f.serverPID, "server-pid", 0, "read the server's RSS from /proc/PID/status (default: /metrics)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&f.cfg.Duration, "duration", 0, "connect: hold time before measuring memory (5s); presence, plugin: run time (10s); chat: each step (5s); coldchat: wait for the message before it counts as missed (5s)")
	fs.IntVar(&f.cfg.Connections, "connections", 0, "connect: sockets (1000); presence: churning users (max(50, rate/4)); plugin: sending sockets (8)")
	fs.IntVar(&f.cfg.Concurrency, "concurrency", 0, "dials in flight at once (64)")
	fs.IntVar(&f.cfg.Users, "users", 0, "connect: distinct users (tokens) (min(connections, 2000))")
	fs.Float64Var(&f.cfg.Rate, "rate", 0, "presence: events/s (1000); chat: first step msgs/s (50); plugin: events/s (0 = closed loop); connect: connects/s (0 = unpaced)")
	fs.Float64Var(&f.cfg.MaxRate, "max-rate", 0, "chat: last step msgs/s (6400)")
	fs.IntVar(&f.cfg.Subscribers, "subscribers", 0, "chat: subscribers (1000); coldchat: subscribers (2000)")
	fs.IntVar(&f.cfg.Senders, "senders", 0, "chat: sockets (of one user) that share the ramp's sends (4)")
	f.cfg.Pages = -1
	fs.Var(perScenarioInt{&f.cfg.Pages}, "pages", "connect: pages entered (100; 0 = none); presence: observed pages (50)")
	fs.IntVar(&f.cfg.Observers, "observers", 0, "presence: observers per page (2)")
	fs.DurationVar(&f.cfg.TargetP99, "target-p99", 0, "chat: p99 that ends the ramp (50ms)")
	fs.DurationVar(&f.cfg.ColdTarget, "cold-target", 0, "coldchat: every subscriber should receive the message within this after the send (500ms)")
	fs.StringVar(&f.cfg.Conference, "conference", "demo", "conference slug of page paths (one of the server's directory.conferences)")
	return fs, f
}

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs, f := newBenchFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	scenario := fs.Arg(0)
	scenarios := []string{scenario}
	if scenario == "all" {
		scenarios = bench.Scenarios
	} else if !validScenario(scenario) {
		fmt.Fprintf(stderr, "realtime bench: unknown scenario %q\n", scenario)
		fs.Usage()
		return 2
	}
	if lim, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "realtime bench: warning: %v\n", err)
	} else if lim > 0 && lim < uint64(max(f.cfg.Connections, f.cfg.Subscribers))+100 {
		fmt.Fprintf(stderr, "realtime bench: warning: open file limit %d is low for this run\n", lim)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute) // whole-run bound
	defer cancel()

	loadBefore := loadAvg()
	fmt.Fprintf(stderr, "bench: load average %s\n", loadBefore)
	cfg := f.cfg
	cfg.URL, cfg.AllowRemote, cfg.ServerPID, cfg.Progress = f.url, f.allowRemote, f.serverPID, stderr
	if f.spawn {
		o := bench.SpawnOptions{AMQP: f.amqp, AllowRemote: f.allowRemote, Args: f.serverArgs}
		if f.redis != "embedded" && f.redis != "" {
			o.Redis = f.redis
		}
		if f.serverLog {
			o.Output = stderr
		}
		fmt.Fprintf(stderr, "bench: starting the server (redis %s, amqp %s)\n", orNone(o.Redis, "embedded"), orNone(o.AMQP, "in-memory"))
		srv, err := bench.Spawn(ctx, o)
		if err != nil {
			fmt.Fprintf(stderr, "realtime bench: %v\n", err)
			return 1
		}
		defer srv.Stop()
		cfg.URL, cfg.Token, cfg.ServerPID = srv.URL, srv.Token, srv.PID
		fmt.Fprintf(stderr, "bench: server pid %d at %s\n", srv.PID, srv.URL)
	} else {
		tf, err := benchSigner(f.tokenJWKS, f.devKeyFile)
		if err != nil {
			fmt.Fprintf(stderr, "realtime bench: %v\n", err)
			return 1
		}
		cfg.Token = tf
	}

	var results []*bench.Result
	failed := false
	for _, sc := range scenarios {
		c := cfg
		if sc == bench.ScenarioConnect && c.Pages < 0 {
			c.Pages = 100
		}
		if c.Pages < 0 {
			c.Pages = 0
		}
		fmt.Fprintf(stderr, "bench: running %s\n", sc)
		r, err := bench.Run(ctx, sc, c)
		if err != nil {
			fmt.Fprintf(stderr, "realtime bench %s: %v\n", sc, err)
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		results = append(results, r)
	}
	m := machineInfo()
	m.LoadBefore, m.LoadAfter = loadBefore, loadAvg()
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Machine Machine         `json:"machine"`
			Results []*bench.Result `json:"results"`
		}{m, results})
	} else {
		printResults(stdout, m, results)
	}
	if failed {
		return 1
	}
	return 0
}

func validScenario(s string) bool {
	for _, x := range bench.Scenarios {
		if x == s {
			return true
		}
	}
	return false
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// benchSigner returns a token signer from a JWKS file, or the dev key set.
func benchSigner(jwksPath, devKeyFile string) (bench.TokenFunc, error) {
	var jwks []byte
	switch {
	case jwksPath != "":
		b, err := os.ReadFile(jwksPath)
		if err != nil {
			return nil, fmt.Errorf("--token-jwks: %w", err)
		}
		jwks = b
	default:
		path := devKeyFile
		if path == "" {
			p, err := auth.DefaultDevKeyFile()
			if err != nil {
				return nil, err
			}
			path = p
		}
		b, err := auth.DevKeySet(path)
		if err != nil {
			return nil, fmt.Errorf("dev key set %s: %w", path, err)
		}
		jwks = b
	}
	cfg, err := config.Load(config.LoadOptions{File: "", Environ: []string{"TEST_JWKS=" + string(jwks)}})
	if err != nil {
		return nil, fmt.Errorf("token key set: %w", err)
	}
	v, err := auth.New(cfg.Auth, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		return nil, fmt.Errorf("token key set: %w", err)
	}
	if !v.CanSign() {
		return nil, errors.New("token key set has no private key to sign with")
	}
	return func(user string) (string, error) { return v.Sign(user, 2*time.Hour, nil) }, nil
}

// Machine describes where the bench ran.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	MemTotal   int64  `json:"mem_total_bytes"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the end:
	// other work on the box skews every number.
	LoadBefore string `json:"loadavg_before,omitempty"`
	LoadAfter  string `json:"loadavg_after,omitempty"`
}

// loadAvg returns the first three fields of /proc/loadavg ("" elsewhere).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func machineInfo() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemTotal = kb * 1024
				}
			}
		}
	}
	return m
}

func printResults(w io.Writer, m Machine, results []*bench.Result) {
	fmt.Fprintf(w, "machine: %d CPUs, %.1f GiB, %s %s/%s; load average before %s, after %s\n\n",
		m.CPUs, float64(m.MemTotal)/(1<<30), m.GoVersion, m.OS, m.Arch, m.LoadBefore, m.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tCONNS\tCONNECTS/S\tCONNECT p50/p95/p99\tLATENCY p50/p95/p99\tEVENTS/S\tDELIVERIES/S\tDROPS\tRSS/CONN")
	for _, r := range results {
		rss := "-"
		if r.Memory != nil {
			rss = fmt.Sprintf("%.1f KiB", r.Memory.RSSPerConn/1024)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Scenario, r.Connections,
			num(r.ConnectsPerSec), lat(r.Connect), lat(r.Latency), num(r.EventsPerSec), num(r.DeliveriesPerSec), r.Drops, rss)
	}
	_ = tw.Flush()
	for _, r := range results {
		if r.Memory != nil {
			mm := r.Memory
			fmt.Fprintf(w, "\nconnect memory (%s): RSS %.1f -> %.1f MiB (%.1f KiB/conn); heap in use %.1f -> %.1f MiB (%.1f KiB/conn); %.2f goroutines/conn; plugin processes RSS %.1f MiB; load generator heap %.1f KiB/conn\n",
				mm.Source, mib(mm.RSSBefore), mib(mm.RSSAfter), mm.RSSPerConn/1024, mib(mm.HeapBefore), mib(mm.HeapAfter),
				float64(mm.HeapAfter-mm.HeapBefore)/float64(max(r.Connections, 1))/1024, mm.GoroutinesPer, mib(mm.PluginRSSAfter), mm.ClientHeapPerConn/1024)
		}
		if r.LeaveLatency != nil {
			fmt.Fprintf(w, "\npresence leavePage -> left: %s\n", lat(r.LeaveLatency))
		}
		if len(r.Steps) > 0 {
			fmt.Fprintln(w, "\nchat steps:")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  MSGS/S\tSENT\tACKED\tNACKED\tRECEIVED\tDELIVERIES/S\tDROPS\tp50/p95/p99\tACK p50/p99\tMET")
			for _, s := range r.Steps {
				fmt.Fprintf(tw, "  %.0f\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s/%s\t%v\n", s.OfferedMsgsPerSec, s.Sent, s.Acked, s.Nacked, s.Received,
					num(s.DeliveriesPerSec), s.Drops, lat(&s.Latency), s.AckLatency.P50, s.AckLatency.P99, s.MetTarget)
			}
			_ = tw.Flush()
		}
		if len(r.Cold) > 0 {
			fmt.Fprintln(w, "\ncold chat rounds (every socket subscribes to a fresh chat at once, then one message):")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  ROUND\tSUBS\tEMIT SPAN\tSUBSCRIBED\tSUBSCRIBE p50/p95/p99/max\tSUBSCRIBE SPAN\tSEND ACK\tRECEIVE p50/p95/p99/max\tWITHIN TARGET\tMISSED\tMET")
			for _, c := range r.Cold {
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%d (%s)\t%d\t%v\n", c.Mode, c.Subscribers, c.EmitSpan, c.Subscribed,
					latMax(&c.Subscribe), c.SubscribeSpan, c.SendAck, latMax(&c.Latency), c.WithinTarget, c.Target, c.Missed, c.MetTarget)
			}
			_ = tw.Flush()
		}
		if r.Ack != nil {
			fmt.Fprintf(w, "chat acks (one socket, %d in flight): %s acks/s, latency %s, nacked %d\n", r.Ack.Window, num(r.Ack.AcksPerSec), lat(&r.Ack.Latency), r.Ack.Nacked)
		}
		if r.ServerPlugin != nil {
			fmt.Fprintf(w, "\nplugin call inside the server (realtime_plugin_event_seconds, bucket-interpolated): p50/p95/p99 %s/%s/%s over %d events\n",
				r.ServerPlugin.P50, r.ServerPlugin.P95, r.ServerPlugin.P99, r.ServerPlugin.Count)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note (%s): %s\n", r.Scenario, n)
		}
	}
}

func lat(l *bench.Latency) string {
	if l == nil || l.Count == 0 {
		return "-"
	}
	return l.P50.String() + "/" + l.P95.String() + "/" + l.P99.String()
}

// latMax is lat with the maximum.
func latMax(l *bench.Latency) string {
	if l == nil || l.Count == 0 {
		return "-"
	}
	return lat(l) + "/" + l.Max.String()
}

func num(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
