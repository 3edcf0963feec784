package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newEmbedded(t *testing.T) *Store {
	t.Helper()
	s, err := New(context.Background(), config.RedisConfig{Timeout: 2 * time.Second}, testLogger(t))
	if err != nil {
		t.Fatalf("New embedded: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newReal(t *testing.T) *Store {
	t.Helper()
	url := testenv.RedisURL(t)
	s, err := New(context.Background(), config.RedisConfig{URL: url, Timeout: 2 * time.Second}, testLogger(t))
	if err != nil {
		t.Fatalf("New %s: %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("real Redis not ready: %v", err)
	}
	return s
}

// prefix returns a random key prefix and deletes its keys when the test ends.
func prefix(t *testing.T, s *Store) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "rttest:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := s.Client().Keys(ctx, p+"*").Result()
		if err == nil && len(keys) > 0 {
			s.Client().Del(ctx, keys...)
		}
	})
	return p
}

// backends runs fn against the embedded store and the machine's Redis.
func backends(t *testing.T, fn func(t *testing.T, s *Store, p string)) {
	t.Run("embedded", func(t *testing.T) {
		s := newEmbedded(t)
		fn(t, s, prefix(t, s))
	})
	t.Run("redis", func(t *testing.T) {
		s := newReal(t)
		fn(t, s, prefix(t, s))
	})
}

func TestDo(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, p string) {
		ctx := context.Background()
		if _, err := s.Do(ctx, "SET", p+"str", "v"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Do(ctx, "SADD", p+"set", "a", "b"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			args    []any
			want    any
			wantErr error
			anyErr  bool
		}{
			{"status reply", []any{"SET", p + "k", "1"}, "OK", nil, false},
			{"bulk reply", []any{"GET", p + "str"}, "v", nil, false},
			{"integer reply", []any{"INCR", p + "counter"}, int64(1), nil, false},
			{"nil reply", []any{"GET", p + "missing"}, nil, sdk.ErrNil, false},
			{"array reply", []any{"SMISMEMBER", p + "set", "a", "z"}, []any{int64(1), int64(0)}, nil, false},
			{"empty array", []any{"SMEMBERS", p + "missing"}, []any{}, nil, false},
			{"wrong type", []any{"INCR", p + "set"}, nil, nil, true},
			{"unknown command", []any{"NOSUCHCMD"}, nil, nil, true},
			{"no args", nil, nil, nil, true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Do(ctx, tc.args...)
				switch {
				case tc.wantErr != nil:
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
					return
				case tc.anyErr:
					if err == nil {
						t.Fatalf("want an error, got %#v", got)
					}
					return
				case err != nil:
					t.Fatalf("unexpected err %v", err)
				}
				if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
					t.Fatalf("got %#v, want %#v", got, tc.want)
				}
			})
		}
		// SMEMBERS order is undefined: check through sdk.Strings.
		members, err := sdk.Strings(s.Do(ctx, "SMEMBERS", p+"set"))
		if err != nil || len(members) != 2 {
			t.Fatalf("SMEMBERS = %v, %v", members, err)
		}
	})
}

