package auth

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clowdr/realtime/host/config"
)

func TestDevModeCreatesOnceAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg", "realtime")
	path := filepath.Join(dir, "dev-jwks.json")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	v1, err := New(config.AuthConfig{DevKeyFile: path}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v1.Close()
	if v1.Mode() != ModeDev || !v1.CanSign() || v1.Ready() != nil {
		t.Fatalf("mode %q canSign %v ready %v", v1.Mode(), v1.CanSign(), v1.Ready())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "NOTHING IS SECURE") {
		t.Fatalf("no loud dev-mode warning in logs: %s", logs.String())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode = %v, want 0700", di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want only the key file (temp file left?)", len(entries))
	}

	v2, err := New(config.AuthConfig{DevKeyFile: path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if v1.local[0].kid == "" || v1.local[0].kid != v2.local[0].kid {
		t.Fatalf("kid changed between loads: %q vs %q", v1.local[0].kid, v2.local[0].kid)
	}
	tok, err := v1.Sign("dev-user", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v2.Verify(context.Background(), payload(tok))
	if err != nil || id.UserID != "dev-user" {
		t.Fatalf("round trip: %+v, %v", id, err)
	}
}

func TestDevKeySetConcurrentFirstUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev.json")
	const n = 6
	out := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = DevKeySet(path)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(out[i], out[0]) {
			t.Fatalf("caller %d got a different key set", i)
		}
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(onDisk, out[0]) {
		t.Fatalf("file differs from the returned key set (%v)", err)
	}
}

func TestDevModeDefaultAndFallbackPaths(t *testing.T) {
	t.Run("XDG_CONFIG_HOME", func(t *testing.T) {
		xdg := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", xdg)
		v, err := New(config.AuthConfig{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if _, err := os.Stat(filepath.Join(xdg, "realtime", "dev-jwks.json")); err != nil {
			t.Fatalf("dev key file not at the default path: %v", err)
		}
	})
	t.Run("unwritable config dir falls back to the temp dir", func(t *testing.T) {
		notADir := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", notADir)
		t.Setenv("TMPDIR", tmp)
		v, err := New(config.AuthConfig{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if _, err := os.Stat(filepath.Join(tmp, "realtime-dev-jwks.json")); err != nil {
			t.Fatalf("dev key file not in the temp dir: %v", err)
		}
	})
}

func TestDevKeySetRejectsBadFiles(t *testing.T) {
	pubOnly := keySetJSON(t, pubJWK("t", "t"))
	cases := []struct {
		name    string
		content string
	}{
		{"not JSON", "garbage"},
		{"no keys", `{"keys":[]}`},
		{"public key only", pubOnly},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dev.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := DevKeySet(path); err == nil {
				t.Fatal("DevKeySet accepted a bad file")
			}
			if _, err := New(config.AuthConfig{DevKeyFile: path}, nil, nil); err == nil {
				t.Fatal("New accepted a bad dev key file")
			}
			got, _ := os.ReadFile(path)
			if string(got) != tc.content {
				t.Fatal("bad file was overwritten")
			}
		})
	}
	if _, err := DevKeySet(""); err == nil {
		t.Fatal("empty path accepted")
	}
}

func TestDevKeySetPermissionsAndOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev.json")
	if _, err := DevKeySet(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DevKeySet(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("loose mode not tightened: %v", fi.Mode().Perm())
	}
	if os.Getuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	if err := os.Chown(path, 4242, 4242); err != nil {
		t.Skipf("chown: %v", err)
	}
	if _, err := DevKeySet(path); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Fatalf("file of another user accepted: %v", err)
	}
}
