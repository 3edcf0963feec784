// Package testserver holds the harness shared by the black-box test suites
// (e2e, reliability) that build and run the realtime binary: building it,
// the TEST_JWKS signing key, a clean environment for child processes, a
// bounded log buffer, process-group handling and the short presence timing.
package testserver

import (
	"bufio"
	"bytes"
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
	"strings"
	"sync"
	"time"
)

// FindRepoRoot returns the directory of the module's go.mod: from
// `go env GOMOD`, else the parent of the working directory (the test
// package's directory) when it holds a go.mod.
func FindRepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	abs, aerr := filepath.Abs("..")
	if aerr != nil {
		return "", fmt.Errorf("find repo root: %w", errors.Join(err, aerr))
	}
	if _, serr := os.Stat(filepath.Join(abs, "go.mod")); serr != nil {
		return "", fmt.Errorf("find repo root: no go.mod via `go env GOMOD` (%v) or at %s: %w", err, abs, serr)
	}
	return abs, nil
}

// BuildBinary builds ./cmd/realtime of the module at repoRoot into out, with
// -race when race is set (pass the test binary's own race mode, so that data
// races in the server fail the tests too).
func BuildBinary(repoRoot, out string, race bool) error {
	args := []string{"build"}
	if race {
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

// NewKey generates a 2048-bit RSA signing key and a random kid
// "<prefix>-<16 hex digits>".
func NewKey(prefix string) (*rsa.PrivateKey, string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", fmt.Errorf("generate key: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", fmt.Errorf("generate kid: %w", err)
	}
	return key, prefix + "-" + hex.EncodeToString(b[:]), nil
}

// b64 is a JWK big-number field.
func b64(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }

// PublicJWK returns the public JWK (RS256, use sig) of key with kid.
func PublicJWK(kid string, key *rsa.PrivateKey) map[string]string {
	return map[string]string{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(key.N), "e": b64(big.NewInt(int64(key.E))),
	}
}

// PrivateJWKJSON returns the JWK of key with its private parts, as JSON
// (for clients that sign their own tokens, e.g. the node tests).
func PrivateJWKJSON(kid string, key *rsa.PrivateKey) (string, error) {
	key.Precompute()
	if len(key.Primes) < 2 {
		return "", fmt.Errorf("encode key %s: want 2 primes, have %d", kid, len(key.Primes))
	}
	jwk := PublicJWK(kid, key)
	jwk["d"], jwk["p"], jwk["q"] = b64(key.D), b64(key.Primes[0]), b64(key.Primes[1])
	jwk["dp"], jwk["dq"], jwk["qi"] = b64(key.Precomputed.Dp), b64(key.Precomputed.Dq), b64(key.Precomputed.Qinv)
	js, err := json.Marshal(jwk)
	if err != nil {
		return "", fmt.Errorf("encode key %s: %w", kid, err)
	}
	return string(js), nil
}

// JWKSJSON returns the public key set {"keys":[...]} of keys (kid -> key),
// the value of the server's TEST_JWKS.
func JWKSJSON(keys map[string]*rsa.PrivateKey) string {
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		set.Keys = append(set.Keys, PublicJWK(kid, k))
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err) // maps of strings always encode
	}
	return string(b)
}

// ServiceEnv are the environment variables of the service (original names,
// original-service.md §11) that must not leak from the developer's shell
// into test servers; CleanEnv drops them and every RT_* variable.
var ServiceEnv = []string{
	"PORT", "REDIS_URL", "REDIS_KEY", "AUTH0_API_DOMAIN", "CORS_ORIGIN",
	"EVENT_SECRET", "SECRET_FOR_SUMMARY", "SECRET_FOR_FLUSHING", "GRAPHQL_API_DOMAIN",
	"HASURA_ADMIN_SECRET", "GRAPHQL_API_SECURE_PROTOCOLS", "HOST_PUBLIC_URL", "TEST_MODE",
	"TEST_JWKS", "MAX_REDIS_CONNECTIONS", "MIN_REDIS_CONNECTIONS", "CLOUDAMQP_URL",
	"RABBITMQ_USERNAME", "RABBITMQ_PASSWORD", "DYNO",
}

// CleanEnv returns os.Environ() without ServiceEnv, RT_* and the variables
// in drop, plus extra.
func CleanEnv(extra map[string]string, drop ...string) []string {
	skip := make(map[string]bool, len(ServiceEnv)+len(drop))
	for _, k := range ServiceEnv {
		skip[k] = true
	}
	for _, k := range drop {
		skip[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if skip[k] || strings.HasPrefix(k, "RT_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// TailBuffer keeps the last Max bytes written to it; safe for concurrent
// use. Use it as a child process's Stdout/Stderr.
type TailBuffer struct {
	// Max is how many bytes are kept.
	Max int

	mu      sync.Mutex
	buf     []byte
	dropped int
}

// NewTailBuffer returns a TailBuffer keeping the last max bytes.
func NewTailBuffer(max int) *TailBuffer { return &TailBuffer{Max: max} }

// Write appends p, dropping the oldest bytes beyond Max.
func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.Max; over > 0 {
		b.dropped += over
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept bytes, prefixed with a note when some were dropped.
func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}

// CountLines counts the kept lines that contain every one of subs.
func (b *TailBuffer) CountLines(subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b.buf))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !bytes.Contains(sc.Bytes(), []byte(s)) {
				continue next
			}
		}
		n++
	}
	return n
}

// PresenceArgs are the `--set` flags that give the presence plugin the
// given window, refresh_interval and sweep_interval (the plugin requires
// window > 2*refresh).
func PresenceArgs(window, refresh, sweep time.Duration) []string {
	return []string{
		"--set", "plugins.presence.config.window=" + window.String(),
		"--set", "plugins.presence.config.refresh_interval=" + refresh.String(),
		"--set", "plugins.presence.config.sweep_interval=" + sweep.String(),
	}
}

// Closed reports whether done is closed (e.g. a process's exit signal),
// without waiting.
func Closed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// WaitClosed waits up to d for done to be closed and reports whether it was.
func WaitClosed(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// ReadyState is how PollReady ended.
type ReadyState int

const (
	// Ready: GET answered 200.
	Ready ReadyState = iota
	// Exited: the process exited first.
	Exited
	// NotReady: the time ran out.
	NotReady
)

// PollReady GETs url (each request bounded by reqTimeout) every 100ms until
// it answers 200, exited reports true (checked before every request), or
// within passes. It returns how it ended and, unless Ready, the last answer
// ("<status> <body>") or request error.
func PollReady(url string, within, reqTimeout time.Duration, exited func() bool) (ReadyState, string) {
	client := &http.Client{Timeout: reqTimeout}
	deadline := time.Now().Add(within)
	var last string
	for {
		if exited() {
			return Exited, last
		}
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return Ready, ""
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return NotReady, last
		}
		time.Sleep(100 * time.Millisecond)
	}
}