func TestPipeline(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, p string) {
		ctx := context.Background()
		replies, err := s.Pipeline(ctx, [][]any{
			{"SET", p + "a", "1"},
			{"INCRBY", p + "a", 41},
			{"GET", p + "nope"},
			{"HSET", p + "a", "f", "v"}, // WRONGTYPE
			{"GET", p + "a"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 5 {
			t.Fatalf("got %d replies", len(replies))
		}
		checks := []struct {
			i       int
			want    any
			wantErr error
			anyErr  bool
		}{
			{0, "OK", nil, false},
			{1, int64(42), nil, false},
			{2, nil, sdk.ErrNil, false},
			{3, nil, nil, true},
			{4, "42", nil, false},
		}
		for _, c := range checks {
			r := replies[c.i]
			switch {
			case c.wantErr != nil:
				if !errors.Is(r.Err, c.wantErr) {
					t.Errorf("reply %d: err %v, want %v", c.i, r.Err, c.wantErr)
				}
			case c.anyErr:
				if r.Err == nil {
					t.Errorf("reply %d: want error, got %#v", c.i, r.Value)
				}
			default:
				if r.Err != nil || r.Value != c.want {
					t.Errorf("reply %d: got %#v, %v; want %#v", c.i, r.Value, r.Err, c.want)
				}
			}
		}
		if _, err := s.Pipeline(ctx, [][]any{{"PING"}, {}}); err == nil {
			t.Error("empty command in a pipeline: want error")
		}
		if r, err := s.Pipeline(ctx, nil); err != nil || r != nil {
			t.Errorf("empty pipeline: %v, %v", r, err)
		}
	})
}

func TestEval(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, p string) {
		ctx := context.Background()
		// A random comment makes the script text (and SHA) new to the server,
		// so the first run goes through the NOSCRIPT fallback.
		script := "-- " + p + "\nredis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])"
		tests := []struct {
			name  string
			flush bool
			want  int64
		}{
			{"first run (NOSCRIPT -> EVAL)", false, 5},
			{"cached sha (EVALSHA)", false, 10},
			{"after SCRIPT FLUSH (NOSCRIPT -> EVAL)", true, 15},
		}
		for _, tc := range tests {
			if tc.flush && !s.Embedded() {
				// SCRIPT FLUSH on the shared Redis would disturb other
				// tests; TestRedisRestart covers a lost script cache there.
				continue
			}
			if tc.flush {
				if _, err := s.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
					t.Fatalf("SCRIPT FLUSH: %v", err)
				}
			}
			got, err := sdk.Int64(s.Eval(ctx, script, []string{p + "s", p + "n"}, "x", 5))
			if err != nil || got != tc.want {
				t.Fatalf("%s: got %d, %v; want %d", tc.name, got, err, tc.want)
			}
		}
		if _, err := s.Eval(ctx, "return nil", nil); !errors.Is(err, sdk.ErrNil) {
			t.Errorf("nil script reply: err %v, want ErrNil", err)
		}
		if _, err := s.Eval(ctx, "return redis.call('NOSUCH')", nil); err == nil {
			t.Error("script error: want error")
		}
		if _, err := s.Eval(ctx, "", nil); err == nil {
			t.Error("empty script: want error")
		}
		arr, err := s.Eval(ctx, "return {1, 'two'}", nil)
		if err != nil || fmt.Sprintf("%#v", arr) != fmt.Sprintf("%#v", []any{int64(1), "two"}) {
			t.Errorf("array reply: %#v, %v", arr, err)
		}
	})
}

