package testserver

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
)

// redisUpWithin bounds the wait for a started redis-server to answer PING.
const redisUpWithin = 10 * time.Second

// Redis is a private redis-server of one test, on its own loopback port,
// without persistence: killing it loses its data, as a crashed Redis would.
// It can be killed and started again on the same port.
type Redis struct {
	bin  string
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *TailBuffer
}

// StartRedis starts a private redis-server (testenv.RedisServerBinary: the
// test skips without one, and fails under CI=true) and waits until it
// answers PING. It is killed when the test ends; the test fails when it
// does not exit within 5s of SIGKILL.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{bin: testenv.RedisServerBinary(t), port: testenv.FreePort(t), dir: t.TempDir()}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !r.Kill(5 * time.Second) {
			t.Errorf("redis-server did not exit after SIGKILL")
		}
	})
	return r
}

// URL is the redis:// URL (database 0) of the server.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Addr is the server's host:port.
func (r *Redis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// Start runs redis-server (again, after Kill) and waits until it answers
// PING.
func (r *Redis) Start() error {
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--dir", r.dir, "--maxclients", "20000")
	cmd.Dir = r.dir
	log := NewTailBuffer(64 << 10)
	cmd.Stdout, cmd.Stderr = log, log
	SetProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done, r.log = cmd, done, log
	r.mu.Unlock()
	deadline := time.Now().Add(redisUpWithin)
	for {
		if reply, err := r.Do("PING"); err == nil && strings.HasPrefix(reply, "+PONG") {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d not up within %v:\n%s", r.port, redisUpWithin, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops redis-server with SIGKILL (a crash: nothing is saved) and waits
// up to d for it to exit; it reports whether it did (true when it was not
// running).
func (r *Redis) Kill(d time.Duration) bool {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return true
	}
	KillProcessGroup(cmd)
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Do runs one command against the server on a new connection and returns
// the raw RESP reply (as far as one read gets it).
func (r *Redis) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr(), 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("redis %s: %w", r.Addr(), err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", fmt.Errorf("redis %s: write: %w", r.Addr(), err)
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("redis %s: read: %w", r.Addr(), err)
	}
	return string(buf[:n]), nil
}
