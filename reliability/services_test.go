package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
)

// Each RabbitMQ test gets a fresh vhost of its own on the machine's broker
// (never restarted: other tests use it), deleted when the test ends. Tests
// must not share one: they would compete for each other's durable queues
// (chat.messages.writeback) and close each other's connections.

func rabbitmqctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
}

var (
	vhostsMu sync.Mutex
	vhosts   = map[*testing.T]string{}
)

// amqpURL creates a vhost for the test and returns its URL. Without
// RabbitMQ or rabbitmqctl the test is skipped (fails under CI=true).
func amqpURL(t *testing.T) string {
	t.Helper()
	base := testenv.AMQPURL(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		testenv.Unavailable(t, "rabbitmqctl is not installed (needed for a private vhost and to close connections)")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "realtime-reliability-" + hex.EncodeToString(b[:])
	if out, err := rabbitmqctl("add_vhost", name); err != nil {
		testenv.Unavailable(t, "rabbitmqctl add_vhost: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := rabbitmqctl("delete_vhost", name); err != nil {
			t.Logf("delete vhost %s: %v: %s", name, err, out)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse AMQP URL %q: %v", base, err)
	}
	user := "guest"
	if u.User != nil && u.User.Username() != "" {
		user = u.User.Username()
	}
	if out, err := rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*"); err != nil {
		testenv.Unavailable(t, "rabbitmqctl set_permissions: %v: %s", err, bytes.TrimSpace(out))
	}
	vhostsMu.Lock()
	vhosts[t] = name
	vhostsMu.Unlock()
	u.Path = "/" + name
	return u.String()
}

func vhostOf(t *testing.T) string {
	vhostsMu.Lock()
	defer vhostsMu.Unlock()
	name, ok := vhosts[t]
	if !ok {
		t.Fatal("the test has no vhost: call amqpURL first")
	}
	return name
}

// closeVhostConnections force-closes every connection of the test's vhost
// and returns how many there were.
func closeVhostConnections(t *testing.T) int {
	t.Helper()
	name := vhostOf(t)
	n := vhostConnections(t)
	if out, err := rabbitmqctl("close_all_connections", "--vhost", name, "reliability fault test"); err != nil {
		t.Fatalf("rabbitmqctl close_all_connections: %v: %s", err, out)
	}
	return n
}

// vhostConnections counts the connections of the test's vhost.
func vhostConnections(t *testing.T) int {
	t.Helper()
	name := vhostOf(t)
	out, err := rabbitmqctl("-q", "list_connections", "--no-table-headers", "vhost")
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v: %s", err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == name {
			n++
		}
	}
	return n
}
