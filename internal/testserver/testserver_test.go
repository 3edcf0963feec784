package testserver

import (
	"crypto/rsa"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{name: "fits", max: 10, writes: []string{"ab", "cd"}, want: "abcd"},
		{name: "drops oldest", max: 4, writes: []string{"abc", "def"}, want: "[2 earlier bytes dropped]\ncdef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTailBuffer(tt.max)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCountLines(t *testing.T) {
	b := NewTailBuffer(1 << 10)
	_, _ = b.Write([]byte("level=ERROR plugin=presence x\nlevel=WARN plugin=presence\nlevel=ERROR plugin=chat\n"))
	tests := []struct {
		subs []string
		want int
	}{
		{[]string{"level=ERROR"}, 2},
		{[]string{"plugin=presence", "level=ERROR"}, 1},
		{[]string{"panic"}, 0},
	}
	for _, tt := range tests {
		if got := b.CountLines(tt.subs...); got != tt.want {
			t.Errorf("CountLines(%q) = %d, want %d", tt.subs, got, tt.want)
		}
	}
}

func TestCleanEnv(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://leak")
	t.Setenv("RT_PORT", "1")
	t.Setenv("SERVER_URL", "http://leak")
	t.Setenv("TESTSERVER_KEEP", "yes")
	env := CleanEnv(map[string]string{"TEST_JWKS": "x"}, "SERVER_URL")
	for _, kv := range []string{"REDIS_URL=redis://leak", "RT_PORT=1", "SERVER_URL=http://leak"} {
		if slices.Contains(env, kv) {
			t.Errorf("CleanEnv kept %s", kv)
		}
	}
	for _, kv := range []string{"TESTSERVER_KEEP=yes", "TEST_JWKS=x"} {
		if !slices.Contains(env, kv) {
			t.Errorf("CleanEnv lacks %s", kv)
		}
	}
}

func TestKeys(t *testing.T) {
	key, kid, err := NewKey("tst")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(kid, "tst-") || len(kid) != len("tst-")+16 {
		t.Errorf("kid %q", kid)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal([]byte(JWKSJSON(map[string]*rsa.PrivateKey{kid: key})), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != kid || set.Keys[0]["d"] != "" {
		t.Errorf("JWKS %v: want one public key %s", set.Keys, kid)
	}
	priv, err := PrivateJWKJSON(kid, key)
	if err != nil {
		t.Fatal(err)
	}
	var jwk map[string]string
	if err := json.Unmarshal([]byte(priv), &jwk); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"n", "e", "d", "p", "q", "dp", "dq", "qi"} {
		if jwk[f] == "" {
			t.Errorf("private JWK lacks %s", f)
		}
	}
}

func TestPresenceArgs(t *testing.T) {
	got := PresenceArgs(3*time.Second, time.Second, 500*time.Millisecond)
	want := []string{
		"--set", "plugins.presence.config.window=3s",
		"--set", "plugins.presence.config.refresh_interval=1s",
		"--set", "plugins.presence.config.sweep_interval=500ms",
	}
	if !slices.Equal(got, want) {
		t.Errorf("PresenceArgs = %q, want %q", got, want)
	}
}

func TestWaitClosed(t *testing.T) {
	open, closed := make(chan struct{}), make(chan struct{})
	close(closed)
	if Closed(open) || !Closed(closed) {
		t.Errorf("Closed: open %v, closed %v", Closed(open), Closed(closed))
	}
	if WaitClosed(open, time.Millisecond) || !WaitClosed(closed, time.Hour) {
		t.Errorf("WaitClosed wrong")
	}
}
