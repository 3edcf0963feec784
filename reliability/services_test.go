package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testenv"
)

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
