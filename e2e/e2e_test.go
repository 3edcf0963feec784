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
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
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
	// testJWK is the RSA key every server started with TEST_JWKS trusts; its
	// JSON (with private parts) goes to the node tests as TEST_JWKS_PRIVATE.
	testJWK     *rsa.PrivateKey
	testJWKKid  string
	testJWKJSON string
)

func TestMain(m *testing.M) {
	os.Exit(mainWithSetup(m))
}

func mainWithSetup(m *testing.M) int {
	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
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
	if err := buildBinary(binary); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if testJWK, testJWKKid, testJWKJSON, err = newTestJWK(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	nodeErr = setupNode()
	return m.Run()
}

// findRepoRoot returns the directory of the module's go.mod.
func findRepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	// Fall back to the layout: this package lives in <root>/e2e.
	abs, aerr := filepath.Abs("..")
	if aerr != nil {
		return "", fmt.Errorf("find repo root: %w", errors.Join(err, aerr))
	}
	if _, serr := os.Stat(filepath.Join(abs, "go.mod")); serr != nil {
		return "", fmt.Errorf("find repo root: no go.mod via `go env GOMOD` (%v) or at %s: %w", err, abs, serr)
	}
	return abs, nil
}

// buildBinary builds ./cmd/realtime, with -race when this test binary has it.
func buildBinary(out string) error {
	args := []string{"build"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "-o", out, "./cmd/realtime")
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, buf.String())
	}
	return nil
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

// newTestJWK generates the TEST_JWKS key with a random kid.
func newTestJWK() (*rsa.PrivateKey, string, string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", "", fmt.Errorf("generate test key: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", "", fmt.Errorf("generate kid: %w", err)
	}
	kid := "e2e-" + hex.EncodeToString(b[:])
	enc := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	key.Precompute()
	jwk := map[string]string{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": enc(key.N), "e": enc(big.NewInt(int64(key.E))),
		"d": enc(key.D), "p": enc(key.Primes[0]), "q": enc(key.Primes[1]),
		"dp": enc(key.Precomputed.Dp), "dq": enc(key.Precomputed.Dq), "qi": enc(key.Precomputed.Qinv),
	}
	js, err := json.Marshal(jwk)
	if err != nil {
		return nil, "", "", fmt.Errorf("encode test key: %w", err)
	}
	return key, kid, string(js), nil
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

// serviceEnv are the environment variables of the service (original names,
// original-service.md §11) that must not leak from the developer's shell
// into test servers; every RT_* variable is dropped too.
var serviceEnv = map[string]bool{
	"PORT": true, "REDIS_URL": true, "REDIS_KEY": true, "AUTH0_API_DOMAIN": true, "CORS_ORIGIN": true,
	"EVENT_SECRET": true, "SECRET_FOR_SUMMARY": true, "SECRET_FOR_FLUSHING": true, "GRAPHQL_API_DOMAIN": true,
	"HASURA_ADMIN_SECRET": true, "GRAPHQL_API_SECURE_PROTOCOLS": true, "HOST_PUBLIC_URL": true, "TEST_MODE": true,
	"TEST_JWKS": true, "MAX_REDIS_CONNECTIONS": true, "MIN_REDIS_CONNECTIONS": true, "CLOUDAMQP_URL": true,
	"RABBITMQ_USERNAME": true, "RABBITMQ_PASSWORD": true, "DYNO": true,
	// read by the node tests
	"SERVER_URL": true, "TEST_JWKS_PRIVATE": true, "TOKEN": true, "SERVER_PID": true,
}

// cleanEnv returns os.Environ() without service variables, plus extra.
func cleanEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if serviceEnv[k] || strings.HasPrefix(k, "RT_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.dropped += over
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}

// server is one running realtime process.
type server struct {
	URL  string
	Port int
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid after done
	// killExpected is set by a test that SIGKILLs the server on purpose:
	// stop then accepts the kill, but still requires the plugins to exit.
	killExpected atomic.Bool
}

// exited reports whether the process has exited.
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the process to exit.
func (s *server) waitExit(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

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
		log:  &tailBuffer{max: logTail},
		done: make(chan struct{}),
	}
	s.cmd = exec.Command(binary, args...)
	s.cmd.Dir = t.TempDir() // no stray config.yaml, dev key files land here
	s.cmd.Env = cleanEnv(env)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	setProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyWithin)
	var last string
	for {
		if s.exited() {
			t.Fatalf("server exited before it was ready (%v); args %q\n%s", s.err, args, s.log)
		}
		resp, err := client.Get(s.URL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within %v (last /readyz: %s); args %q\n%s", readyWithin, last, args, s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
			killProcessGroup(s.cmd)
			if !s.waitExit(5 * time.Second) {
				t.Errorf("server did not exit after SIGKILL")
			}
		}
	}
	if s.exited() {
		if code := s.exitCode(); code != 0 && !(s.killExpected.Load() && killedBySIGKILL(s.cmd)) {
			t.Errorf("server exited with %v, want status 0", s.err)
		}
		if leftovers := waitProcessGroupGone(s.cmd, 5*time.Second); leftovers {
			t.Errorf("processes of the server's group (plugins?) still ran after it exited; killed them")
			killProcessGroup(s.cmd)
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
