package sdk_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// A plugin launched without TLS keeps both sockets (its listener and the
// host's broker) in a 0700 directory below SocketDir while it runs; Kill
// removes that directory.
func TestLaunchSocketsInPrivateDir(t *testing.T) {
	base, err := os.MkdirTemp("", "sdk") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	p, err := sdk.Launch(sdk.LaunchConfig{Builtin: "batchtest", SocketDir: base})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p.PID <= 0 || p.PID == os.Getpid() {
		t.Errorf("PID = %d", p.PID)
	}
	if _, err := p.Client.Describe(ctx); err != nil {
		t.Fatalf("Describe over the socket: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(base, "plugin-dir*"))
	if len(dirs) != 1 {
		t.Fatalf("process directories under %s: %v, want one", base, dirs)
	}
	if fi, err := os.Stat(dirs[0]); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, %v; want mode 0700", dirs[0], fi, err)
	}
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	if err := p.Client.Start(ctx, h.Services(), []byte("{}")); err != nil { // serves the host services: the host's socket
		t.Fatalf("Start: %v", err)
	}
	entries, _ := os.ReadDir(dirs[0])
	sockets := 0
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 {
			sockets++
		}
	}
	if sockets < 2 {
		t.Errorf("%s holds %v; want the plugin's and the host's sockets", dirs[0], entries)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirs[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s after Kill: %v, want it gone", dirs[0], err)
	}
}

func TestLaunchRefusesSocketDir(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("d", sdk.MaxSocketDirLen))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{open, "want no group/other permissions"},
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
		{long, "too long"},
	} {
		p, err := sdk.Launch(sdk.LaunchConfig{Builtin: "batchtest", SocketDir: tc.dir})
		if err == nil {
			_ = p.Kill(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Launch(SocketDir %s) = %v, want an error with %q", tc.dir, err, tc.want)
		}
	}
}
