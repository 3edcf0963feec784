//go:build unix

package fileowner

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// foreign is fi with another owner.
type foreign struct {
	fs.FileInfo
	st syscall.Stat_t
}

func (f foreign) Sys() any { return &f.st }

type noSys struct{ fs.FileInfo }

func (noSys) Sys() any { return nil }

func TestMine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := Mine(fi); err != nil {
		t.Fatalf("own file: %v", err)
	}
	other := foreign{FileInfo: fi}
	other.st.Uid = uint32(os.Getuid() + 4242)
	if err := Mine(other); err == nil || !strings.Contains(err.Error(), "owned by uid") {
		t.Fatalf("another user's file: %v", err)
	}
	if err := Mine(noSys{fi}); err == nil {
		t.Fatal("a file of unknown owner was trusted")
	}
}
