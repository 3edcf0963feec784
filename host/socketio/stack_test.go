//go:build !race

// The race detector instruments every frame, so stack sizes differ under
// it: this test is built only without it, and .ci/run runs it in a second,
// race-free step.

package socketio

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// deepStack uses about n×300 bytes of stack, like a token check or a
// plugin call does.
func deepStack(n int) int {
	var buf [256]byte
	buf[n%len(buf)] = byte(n)
	if n == 0 {
		return int(buf[0])
	}
	return deepStack(n-1) + int(buf[n%len(buf)])
}

type deepHandler struct{ connected, events chan struct{} }

func (h *deepHandler) Authenticate(context.Context, *Conn, json.RawMessage) error {
	deepStack(40)
	return nil
}
func (h *deepHandler) OnConnected(*Conn) { h.connected <- struct{}{} }
func (h *deepHandler) OnEvent(*Conn, string, []json.RawMessage, int64) {
	deepStack(40)
	h.events <- struct{}{}
}
func (h *deepHandler) OnDisconnect(*Conn, string) {}

// TestIdleConnStack checks that an idle connection's read goroutine keeps a
// 2 KiB stack after a CONNECT and an event whose handlers need ~12 KiB
// (handle): run on the read goroutine they left it at 4 KiB or more. It runs
// in a child process with GODEBUG=adaptivestackstart=0, so that goroutines
// start at 2 KiB whatever the stacks the GC saw before.
func TestIdleConnStack(t *testing.T) {
	if os.Getenv("SOCKETIO_STACK_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnStack$", "-test.v")
		cmd.Env = append(os.Environ(), "SOCKETIO_STACK_CHILD=1", "GODEBUG=adaptivestackstart=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		t.Logf("child:\n%s", out)
		return
	}
	h := &deepHandler{connected: make(chan struct{}, 1), events: make(chan struct{}, 1)}
	s := NewServer(h, Options{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	const n = 500
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"+
			"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(c)
		for { // the 101 response; frames are written only after it
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == "\r\n" {
				break
			}
		}
		_, _ = c.Write(maskedText(`40{"token":"t"}`))
		<-h.connected
		_, _ = c.Write(maskedText(`42["enterPage","/p/1"]`))
		<-h.events
	}
	runtime.GC()
	runtime.GC() // stacks shrink at GC: let them
	runtime.ReadMemStats(&m1)
	perConn := (int64(m1.StackInuse) - int64(m0.StackInuse)) / n
	t.Logf("stack in use per idle connection: %d bytes", perConn)
	if perConn >= 3<<10 {
		t.Errorf("stack per idle connection %d bytes, want about 2 KiB", perConn)
	}
}

// maskedText is a client text frame (masked, payload < 126 bytes).
func maskedText(s string) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(s)), key[0], key[1], key[2], key[3]}
	for i := range len(s) {
		b = append(b, s[i]^key[i%4])
	}
	return b
}
