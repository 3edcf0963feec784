//go:build unix

// Package fileowner tells whether a file belongs to the user this process
// runs as, so that a file or directory planted by another user (in /tmp, say)
// is never trusted: dev keys, plugin socket directories.
package fileowner

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Mine returns nil when fi is owned by the current user, else an error
// naming both uids ("owned by uid 1001, not by the current user (uid 1000)").
func Mine(fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("owner unknown (%T)", fi.Sys())
	}
	if uid := os.Getuid(); int(st.Uid) != uid {
		return fmt.Errorf("owned by uid %d, not by the current user (uid %d)", st.Uid, uid)
	}
	return nil
}
