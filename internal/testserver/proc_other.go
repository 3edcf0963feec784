//go:build !unix

package testserver

import (
	"os/exec"
	"time"
)

// SetProcessGroup does nothing on platforms without process groups.
func SetProcessGroup(*exec.Cmd) {}

// KillProcessGroup kills cmd's process.
func KillProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

// WaitProcessGroupGone reports no leftovers (they cannot be found here).
func WaitProcessGroupGone(*exec.Cmd, time.Duration) bool { return false }

// KilledBySIGKILL reports whether the exited cmd was killed (any kill on
// platforms without signals).
func KilledBySIGKILL(cmd *exec.Cmd) bool { return cmd.ProcessState.ExitCode() == -1 }
