package pluginhost

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// The plugins' unix sockets (theirs and the host's broker socket) live in
// one 0700 directory of the Manager's while they run, and Stop removes it:
// that directory is what stands in for TLS.
func TestSocketDirPrivateAndRemoved(t *testing.T) {
	tmp := shortTempDir(t)
	t.Setenv("TMPDIR", tmp) // where the directory is made
	svc := newFakeServices(t)
	m := newManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: ModeSubprocess}}, svc, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = m.Stop(context.Background())
		}
	})

	dir := m.sockDir()
	if filepath.Dir(dir) != tmp {
		t.Fatalf("socket directory %q while a subprocess plugin runs, want one in $TMPDIR %s", dir, tmp)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory %s: mode %v, want a directory with 0700", dir, fi.Mode())
	}
	// The plugin still works over the sockets in it.
	s := sdktest.Socket("s1", "u1")
	m.Connect(s)
	ack, err := sendEvent(t, m, s, "ptest.pid")
	pid := statusOf(m, "ptest").PID
	if err != nil || len(ack) != 1 || pid == 0 || pid == os.Getpid() || string(ack[0]) != strconv.Itoa(pid) {
		t.Fatalf("ptest.pid = %s, %v: want the plugin process's pid %d", ack, err, pid)
	}
	// Both ends' sockets are below it: the plugin's listener and the host's
	// broker listener (host services).
	var sockets []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSocket != 0 {
			sockets = append(sockets, path)
		}
		if d.IsDir() {
			if fi, err := d.Info(); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v (%v), want 0700", path, fi.Mode(), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sockets) < 2 {
		t.Errorf("sockets under %s: %v; want the plugin's and the host's", dir, sockets)
	}

	stopped = true
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket directory %s after Stop: %v, want it gone", dir, err)
	}
	if d := m.sockDir(); d != "" {
		t.Errorf("sockDir() after Stop = %q", d)
	}
}

// A Start that fails (here: two plugins claim one route) removes it too.
func TestSocketDirRemovedWhenStartFails(t *testing.T) {
	tmp := shortTempDir(t)
	t.Setenv("TMPDIR", tmp)
	m := newManager(t, map[string]config.PluginConfig{
		"ptest":  {Enabled: true, Mode: ModeSubprocess},
		"ptest3": {Enabled: true, Mode: ModeSubprocess},
	}, newFakeServices(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err == nil || !strings.Contains(err.Error(), "conflicts with route") {
		_ = m.Stop(ctx)
		t.Fatalf("Start = %v, want the route conflict", err)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("$TMPDIR after the failed Start: %v, %v; want it empty", left, err)
	}
}

// Without subprocess plugins there is nothing to hide.
func TestSocketDirNotMadeInProcess(t *testing.T) {
	m := startManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: ModeInProcess}}, newFakeServices(t), nil)
	if d := m.sockDir(); d != "" {
		t.Errorf("sockDir() = %q with only in-process plugins", d)
	}
}

// shortTempDir is an empty directory with a path short enough for unix
// sockets two levels below it (t.TempDir's, named after the test, is not).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ph")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// A host killed without Stop leaves its directory; the next Start removes
// the directories of hosts that no longer run, and only those.
func TestStaleSocketDirsRemoved(t *testing.T) {
	tmp := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Process.Kill(); _ = live.Wait() }()
	names := map[string]bool{ // name -> should survive
		socketDirPrefix + strconv.Itoa(dead.Process.Pid) + "-1": false,
		socketDirPrefix + strconv.Itoa(live.Process.Pid) + "-2": true,
		socketDirPrefix + strconv.Itoa(os.Getpid()) + "-3":      true,
		socketDirPrefix + "notapid-4":                           true,
		"other-" + strconv.Itoa(dead.Process.Pid) + "-5":        true,
	}
	for name := range names {
		if err := os.MkdirAll(filepath.Join(tmp, name, "plugin-dir1"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleSocketDirs(tmp, slog.New(slog.DiscardHandler))
	for name, survive := range names {
		_, err := os.Stat(filepath.Join(tmp, name))
		if exists := err == nil; exists != survive {
			t.Errorf("%s: exists %v, want %v", name, exists, survive)
		}
	}
}
