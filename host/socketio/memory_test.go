package socketio

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// Every idle connection keeps a Conn: it was trimmed from 208 to 160 bytes
// (a malloc size class), and a new field should be a deliberate choice.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 160 {
		t.Fatalf("Conn is %d bytes, want at most 160 (see the Memory note on Conn)", n)
	}
}

// clientFrame is a masked client text frame of any length below 64 KiB.
func clientFrame(s string) []byte {
	key := [4]byte{7, 1, 9, 3}
	var b []byte
	if len(s) < 126 {
		b = []byte{0x81, 0x80 | byte(len(s))}
	} else {
		b = binary.BigEndian.AppendUint16([]byte{0x81, 0x80 | 126}, uint16(len(s)))
	}
	b = append(b, key[:]...)
	for i := range len(s) {
		b = append(b, s[i]^key[i%4])
	}
	return b
}

// The read buffer (readBufferSize) is smaller than some frames: frames
// shorter than, as long as and longer than it, written back to back in one
// TCP write so that frames straddle buffer fills, all arrive whole and in
// order.
func TestFramesAroundReadBufferSize(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	nc := rawDial(t, ts)
	writeClientText(t, nc, `40{"token":"t"}`)
	h.nextConnected(t)

	var sizes []int
	for _, base := range []int{1, readBufferSize / 2, readBufferSize, 2 * readBufferSize, 5 * readBufferSize} {
		for _, d := range []int{-20, -1, 0, 1, 17} {
			if n := base + d; n > 0 {
				sizes = append(sizes, n)
			}
		}
	}
	var wire []byte
	for i, n := range sizes {
		wire = append(wire, clientFrame(fmt.Sprintf(`42["e%d","%s"]`, i, strings.Repeat("x", n)))...)
	}
	if _, err := nc.Write(wire); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		ev := h.nextEvent(t)
		if want := fmt.Sprint("e", i); ev.name != want {
			t.Fatalf("event %d: name %q, want %q", i, ev.name, want)
		}
		var arg string
		if len(ev.args) != 1 || json.Unmarshal(ev.args[0], &arg) != nil || arg != strings.Repeat("x", n) {
			t.Fatalf("event %d: payload of %d bytes mangled: %d args", i, n, len(ev.args))
		}
	}
}
