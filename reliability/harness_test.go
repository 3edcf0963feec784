package reliability

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/internal/testserver"
)

const (
	// readyWithin bounds the wait for a started server's /readyz.
	readyWithin = 30 * time.Second
	// termGrace is how long a server may take to exit after SIGTERM.
	termGrace = 20 * time.Second
	// logTail is how much server output is kept for the test log and for
	// log-line assertions.
	logTail = 8 << 20
)

var (
	repoRoot     string // the module root
	serverBinary string // the built realtime binary
	// testKey signs the tokens every server started with TEST_JWKS trusts.
	testKey    *rsa.PrivateKey
	testKeyKid string
	// testJWKS is the public key set {"keys":[...]} of testKey.
	testJWKS string
)

func TestMain(m *testing.M) {
	os.Exit(mainWithSetup(m))
}

func mainWithSetup(m *testing.M) int {
	flag.Parse()
	var err error
	if repoRoot, err = testserver.FindRepoRoot(); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: %v\n", err)
		return 1
	}
	if testKey, testKeyKid, err = testserver.NewKey("rel"); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: %v\n", err)
		return 1
	}
	testJWKS = testserver.JWKSJSON(map[string]*rsa.PrivateKey{testKeyKid: testKey})
	if fuzzing() {
		// `go test -fuzz` runs the fuzz targets (and, in its workers, only
		// them): they need no server binary.
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "realtime-reliability-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "reliability: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	serverBinary = filepath.Join(tmp, "realtime")
	// The server under fault is a normal build, as deployed: the promises
	// (a plugin back within 2 s, ...) are about it, and a -race build starts
	// and runs several times slower on the 2-core CI box. The race detector
	// covers the server in the e2e suite and the in-process tests.
	if err := testserver.BuildBinary(repoRoot, serverBinary, false); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: %v\n", err)
		return 1
	}
	if allPlugins, err = listPlugins(); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: %v\n", err)
		return 1
	}
	code := m.Run()
	return code
}

// fuzzing reports whether this process runs `go test -fuzz` (the
// coordinator, with -test.fuzz, or a worker, with -test.fuzzworker).
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// signToken returns an RS256 token for userID signed by key with kid,
// valid for an hour, carrying the Hasura claims the service reads.
func signToken(t testing.TB, key *rsa.PrivateKey, kid, userID string) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{
		"sub": userID,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"https://hasura.io/jwt/claims": map[string]any{
			"x-hasura-user-id":       userID,
			"x-hasura-default-role":  "user",
			"x-hasura-allowed-roles": []string{"user"},
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return s
}

// token returns a token for userID that every test server accepts.
func token(t testing.TB, userID string) string {
	return signToken(t, testKey, testKeyKid, userID)
}

// cleanEnv returns the environment for child processes
// (testserver.CleanEnv), plus extra.
func cleanEnv(extra map[string]string) []string {
	return testserver.CleanEnv(extra)
}

// server is one running realtime process.
type server struct {
	Name string
	URL  string
	Port int
	cmd  *exec.Cmd
	log  *testserver.TailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, valid after done
	// killed: the test killed it on purpose (no exit status checks).
	killed bool
}

func (s *server) exited() bool { return testserver.Closed(s.done) }

func (s *server) waitExit(d time.Duration) bool { return testserver.WaitClosed(s.done, d) }

// PID returns the server's process id.
func (s *server) PID() int { return s.cmd.Process.Pid }

// serverOpts configure launch.
type serverOpts struct {
	name string
	// plugins are enabled (subprocess mode unless set otherwise in args);
	// the others are disabled.
	plugins []string
	// args follow `serve --config "" --port N`, the plugin switches and the
	// suite's defaults, so they override both.
	args []string
	// env is added to the cleaned environment (e.g. REDIS_URL, CLOUDAMQP_URL).
	env map[string]string
	// noTestJWKS starts the server without TEST_JWKS.
	noTestJWKS bool
	// port, when non-zero, is the port to listen on (a restart on the same port).
	port int
}

// allPlugins are the built-in plugins (`realtime plugins`); test servers
// enable only those a test names.
var allPlugins []string

// listPlugins runs `realtime plugins` and returns the plugin names.
func listPlugins() ([]string, error) {
	cmd := exec.Command(serverBinary, "plugins", "--config", "")
	cmd.Env = cleanEnv(nil)
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("realtime plugins: %w", err)
	}
	var names []string
	for i, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue // header
		}
		names = append(names, f[0])
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("realtime plugins listed no plugin:\n%s", out)
	}
	return names, nil
}

// launch starts a server as configured and waits until /readyz is 200. The
// server is stopped when the test ends (SIGTERM; the test fails when it
// needs SIGKILL, exits non-zero or leaves plugin processes behind), unless
// the test killed it.
func launch(t *testing.T, o serverOpts) *server {
	t.Helper()
	s := start(t, o)
	s.waitReady(t, readyWithin)
	return s
}

