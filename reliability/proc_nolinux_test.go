//go:build !linux

package reliability

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

func pluginPIDs(int, string) []int { return nil }

func processAlive(int) bool { return false }