// TestTTLExpiresInRealTime checks that keys with a TTL disappear without
// anyone moving a clock by hand (the embedded server's ClockTTL mode). It
// polls with a generous deadline: this is a correctness check, not a timing
// assertion.
func TestTTLExpiresInRealTime(t *testing.T) {
	backends(t, func(t *testing.T, s *Store, p string) {
		ctx := context.Background()
		cases := []struct {
			name string
			set  [][]any
		}{
			{"PEXPIRE", [][]any{{"SET", p + "a", "v"}, {"PEXPIRE", p + "a", 300}}},
			{"SET PX", [][]any{{"SET", p + "a", "v", "PX", 300}}},
			{"EXPIRE on a hash", [][]any{{"HSET", p + "a", "f", "v"}, {"EXPIRE", p + "a", 1}}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				for _, c := range tc.set {
					if _, err := s.Do(ctx, c...); err != nil {
						t.Fatal(err)
					}
				}
				if n, err := sdk.Int64(s.Do(ctx, "EXISTS", p+"a")); err != nil || n != 1 {
					t.Fatalf("EXISTS right after set = %d, %v", n, err)
				}
				deadline := time.Now().Add(15 * time.Second)
				for {
					n, err := sdk.Int64(s.Do(ctx, "EXISTS", p+"a"))
					if err != nil {
						t.Fatal(err)
					}
					if n == 0 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatal("key with a TTL never expired")
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
	})
}

func TestNewWithRedisDown(t *testing.T) {
	port := testenv.FreePort(t)
	s, err := New(context.Background(), config.RedisConfig{URL: "redis://127.0.0.1:" + strconv.Itoa(port) + "/0", Timeout: time.Second}, testLogger(t))
	if err != nil {
		t.Fatalf("New must not fail when Redis is down: %v", err)
	}
	defer s.Close()
	if s.Embedded() {
		t.Error("Embedded() = true for a URL")
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Error("Ready() = nil with no server")
	}
	if _, err := s.Do(context.Background(), "PING"); err == nil {
		t.Error("Do with no server: want error")
	}
}

func TestNewBadURL(t *testing.T) {
	for _, u := range []string{"http://x", "redis://user:secret@host:notaport", "::::"} {
		s, err := New(context.Background(), config.RedisConfig{URL: u}, nil)
		if err == nil {
			s.Close()
			t.Errorf("New(%q): want error", u)
			continue
		}
		if u == "redis://user:secret@host:notaport" && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestEmbeddedAndClose(t *testing.T) {
	s := newEmbedded(t)
	if !s.Embedded() {
		t.Fatal("Embedded() = false")
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Error("Ready after Close = nil")
	}
}

func TestMetrics(t *testing.T) {
	s := newEmbedded(t)
	reg := prometheus.NewPedanticRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Do(context.Background(), "NOSUCHCMD")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				got[name] = m.GetCounter().GetValue()
			}
		}
	}
	if got["realtime_store_up"] != 1 {
		t.Errorf("realtime_store_up = %v, want 1 (%v)", got["realtime_store_up"], got)
	}
	if got["realtime_store_errors_total{kind=command}"] != 1 {
		t.Errorf("command errors = %v, want 1 (%v)", got["realtime_store_errors_total{kind=command}"], got)
	}
	if err := s.RegisterMetrics(reg); err == nil {
		t.Error("registering twice: want error")
	}
}

// startRedis runs a throwaway redis-server on port and waits until it answers.
func startRedis(t *testing.T, bin string, port int) *exec.Cmd {
	t.Helper()
	return startRedisArgs(t, bin, port, "--port", strconv.Itoa(port))
}

// startRedisArgs starts redis-server with args and waits until port accepts
// TCP connections.
func startRedisArgs(t *testing.T, bin string, port int, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d never came up", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisRestart kills the server under a live Store and brings it back: the
// Store reports errors (bounded in time), Ready reports down, and the same
// Store works again after the restart, including Eval (whose script cache the
// restart wiped).
func TestRedisRestart(t *testing.T) {
	bin := testenv.RedisServerBinary(t)
	port := testenv.FreePort(t)
	srv := startRedis(t, bin, port)

	s, err := New(context.Background(), config.RedisConfig{URL: "redis://127.0.0.1:" + strconv.Itoa(port) + "/0", Timeout: time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const script = "return redis.call('INCR', KEYS[1])"
	if _, err := s.Do(ctx, "SET", "k", "before"); err != nil {
		t.Fatalf("SET before kill: %v", err)
	}
	if _, err := s.Eval(ctx, script, []string{"n"}); err != nil {
		t.Fatalf("Eval before kill: %v", err)
	}

	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The command must fail, not hang: the context bounds the test if the
	// store misbehaves.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = s.Do(dctx, "GET", "k")
	guardHit := dctx.Err() != nil
	cancel()
	if err == nil {
		t.Fatal("Do after SIGKILL: want error")
	}
	if guardHit {
		t.Fatalf("Do after SIGKILL did not return before the 30 s guard: %v", err)
	}
	// Without a deadline from the caller the store bounds the call itself.
	if _, err := s.Do(context.Background(), "GET", "k"); err == nil {
		t.Fatal("Do (no caller deadline) after SIGKILL: want error")
	}
	if err := s.Ready(ctx); err == nil {
		t.Fatal("Ready after SIGKILL = nil")
	}

	startRedis(t, bin, port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Do(ctx, "SET", "k", "after")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store never recovered after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready after restart: %v", err)
	}
	if v, err := sdk.String(s.Do(ctx, "GET", "k")); err != nil || v != "after" {
		t.Fatalf("GET after restart = %q, %v", v, err)
	}
	if n, err := sdk.Int64(s.Eval(ctx, script, []string{"n"})); err != nil || n != 1 {
		t.Fatalf("Eval after restart (NOSCRIPT fallback) = %d, %v; want 1", n, err)
	}
}
