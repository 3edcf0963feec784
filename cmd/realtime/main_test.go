package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
)

func TestMain(m *testing.M) {
	// serve's plugin host re-executes os.Executable() (this test binary) to
	// run a built-in plugin; hand over to it as main does.
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

// runCmd runs the command line args in-process and returns the exit code and
// both outputs.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 {
			t.Errorf("%v: exit %d, want 0; stderr:\n%s", args, code, stderr)
		}
		for _, want := range []string{"realtime [serve]", "realtime token", "realtime config check", "realtime plugins", "realtime bench SCENARIO", "realtime help"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%v: help does not list %q:\n%s", args, want, stdout)
			}
		}
		// serve's flag listing is what -h printed before.
		if strings.Contains(stdout+stderr, "stringArray") {
			t.Errorf("%v: printed serve's flags instead of the commands:\n%s%s", args, stdout, stderr)
		}
	}
}

// TestCommandHelp checks that --help/-h of every command exits 0 and prints
// its usage once, without an error.
func TestCommandHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the usage
	}{
		{[]string{"serve", "--help"}, "--port int"},
		{[]string{"serve", "-h"}, "--port int"},
		{[]string{"token", "--help"}, "--user string"},
		{[]string{"token", "-h"}, "--user string"},
		{[]string{"config", "check", "--help"}, "--set stringArray"},
		{[]string{"config", "--help"}, "realtime config check"},
		{[]string{"plugins", "--help"}, "--json"},
		{[]string{"plugins", "-h"}, "--json"},
		{[]string{"bench", "--help"}, "--pages int"},
		{[]string{"bench", "connect", "--help"}, "--pages int"},
		{[]string{"bench", "all", "-h"}, "--pages int"},
		{[]string{"help", "token"}, "--user string"},
		{[]string{"help", "bench"}, "--pages int"},
	}
	for _, tc := range tests {
		code, stdout, stderr := runCmd(t, tc.args...)
		all := stdout + stderr
		if code != 0 {
			t.Errorf("%v: exit %d, want 0:\n%s", tc.args, code, all)
		}
		if n := strings.Count(strings.ToLower(all), "usage:"); n != 1 {
			t.Errorf("%v: usage printed %d times:\n%s", tc.args, n, all)
		}
		if !strings.Contains(all, tc.want) {
			t.Errorf("%v: output lacks %q:\n%s", tc.args, tc.want, all)
		}
		for _, bad := range []string{"help requested", "invalid", "realtime token:", "realtime plugins:"} {
			if strings.Contains(all, bad) {
				t.Errorf("%v: output contains %q:\n%s", tc.args, bad, all)
			}
		}
	}
}

