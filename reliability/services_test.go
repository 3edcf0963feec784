package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
)

// redisProc is a redis-server of one test, on its own port, without
// persistence: stopping it loses its data, as a crashed Redis would.
type redisProc struct {
	bin  string
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts a private redis-server; it is killed when the test ends.
func startRedis(t *testing.T) *redisProc {
	t.Helper()
	r := &redisProc{bin: testenv.RedisServerBinary(t), port: testenv.FreePort(t), dir: t.TempDir()}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.kill)
	return r
}

// URL is the redis:// URL of the server.
func (r *redisProc) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// start runs redis-server and waits until it accepts connections.
func (r *redisProc) start() error {
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--maxclients", "20000")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), time.Second); err == nil {
			// PING until it answers (it may still be loading).
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d not up within 10s:\n%s", r.port, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops redis-server with SIGKILL (a crash: nothing is saved).
func (r *redisProc) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// do runs one inline command against the server and returns the raw reply.
func (r *redisProc) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// The RabbitMQ tests use one fresh vhost per test run on the machine's
// broker (never restarted: other tests use it), deleted when the run ends.
var (
	vhostOnce sync.Once
	vhostName string
	vhostErr  error
)

func rabbitmqctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
}

// amqpURL returns the URL of this run's vhost, creating it on first use.
// Without RabbitMQ or rabbitmqctl the test is skipped (fails under CI=true).
func amqpURL(t *testing.T) string {
	t.Helper()
	base := testenv.AMQPURL(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		testenv.Unavailable(t, "rabbitmqctl is not installed (needed for a private vhost and to close connections)")
	}
	vhostOnce.Do(func() {
		var b [6]byte
		_, _ = rand.Read(b[:])
		name := "realtime-reliability-" + hex.EncodeToString(b[:])
		if out, err := rabbitmqctl("add_vhost", name); err != nil {
			vhostErr = fmt.Errorf("rabbitmqctl add_vhost: %w: %s", err, bytes.TrimSpace(out))
			return
		}
		vhostName = name
		u, _ := url.Parse(base)
		user := "guest"
		if u != nil && u.User != nil && u.User.Username() != "" {
			user = u.User.Username()
		}
		if out, err := rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*"); err != nil {
			vhostErr = fmt.Errorf("rabbitmqctl set_permissions: %w: %s", err, bytes.TrimSpace(out))
		}
	})
	if vhostErr != nil {
		testenv.Unavailable(t, "%v", vhostErr)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse AMQP URL %q: %v", base, err)
	}
	u.Path = "/" + vhostName
	return u.String()
}

// cleanupVhost deletes this run's vhost (called once from TestMain).
func cleanupVhost() {
	if vhostName == "" {
		return
	}
	if out, err := rabbitmqctl("delete_vhost", vhostName); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: delete vhost %s: %v\n%s", vhostName, err, out)
	}
}

// closeVhostConnections force-closes every connection of this run's vhost
// and returns how many there were.
func closeVhostConnections(t *testing.T) int {
	t.Helper()
	n := vhostConnections(t)
	if out, err := rabbitmqctl("close_all_connections", "--vhost", vhostName, "reliability fault test"); err != nil {
		t.Fatalf("rabbitmqctl close_all_connections: %v: %s", err, out)
	}
	return n
}

// vhostConnections counts the connections of this run's vhost.
func vhostConnections(t *testing.T) int {
	t.Helper()
	out, err := rabbitmqctl("-q", "list_connections", "--no-table-headers", "vhost")
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v: %s", err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == vhostName {
			n++
		}
	}
	return n
}
