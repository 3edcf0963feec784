//go:build unix

package testserver

import (
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// SetProcessGroup puts cmd (and the processes it starts, e.g. plugins) in a
// process group of its own, so that leftovers can be found and killed.
func SetProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// KillProcessGroup sends SIGKILL to the whole group of cmd.
func KillProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// WaitProcessGroupGone waits up to d for every process of cmd's group to be
// gone, and reports whether some are still there.
func WaitProcessGroupGone(cmd *exec.Cmd, d time.Duration) (leftovers bool) {
	if cmd.Process == nil {
		return false
	}
	deadline := time.Now().Add(d)
	for {
		if err := syscall.Kill(-cmd.Process.Pid, 0); errors.Is(err, syscall.ESRCH) {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// KilledBySIGKILL reports whether the exited cmd was killed by SIGKILL.
func KilledBySIGKILL(cmd *exec.Cmd) bool {
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
