// Package e2e runs the realtime binary as a black box and drives it with the
// real socket.io-client (node, e2e/client) the way the browser frontend does.
//
// TestMain builds ./cmd/realtime once (with -race when the tests run with
// -race, so data races in the server fail the tests too) and installs the
// node client's dependencies (npm ci in e2e/client) when they are missing.
// Without node or npm the tests that need them skip, or fail under CI=true
// (internal/testenv).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/internal/testserver"
)

const (
	// readyWithin bounds the wait for a started server's /readyz.
	readyWithin = 20 * time.Second
	// termGrace is how long a server may take to exit after SIGTERM before
	// it is killed (and the test fails).
	termGrace = 10 * time.Second
	// nodeRunLimit bounds one `node --test` run.
	nodeRunLimit = 3 * time.Minute
	// npmCILimit bounds `npm ci`.
	npmCILimit = 5 * time.Minute
	// logTail is how much server output is kept for the test log.
	logTail = 256 << 10
)

var (
	repoRoot  string // the module root (directory of go.mod)
	clientDir string // e2e/client
	binary    string // the built realtime binary
	// nodeErr says why node tests cannot run ("" = they can).
	nodeErr string
	// testJWKJSON is the JWK (with private parts) of the RSA key every server
	// started with TEST_JWKS trusts; it goes to the node tests as
	// TEST_JWKS_PRIVATE.
	testJWKJSON string
)

func TestMain(m *testing.M) {
	os.Exit(mainWithSetup(m))
}

