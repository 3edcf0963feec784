//go:build !unix

package e2e

import (
	"os/exec"
	"time"
)

func setProcessGroup(*exec.Cmd) {}

func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func waitProcessGroupGone(*exec.Cmd, time.Duration) bool { return false }

// killedBySIGKILL reports whether the exited cmd was killed (any kill on
// platforms without signals).
func killedBySIGKILL(cmd *exec.Cmd) bool { return cmd.ProcessState.ExitCode() == -1 }