// TestConfigCheckAgreesWithServe checks that config check refuses the
// plugin settings that serve's plugin host refuses at start.
func TestConfigCheckAgreesWithServe(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		code int
		want string // in stderr
	}{
		{"defaults", nil, 0, "config ok"},
		{"unknown plugin enabled", []string{"plugins.nope.enabled=true"}, 1, "config: plugins.nope: is enabled but is not a built-in plugin"},
		{"path and inprocess", []string{"plugins.ext.path=/opt/ext", "plugins.ext.mode=inprocess"}, 1, `config: plugins.ext.mode: must be "subprocess" for a plugin with a path`},
		{"built-in inprocess", []string{"plugins.chat.mode=inprocess"}, 0, "config ok"},
		{"unknown plugin with a path", []string{"plugins.ext.enabled=true", "plugins.ext.path=/opt/ext"}, 0, "config ok"},
		{"unknown plugin disabled", []string{"plugins.nope.enabled=false"}, 0, "config ok"},
	}
	for _, tc := range tests {
		args := []string{"config", "check", "--config", ""}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		code, _, stderr := runCmd(t, args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q in:\n%s", tc.name, code, tc.code, tc.want, stderr)
		}
	}
	// plugins lists an unknown plugin rather than failing on it.
	code, stdout, stderr := runCmd(t, "plugins", "--config", "", "--set", "plugins.nope.enabled=true")
	if code != 0 || !strings.Contains(stdout, "unknown (not built in and no path)") {
		t.Errorf("plugins with an unknown plugin: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestBenchPagesFlag(t *testing.T) {
	fs, f := newBenchFlags(&bytes.Buffer{})
	flag := fs.Lookup("pages")
	if flag.DefValue != "" {
		t.Errorf("--pages DefValue = %q; help would print (default %s)", flag.DefValue, flag.DefValue)
	}
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	line := ""
	for l := range strings.Lines(help.String()) {
		if strings.Contains(l, "--pages") {
			line = l
		}
	}
	if !strings.Contains(line, "connect: pages entered (100") || !strings.Contains(line, "presence: observed pages (50)") || strings.Contains(line, "default") {
		t.Errorf("--pages help = %q", line)
	}
	if err := fs.Parse(nil); err != nil || f.cfg.Pages != -1 {
		t.Errorf("unset --pages = %d, %v; want -1 (each scenario's default)", f.cfg.Pages, err)
	}
	for arg, want := range map[string]int{"--pages=0": 0, "--pages=7": 7, "--pages=-3": 0} {
		fs, f := newBenchFlags(&bytes.Buffer{})
		if err := fs.Parse([]string{arg}); err != nil || f.cfg.Pages != want {
			t.Errorf("%s: Pages = %d, %v; want %d", arg, f.cfg.Pages, err, want)
		}
	}
	if fs, _ := newBenchFlags(&bytes.Buffer{}); fs.Parse([]string{"--pages=many"}) == nil {
		t.Error("--pages=many parsed")
	}
}

// serveArgs are serve's arguments for a self-contained test server: no
// config file, embedded Redis, in-memory bus, dev-mode auth in a temporary
// key file, every built-in plugin off, plus extra --set values.
func serveArgs(t *testing.T, port int, set ...string) []string {
	t.Helper()
	for _, name := range []string{"REDIS_URL", "CLOUDAMQP_URL", "RABBITMQ_USERNAME", "RABBITMQ_PASSWORD",
		"AUTH0_API_DOMAIN", "TEST_JWKS", "GRAPHQL_API_DOMAIN", "DYNO"} {
		t.Setenv(name, "")
	}
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) }) // serve sets it
	args := []string{"--config", "", "--port", strconv.Itoa(port),
		"--set", "auth.dev_key_file=" + filepath.Join(t.TempDir(), "dev-keys.json"), "--set", "log.format=text"}
	for _, name := range sdk.Registered() {
		args = append(args, "--set", "plugins."+name+".enabled=false")
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// errorLines returns the level=ERROR lines of a text log.
func errorLines(log string) []string {
	var out []string
	for l := range strings.Lines(log) {
		if strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// TestServeFailureCauseFirst checks that a plugin that fails to build or to
// start is reported by its own error, not by fx's dependency chain, which
// comes only at debug level and after it.
func TestServeFailureCauseFirst(t *testing.T) {
	tests := []struct {
		name  string
		set   []string
		cause string
	}{
		{"build", []string{"plugins.nope.enabled=true"}, `plugin \"nope\": not a built-in plugin`},
		{"start", []string{"plugins.nope.enabled=true", "plugins.nope.path=/nonexistent/plugin"}, `plugin \"nope\": launch plugin /nonexistent/plugin`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := serve(serveArgs(t, freePort(t), tc.set...), &stderr); code != 1 {
				t.Fatalf("serve exit %d, want 1:\n%s", code, stderr.String())
			}
			errs := errorLines(stderr.String())
			if len(errs) != 1 || !strings.Contains(errs[0], tc.cause) {
				t.Fatalf("want one error line with %s; got %d:\n%s", tc.cause, len(errs), stderr.String())
			}
			for _, chain := range []string{"could not build arguments", "startHeartbeat", "OnStart hook failed", "github.com/clowdr"} {
				if strings.Contains(stderr.String(), chain) {
					t.Errorf("log at info level shows fx's %q:\n%s", chain, stderr.String())
				}
			}

			// At debug the whole chain follows the cause.
			stderr.Reset()
			if code := serve(append(serveArgs(t, freePort(t), tc.set...), "--log-level", "debug"), &stderr); code != 1 {
				t.Fatalf("serve --log-level debug exit %d", code)
			}
			log := stderr.String()
			causeAt := strings.Index(log, "level=ERROR")
			if causeAt < 0 || !strings.Contains(errorLines(log)[0], tc.cause) {
				t.Fatalf("debug log: no error line with %s:\n%s", tc.cause, log)
			}
			if tc.name == "build" {
				chainAt := strings.Index(log, "the whole fx error")
				if chainAt < causeAt || !strings.Contains(log[chainAt:], "could not build arguments") {
					t.Errorf("debug log: fx's chain missing or before the cause (%d < %d):\n%s", chainAt, causeAt, log)
				}
			}
		})
	}
}

// TestServeStopsOnSIGTERM checks the start/wait/stop sequence that replaced
// fx.App.Run: serve answers /readyz, stops on SIGTERM and exits 0.
func TestServeStopsOnSIGTERM(t *testing.T) {
	// Catch SIGTERM here too: one sent before serve listens for it must not
	// end the test binary. The loop below resends until serve returns.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)

	port := freePort(t)
	var stderr testenv.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- serve(serveArgs(t, port), &stderr) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before it was ready:\n%s", code, stderr.String())
		case <-ctx.Done():
			t.Fatalf("serve never ready:\n%s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	for {
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("serve exit %d after SIGTERM, want 0:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "realtime stopping") || len(errorLines(stderr.String())) > 0 {
				t.Errorf("log after SIGTERM:\n%s", stderr.String())
			}
			return
		case <-ctx.Done():
			t.Fatalf("serve did not stop on SIGTERM:\n%s", stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestPluginsListing runs `realtime plugins` in-process, as JSON and as a
// table, and checks that --set enables echo, that echo's declared events and
// route are listed, and that disabled plugins (echo by default, analytics
// when --set off) are shown disabled.
func TestPluginsListing(t *testing.T) {
	type row struct {
		Name     string `json:"name"`
		Enabled  bool   `json:"enabled"`
		Source   string `json:"source"`
		Declares struct {
			Events []string `json:"events"`
			Routes []struct {
				Method string `json:"method"`
				Path   string `json:"path"`
			} `json:"routes"`
		} `json:"declares"`
	}
	listJSON := func(sets ...string) map[string]row {
		t.Helper()
		args := []string{"plugins", "--json"}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d; stderr:\n%s", args, code, stderr)
		}
		var rows []row
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
			t.Fatalf("%v: output is not a JSON list of plugins: %v\n%s", args, err, stdout)
		}
		byName := map[string]row{}
		for _, r := range rows {
			byName[r.Name] = r
		}
		return byName
	}

	rows := listJSON("plugins.echo.enabled=true", "plugins.analytics.enabled=false")
	echo, ok := rows["echo"]
	if !ok {
		t.Fatalf("echo is not listed: %+v", rows)
	}
	if !echo.Enabled || echo.Source != "built-in" {
		t.Errorf("echo: enabled %v, source %q; want enabled, built-in", echo.Enabled, echo.Source)
	}
	if got := strings.Join(echo.Declares.Events, ","); got != "echo,echo.room" {
		t.Errorf("echo declares events %q, want echo,echo.room", got)
	}
	if r := echo.Declares.Routes; len(r) != 1 || r[0].Method != "GET" || r[0].Path != "/echo/ping" {
		t.Errorf("echo declares routes %+v, want GET /echo/ping", r)
	}
	if a, ok := rows["analytics"]; !ok || a.Enabled {
		t.Errorf("analytics set off: listed %v, enabled %v; want listed, disabled", ok, a.Enabled)
	}
	if e := listJSON()["echo"]; e.Name != "echo" || e.Enabled {
		t.Errorf("echo by default: %+v; want listed, disabled", e)
	}

	code, stdout, stderr := runCmd(t, "plugins", "--set", "plugins.echo.enabled=true", "--set", "plugins.analytics.enabled=false")
	if code != 0 {
		t.Fatalf("plugins (table): exit %d; stderr:\n%s", code, stderr)
	}
	// Columns: PLUGIN ENABLED MODE SOURCE EVENTS ROUTES QUEUES.
	lines := map[string][]string{}
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = f
		}
	}
	if h := lines["PLUGIN"]; len(h) < 3 || h[1] != "ENABLED" {
		t.Errorf("table header %q, want PLUGIN ENABLED ...", h)
	}
	// "GET /echo/ping" is one column holding a space: two fields.
	if f := lines["echo"]; len(f) != 8 || f[0] != "echo" || f[1] != "true" || f[3] != "built-in" ||
		f[4] != "echo,echo.room" || f[5] != "GET" || f[6] != "/echo/ping" || f[7] != "-" {
		t.Errorf("echo line %q, want echo true MODE built-in echo,echo.room GET /echo/ping -\n%s", f, stdout)
	}
	if f := lines["analytics"]; len(f) < 2 || f[1] != "false" {
		t.Errorf("analytics line %q, want it disabled\n%s", f, stdout)
	}
}