// start starts a server without waiting for it to be ready.
func start(t *testing.T, o serverOpts) *server {
	t.Helper()
	port := o.port
	if port == 0 {
		port = testenv.FreePort(t)
	}
	env := map[string]string{}
	if !o.noTestJWKS {
		env["TEST_JWKS"] = testJWKS
	}
	for k, v := range o.env {
		env[k] = v
	}
	args := []string{"serve", "--config", "", "--port", strconv.Itoa(port), "--log-level", "info"}
	for _, p := range allPlugins {
		on := false
		for _, q := range o.plugins {
			on = on || q == p
		}
		args = append(args, "--set", fmt.Sprintf("plugins.%s.enabled=%t", p, on))
	}
	args = append(args, o.args...)
	name := o.name
	if name == "" {
		name = "server"
	}
	s := &server{
		Name: name,
		URL:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Port: port,
		log:  testserver.NewTailBuffer(logTail),
		done: make(chan struct{}),
	}
	s.cmd = exec.Command(serverBinary, args...)
	s.cmd.Dir = t.TempDir()
	s.cmd.Env = cleanEnv(env)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	testserver.SetProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", serverBinary, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// waitReady waits until /readyz answers 200, failing the test after d.
func (s *server) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	switch state, last := testserver.PollReady(s.URL+"/readyz", d, 3*time.Second, s.exited); state {
	case testserver.Exited:
		t.Fatalf("%s exited before it was ready (%v)\n%s", s.Name, s.err, s.log)
	case testserver.NotReady:
		t.Fatalf("%s not ready within %v (last /readyz: %s)\n%s", s.Name, d, last, s.log)
	}
}

// readyz returns /readyz's status and body (status 0 when unreachable).
func (s *server) readyz() (int, string) {
	return httpGet(s.URL + "/readyz")
}

// httpGet fetches url with a short timeout: status (0 on error) and body.
func httpGet(url string) (int, string) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(body)
}

// kill sends SIGKILL to the server process only (its plugins must notice and
// exit by themselves) and waits for it to exit.
func (s *server) kill(t *testing.T) {
	t.Helper()
	s.killed = true
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	if !s.waitExit(10 * time.Second) {
		t.Fatalf("%s did not exit after SIGKILL", s.Name)
	}
}

// term sends SIGTERM.
func (s *server) term() { _ = s.cmd.Process.Signal(syscall.SIGTERM) }

// stop ends the server: SIGTERM, then SIGKILL after termGrace.
func (s *server) stop(t *testing.T) {
	if !s.exited() {
		s.term()
		if !s.waitExit(termGrace) {
			t.Errorf("%s did not exit within %v of SIGTERM; killing it", s.Name, termGrace)
			testserver.KillProcessGroup(s.cmd)
			if !s.waitExit(5 * time.Second) {
				t.Errorf("%s did not exit after SIGKILL", s.Name)
			}
		}
	}
	if s.exited() && !s.killed {
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited with %v, want status 0", s.Name, s.err)
		}
	}
	if s.exited() {
		if leftovers := testserver.WaitProcessGroupGone(s.cmd, 5*time.Second); leftovers {
			t.Errorf("processes of %s's group (plugins?) still ran 5s after it exited; killed them", s.Name)
			testserver.KillProcessGroup(s.cmd)
		}
	}
	if t.Failed() {
		t.Logf("%s (%s) output:\n%s", s.Name, s.URL, s.log)
	}
}

// metrics scrapes /metrics.
func (s *server) metrics(t testing.TB) metricSet {
	t.Helper()
	code, body := httpGet(s.URL + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("%s /metrics: %d %.300s", s.Name, code, body)
	}
	return metricSet(body)
}

// metricSet is a Prometheus text exposition.
type metricSet string

// sum adds the values of every sample of the metric name whose labels
// contain every one of labels (each as `k="v"`).
func (m metricSet) sum(name string, labels ...string) float64 {
	total := 0.0
	for _, line := range strings.Split(string(m), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		if i < 0 {
			continue
		}
		lab := rest[:i]
		match := true
		for _, l := range labels {
			match = match && strings.Contains(lab, l)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[i+1:]), 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// recorder keeps the events a client received, for assertions.
type recorder struct {
	mu     sync.Mutex
	events []event
	notify chan struct{} // closed and replaced on every event
	dis    []string      // disconnect reasons
}

type event struct {
	name string
	args []json.RawMessage
	at   time.Time
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{})} }

func (r *recorder) onEvent(name string, args []json.RawMessage) {
	r.mu.Lock()
	r.events = append(r.events, event{name: name, args: args, at: time.Now()})
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) onDisconnect(reason string) {
	r.mu.Lock()
	r.dis = append(r.dis, reason)
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// disconnects returns the disconnect reasons seen so far.
func (r *recorder) disconnects() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dis...)
}

// all returns the events named name received so far.
func (r *recorder) all(name string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

// waitFor waits until cond (called with the lock held on the event list)
// is true, or ctx ends; it reports whether cond became true.
func (r *recorder) waitFor(ctx context.Context, cond func(evs []event) bool) bool {
	for {
		r.mu.Lock()
		ok := cond(r.events)
		ch := r.notify
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// dial connects userID to s with a recorder.
func dial(ctx context.Context, t testing.TB, url, userID string) (*sioclient.Client, *recorder) {
	t.Helper()
	c, r, err := tryDial(ctx, url, token(t, userID))
	if err != nil {
		t.Fatalf("dial %s as %s: %v", url, userID, err)
	}
	return c, r
}

// tryDial connects with tok and a fresh recorder.
func tryDial(ctx context.Context, url, tok string) (*sioclient.Client, *recorder, error) {
	r := newRecorder()
	c, err := sioclient.Dial(ctx, url, sioclient.Options{
		Token:          tok,
		OnEvent:        r.onEvent,
		OnDisconnect:   r.onDisconnect,
		ConnectTimeout: 15 * time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	return c, r, nil
}

// str decodes a JSON string argument ("" when it is not one).
func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// within runs f every 50ms until it returns true or d passes; it reports
// whether f returned true.
func within(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