func mainWithSetup(m *testing.M) int {
	var err error
	if repoRoot, err = testserver.FindRepoRoot(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	clientDir = filepath.Join(repoRoot, "e2e", "client")
	tmp, err := os.MkdirTemp("", "realtime-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary = filepath.Join(tmp, "realtime")
	if err := testserver.BuildBinary(repoRoot, binary, raceEnabled); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if testJWKJSON, err = newTestJWK(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	nodeErr = setupNode()
	return m.Run()
}

// setupNode checks for node and npm and installs e2e/client's dependencies
// when node_modules is missing. It returns why node tests cannot run, or "".
func setupNode() string {
	if _, err := exec.LookPath("node"); err != nil {
		return "node is not installed (apt-get install nodejs npm)"
	}
	if _, err := os.Stat(filepath.Join(clientDir, "node_modules", "socket.io-client", "package.json")); err == nil {
		return ""
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "npm is not installed and e2e/client/node_modules is missing (apt-get install npm)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmCILimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = clientDir
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("npm ci in %s failed (%v); is the npm registry reachable?\n%s", clientDir, err, out)
	}
	return ""
}

// requireNode skips the test (fails under CI=true) when node tests cannot run.
func requireNode(t *testing.T) {
	t.Helper()
	if nodeErr != "" {
		testenv.Unavailable(t, "%s", nodeErr)
	}
}

// newTestJWK generates the TEST_JWKS key with a random kid and returns its
// JWK with private parts.
func newTestJWK() (string, error) {
	key, kid, err := testserver.NewKey("e2e")
	if err != nil {
		return "", fmt.Errorf("test key: %w", err)
	}
	return testserver.PrivateJWKJSON(kid, key)
}

// pluginArgs are the plugin switches every test server starts with: the
// feature plugins run (as subprocesses, their default mode) in every test.
func pluginArgs() []string {
	return []string{
		"--set", "plugins.presence.enabled=true",
		"--set", "plugins.chat.enabled=true",
		"--set", "plugins.admin.enabled=true",
	}
}

// cleanEnv returns the environment for child processes
// (testserver.CleanEnv) without the variables the node tests read, plus extra.
func cleanEnv(extra map[string]string) []string {
	return testserver.CleanEnv(extra, "SERVER_URL", "TEST_JWKS_PRIVATE", "TOKEN", "SERVER_PID")
}

// server is one running realtime process.
type server struct {
	URL  string
	Port int
	cmd  *exec.Cmd
	log  *testserver.TailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid after done
	// killExpected is set by a test that SIGKILLs the server on purpose:
	// stop then accepts the kill, but still requires the plugins to exit.
	killExpected atomic.Bool
}

// exited reports whether the process has exited.
func (s *server) exited() bool { return testserver.Closed(s.done) }

// waitExit waits up to d for the process to exit.
func (s *server) waitExit(d time.Duration) bool { return testserver.WaitClosed(s.done, d) }

// exitCode is the exit status (-1 when killed by a signal); valid after done.
func (s *server) exitCode() int {
	return s.cmd.ProcessState.ExitCode()
}

// serverOpts configure launch.
type serverOpts struct {
	// args follow `serve --config "" --port N` and pluginArgs().
	args []string
	// env is added to the cleaned environment.
	env map[string]string
	// noTestJWKS starts the server without TEST_JWKS (dev mode).
	noTestJWKS bool
}

// startServer starts the binary with TEST_JWKS set to the test key and the
// given extra arguments, waits until it is ready, and returns its base URL.
// The server is stopped (SIGTERM, then SIGKILL) when the test ends.
func startServer(t *testing.T, extraArgs ...string) (baseURL string) {
	t.Helper()
	return launch(t, serverOpts{args: extraArgs}).URL
}

// launch starts a server as configured and waits for /readyz.
func launch(t *testing.T, o serverOpts) *server {
	t.Helper()
	port := testenv.FreePort(t)
	env := map[string]string{}
	if !o.noTestJWKS {
		env["TEST_JWKS"] = `{"keys":[` + testJWKJSON + `]}`
	}
	for k, v := range o.env {
		env[k] = v
	}
	args := append([]string{"serve", "--config", "", "--port", strconv.Itoa(port)}, pluginArgs()...)
	args = append(args, o.args...)
	s := &server{
		URL:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Port: port,
		log:  testserver.NewTailBuffer(logTail),
		done: make(chan struct{}),
	}
	s.cmd = exec.Command(binary, args...)
	s.cmd.Dir = t.TempDir() // no stray config.yaml, dev key files land here
	s.cmd.Env = cleanEnv(env)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	testserver.SetProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })

	switch state, last := testserver.PollReady(s.URL+"/readyz", readyWithin, 2*time.Second, s.exited); state {
	case testserver.Exited:
		t.Fatalf("server exited before it was ready (%v); args %q\n%s", s.err, args, s.log)
	case testserver.NotReady:
		t.Fatalf("server not ready within %v (last /readyz: %s); args %q\n%s", readyWithin, last, args, s.log)
	}
	return s
}

// stop ends the server: SIGTERM, then SIGKILL after termGrace. It fails the
// test when the server needs SIGKILL, exits non-zero (a data race under -race
// exits 66), or leaves processes (plugins) behind. On failure the server's
// output goes to the test log.
func (s *server) stop(t *testing.T) {
	if !s.exited() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		if !s.waitExit(termGrace) {
			t.Errorf("server did not exit within %v of SIGTERM; killing it", termGrace)
			testserver.KillProcessGroup(s.cmd)
			if !s.waitExit(5 * time.Second) {
				t.Errorf("server did not exit after SIGKILL")
			}
		}
	}
	if s.exited() {
		if code := s.exitCode(); code != 0 && !(s.killExpected.Load() && testserver.KilledBySIGKILL(s.cmd)) {
			t.Errorf("server exited with %v, want status 0", s.err)
		}
		if leftovers := testserver.WaitProcessGroupGone(s.cmd, 5*time.Second); leftovers {
			t.Errorf("processes of the server's group (plugins?) still ran after it exited; killed them")
			testserver.KillProcessGroup(s.cmd)
		}
	}
	if t.Failed() {
		t.Logf("server %s output:\n%s", s.URL, s.log)
	}
}

// runNode runs `node --test <file>` in e2e/client with SERVER_URL and
// TEST_JWKS_PRIVATE (plus env) set, streams its output into the test log and
// fails the test when it exits non-zero.
func runNode(t *testing.T, file string, env map[string]string) {
	t.Helper()
	requireNode(t)
	full := map[string]string{"TEST_JWKS_PRIVATE": testJWKJSON}
	for k, v := range env {
		full[k] = v
	}
	if full["SERVER_URL"] == "" {
		t.Fatalf("runNode %s: SERVER_URL not given", file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeRunLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", file)
	cmd.Dir = clientDir
	cmd.Env = cleanEnv(full)
	cmd.WaitDelay = 5 * time.Second
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("runNode %s: %v", file, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatalf("runNode %s: %v", file, err)
	}
	pw.Close() // the child holds its own copy
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	pr.Close()
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("node --test %s: did not finish within %v", file, nodeRunLimit)
		}
		t.Fatalf("node --test %s: %v", file, err)
	}
}

