package kit

import (
	"crypto/rand"
	"encoding/hex"
)

// RandomHex returns 16 random hex digits (8 bytes from crypto/rand): an id
// for a batch, a claim or a process that must not collide with another's.
func RandomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
