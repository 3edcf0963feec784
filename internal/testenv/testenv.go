// Package testenv finds the real services that integration tests need (Redis,
// RabbitMQ, node). A missing service skips the test with a clear message,
// except under CI=true, where it fails: CI must never pass by skipping.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips the test, or fails it under CI=true.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI=true: "+format, args...)
	}
	t.Skipf("skipping integration test: "+format, args...)
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// RedisURL returns the URL of the machine's Redis (env TEST_REDIS_URL, default
// redis://127.0.0.1:6379/0), or skips/fails when it is not running.
func RedisURL(t testing.TB) string {
	t.Helper()
	addr := envOr("TEST_REDIS_ADDR", "127.0.0.1:6379")
	if !reachable(addr) {
		Unavailable(t, "no Redis at %s (start redis-server or set TEST_REDIS_ADDR)", addr)
	}
	return "redis://" + addr + "/0"
}

// AMQPURL returns the URL of the machine's RabbitMQ (env TEST_AMQP_URL, default
// amqp://guest:guest@127.0.0.1:5672/), or skips/fails when it is not running.
func AMQPURL(t testing.TB) string {
	t.Helper()
	addr := envOr("TEST_AMQP_ADDR", "127.0.0.1:5672")
	if !reachable(addr) {
		Unavailable(t, "no RabbitMQ at %s (start rabbitmq-server or set TEST_AMQP_ADDR)", addr)
	}
	return envOr("TEST_AMQP_URL", "amqp://guest:guest@"+addr+"/")
}

// RedisServerBinary returns the path of redis-server, for fault tests that run
// their own server, or skips/fails when it is not installed.
func RedisServerBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server is not installed")
	}
	return p
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
