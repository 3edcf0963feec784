//go:build !linux

package reliability

import "syscall"

func pluginPIDs(int, string) []int { return nil }

// smallReceiveBuffer: elsewhere the slow consumer keeps the default buffer.
var smallReceiveBuffer func(network, address string, c syscall.RawConn) error
