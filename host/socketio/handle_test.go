package socketio

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Handler calls now run on short-lived goroutines (handle): they must still
// come one at a time, Authenticate and OnConnected before any event sent
// right behind the CONNECT, and the events in order.
func TestHandlerCallsSerialAfterConnect(t *testing.T) {
	h := newTestHandler()
	var active atomic.Int32
	var mu sync.Mutex
	var calls []string
	record := func(name string) {
		if active.Add(1) != 1 {
			t.Errorf("%s overlaps another handler call", name)
		}
		runtime.Gosched() // give an overlapping call a chance to show
		mu.Lock()
		calls = append(calls, name)
		mu.Unlock()
		active.Add(-1)
	}
	release := make(chan struct{})
	h.auth = func(context.Context, *Conn, json.RawMessage) error {
		<-release
		record("auth")
		return nil
	}
	h.onEvent = func(_ *Conn, name string, _ []json.RawMessage, _ int64) { record(name) }
	ts := newTestServer(t, h, Options{})
	c, _ := ts.open(t)
	c.send(t, `40{"token":"t"}`)
	const n = 50
	for i := range n {
		c.send(t, fmt.Sprintf(`42["e%d"]`, i))
	}
	close(release)
	conn := h.nextConnected(t)
	for range n {
		h.nextEvent(t)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != n+1 || calls[0] != "auth" {
		t.Fatalf("calls = %v", calls)
	}
	for i := range n {
		if calls[i+1] != fmt.Sprintf("e%d", i) {
			t.Fatalf("call %d = %q, want e%d (calls %v)", i+1, calls[i+1], i, calls)
		}
	}
	if !conn.Connected() {
		t.Error("not connected")
	}
}

// A client that goes away while Authenticate runs: once it returns, the
// connection is closed and forgotten, and a socket that was accepted gets
// its OnDisconnect.
func TestCloseDuringAuthenticate(t *testing.T) {
	for _, accept := range []bool{true, false} {
		t.Run(fmt.Sprint("accept=", accept), func(t *testing.T) {
			h := newTestHandler()
			entered, release := make(chan struct{}), make(chan struct{})
			h.auth = func(context.Context, *Conn, json.RawMessage) error {
				close(entered)
				<-release
				if accept {
					return nil
				}
				return &ConnectError{Message: "no"}
			}
			ts := newTestServer(t, h, Options{})
			c, _ := ts.open(t)
			c.send(t, `40{"token":"t"}`)
			<-entered
			_ = c.ws.NetConn().Close()
			close(release)
			if accept {
				if r := h.nextDisconnect(t); r != ReasonTransportClose && r != ReasonTransportError {
					t.Errorf("disconnect reason %q", r)
				}
			}
			deadline := time.Now().Add(wait) // a hang guard, not a timing assertion
			for ts.s.Count() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections still registered", ts.s.Count())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if !accept {
				select {
				case r := <-h.discon:
					t.Errorf("OnDisconnect(%q) for a refused socket", r)
				default:
				}
			}
		})
	}
}
