package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
)

// rabbitNode is a RabbitMQ node of one test's own, on free ports with its own
// data directory, so the test can stop and restart the broker without
// disturbing the tests that use the machine's broker. It is started with the
// Debian package's rabbitmq-server (which runs the node as the rabbitmq user)
// and controlled with rabbitmqctl -n; starting takes 5-10 s.
type rabbitNode struct {
	name string   // Erlang node name, rt-<hex>@localhost
	dir  string   // config, data and logs (owned by the rabbitmq user)
	port int      // AMQP listener on 127.0.0.1
	env  []string // RABBITMQ_* for rabbitmq-server
}

// startRabbitNode starts a private node and stops it (and removes its data)
// when the test ends. Without rabbitmq-server, or when the test does not run
// as root or rabbitmq (the package's wrapper refuses other users), the test
// is skipped (fails under CI=true).
func startRabbitNode(t *testing.T) *rabbitNode {
	t.Helper()
	for _, bin := range []string{"rabbitmq-server", "rabbitmqctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Unavailable(t, "%s is not installed (needed for a private RabbitMQ node to restart)", bin)
		}
	}
	owner, err := user.Lookup("rabbitmq")
	if err != nil {
		testenv.Unavailable(t, "no rabbitmq user (RabbitMQ from Debian's package is needed): %v", err)
	}
	if uid := strconv.Itoa(os.Getuid()); uid != "0" && uid != owner.Uid {
		testenv.Unavailable(t, "a private RabbitMQ node needs root or the rabbitmq user (running as uid %s)", uid)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := &rabbitNode{name: "rt-" + hex.EncodeToString(b[:]) + "@localhost", port: testenv.FreePort(t)}
	// Not t.TempDir: its parents are 0700 root, which the rabbitmq user
	// cannot enter.
	if n.dir, err = os.MkdirTemp("", "realtime-rabbit-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(n.dir) })
	files := map[string]string{
		// The machine's /etc/rabbitmq/rabbitmq.conf binds 5672: replace it.
		"rabbitmq.conf":   fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\n", n.port),
		"enabled_plugins": "[].\n", // no management listener to collide with
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	for _, p := range []string{n.dir, filepath.Join(n.dir, "rabbitmq.conf"), filepath.Join(n.dir, "enabled_plugins")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(n.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n.env = append(os.Environ(),
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(testenv.FreePort(t)),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
	)
	t.Cleanup(func() {
		if out, err := n.ctl("stop"); err != nil && !strings.Contains(string(out), "not running") {
			t.Logf("stop RabbitMQ node %s: %v: %s", n.name, err, bytes.TrimSpace(out))
		}
	})
	n.start(t)
	return n
}

// URL is the node's AMQP URL (guest may log in from localhost).
func (n *rabbitNode) URL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.port)
}

// start starts the node and waits until RabbitMQ runs in it.
func (n *rabbitNode) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("rabbitmq-server", "-detached")
	cmd.Dir = n.dir
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rabbitmq-server -detached (node %s): %v: %s", n.name, err, bytes.TrimSpace(out))
	}
	if out, err := n.ctl("wait", filepath.Join(n.dir, "pid"), "--timeout", "90"); err != nil {
		logs, _ := os.ReadFile(filepath.Join(n.dir, "log", n.name+".log"))
		t.Fatalf("RabbitMQ node %s did not start: %v: %s\nlog tail:\n%s", n.name, err, bytes.TrimSpace(out), tail(logs, 3000))
	}
}

// stop stops the node gracefully (connections closed, non-durable queues
// and transient messages gone, as in a broker restart).
func (n *rabbitNode) stop(t *testing.T) {
	t.Helper()
	if out, err := n.ctl("stop"); err != nil {
		t.Fatalf("rabbitmqctl stop (node %s): %v: %s", n.name, err, bytes.TrimSpace(out))
	}
}

// queues maps the node's queue names (default vhost) to their durability.
func (n *rabbitNode) queues(t *testing.T) map[string]bool {
	t.Helper()
	out, err := n.ctl("-q", "list_queues", "--no-table-headers", "name", "durable")
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues (node %s): %v: %s", n.name, err, bytes.TrimSpace(out))
	}
	m := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			m[f[0]] = f[1] == "true"
		}
	}
	return m
}

func (n *rabbitNode) ctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-n", n.name}, args...)...)
	cmd.Dir = n.dir
	cmd.Env = n.env
	return cmd.CombinedOutput()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