// get fetches url and returns status, content type and (capped) body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	base := startServer(t, "--set", "plugins.echo.enabled=true")
	tests := []struct {
		name      string
		path      string
		status    int
		ctPrefix  string
		body      string // exact, when set
		contains  []string
		checkJSON func(t *testing.T, body string)
	}{
		{name: "healthz", path: "/healthz", status: 200, body: "ok\n"},
		{name: "readyz", path: "/readyz", status: 200, ctPrefix: "application/json", checkJSON: func(t *testing.T, body string) {
			var r struct {
				Status string                     `json:"status"`
				Checks map[string]json.RawMessage `json:"checks"`
			}
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatalf("readyz is not JSON: %v: %s", err, body)
			}
			if r.Status != "ready" {
				t.Errorf("readyz status %q, want ready: %s", r.Status, body)
			}
		}},
		{name: "catch-all page", path: "/no/such/page?x=1", status: 200, ctPrefix: "text/html", contains: []string{"<html", "OK"}},
		{name: "root page", path: "/", status: 200, ctPrefix: "text/html", contains: []string{"OK"}},
		{name: "polling transport refused", path: "/socket.io/?EIO=4&transport=polling", status: 400,
			ctPrefix: "application/json", body: `{"code":0,"message":"Transport unknown"}`},
		{name: "metrics", path: "/metrics", status: 200, ctPrefix: "text/plain", contains: []string{"realtime_", "go_goroutines"}},
		{name: "plugin route", path: "/echo/ping", status: 200, body: "pong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, ct, body := get(t, base+tt.path)
			if status != tt.status {
				t.Errorf("status %d, want %d; body %q", status, tt.status, body)
			}
			if !strings.HasPrefix(ct, tt.ctPrefix) {
				t.Errorf("Content-Type %q, want prefix %q", ct, tt.ctPrefix)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body does not contain %q:\n%.2000s", s, body)
				}
			}
			if tt.checkJSON != nil {
				tt.checkJSON(t, body)
			}
		})
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	requireNode(t)
	for _, mode := range []string{"subprocess", "inprocess"} {
		t.Run("echo "+mode, func(t *testing.T) {
			t.Parallel()
			base := startServer(t, "--set", "plugins.echo.enabled=true", "--set", "plugins.echo.mode="+mode)
			runNode(t, "connect.test.mjs", map[string]string{"SERVER_URL": base})
		})
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	requireNode(t)
	base := startServer(t)
	runNode(t, "auth.test.mjs", map[string]string{"SERVER_URL": base})
}

func TestDevToken(t *testing.T) {
	t.Parallel()
	requireNode(t)
	keyFile := filepath.Join(t.TempDir(), "dev-keys.json")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "token", "--config", "", "--user", "alice", "--set", "auth.dev_key_file="+keyFile)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv(nil)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("realtime token: %v\n%s", err, stderr.String())
	}
	token := strings.TrimSpace(string(out))
	if strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \n") {
		t.Fatalf("realtime token printed %q, want one JWT", out)
	}
	if got := hasuraUserID(t, token); got != "alice" {
		t.Fatalf("token x-hasura-user-id %q, want alice", got)
	}

	s := launch(t, serverOpts{noTestJWKS: true, args: []string{"--set", "auth.dev_key_file=" + keyFile}})
	runNode(t, "devtoken.test.mjs", map[string]string{"SERVER_URL": s.URL, "TOKEN": token})
}

// hasuraUserID decodes (without verifying) a JWT's x-hasura-user-id.
func hasuraUserID(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var claims struct {
		Hasura struct {
			UserID string `json:"x-hasura-user-id"`
		} `json:"https://hasura.io/jwt/claims"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatalf("JWT payload: %v: %s", err, raw)
	}
	return claims.Hasura.UserID
}

func TestSIGTERMDrain(t *testing.T) {
	t.Parallel()
	requireNode(t)
	const budget = 10 * time.Second
	s := launch(t, serverOpts{args: []string{"--set", "shutdown.timeout=" + budget.String()}})
	// The node test connects a client, sends SIGTERM itself, and checks the
	// client's disconnect reason.
	runNode(t, "drain.test.mjs", map[string]string{"SERVER_URL": s.URL, "SERVER_PID": strconv.Itoa(s.cmd.Process.Pid)})
	if !s.waitExit(budget + 5*time.Second) {
		t.Fatalf("server still running %v after SIGTERM (shutdown budget %v)", budget+5*time.Second, budget)
	}
	if code := s.exitCode(); code != 0 {
		t.Fatalf("server exited with %v after SIGTERM, want status 0", s.err)
	}
}
