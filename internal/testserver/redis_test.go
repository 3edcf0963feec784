package testserver

import (
	"strings"
	"testing"
	"time"
)

// A private redis-server answers, loses its data when killed, and starts
// again on the same port.
func TestRedis(t *testing.T) {
	r := StartRedis(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"SET", "k", "v"}, "+OK"},
		{[]string{"GET", "k"}, "$1\r\nv"},
	}
	for _, s := range steps {
		got, err := r.Do(s.args...)
		if err != nil || !strings.HasPrefix(got, s.want) {
			t.Fatalf("Do(%q) = %q, %v; want prefix %q", s.args, got, err, s.want)
		}
	}
	if !r.Kill(5 * time.Second) {
		t.Fatal("redis-server did not exit after SIGKILL")
	}
	if _, err := r.Do("PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Do("GET", "k"); err != nil || !strings.HasPrefix(got, "$-1") {
		t.Fatalf("GET after restart = %q, %v; want nil reply", got, err)
	}
}
