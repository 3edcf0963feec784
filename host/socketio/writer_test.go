package socketio

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendFrameHeader(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tc := range tests {
		if got := appendFrameHeader(nil, tc.n); string(got) != string(tc.want) {
			t.Errorf("header(%d) = %x, want %x", tc.n, got, tc.want)
		}
	}
}

// burstFrames are frames of every header length class (7-bit, 16-bit and
// 64-bit lengths), numbered so that order and content can be checked.
func burstFrames(n int) [][]byte {
	sizes := []int{0, 100, 125, 126, 1000, 65535, 70000}
	out := make([][]byte, n)
	for i := range out {
		pad := strings.Repeat("x", sizes[i%len(sizes)])
		out[i] = EncodeEventRaw("n", []json.RawMessage{json.RawMessage(fmt.Sprint(i)), json.RawMessage(`"` + pad + `"`)})
	}
	return out
}

func TestBurstArrivesCompleteInOrder(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			h := newTestHandler()
			ts := newTestServer(t, h, Options{OutboundQueue: 100000})
			c, conn := ts.connect(t, h)
			frames := burstFrames(700)
			for _, f := range frames {
				var err error
				if batched {
					err = conn.SendBatched(f)
				} else {
					err = conn.Send(f)
				}
				if err != nil {
					t.Fatalf("send: %v", err)
				}
			}
			for i, want := range frames {
				if got := c.read(t); got != string(want) {
					t.Fatalf("frame %d: got %d bytes %.40q, want %d bytes %.40q", i, len(got), got, len(want), want)
				}
			}
			// Every frame was counted as written (open + connect + burst).
			deadline := time.Now().Add(wait)
			for counterValue(t, ts.s.m.framesOut) != float64(len(frames)+2) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if v := counterValue(t, ts.s.m.framesOut); v != float64(len(frames)+2) {
				t.Errorf("frames out = %v, want %d", v, len(frames)+2)
			}
			if p := conn.pending.Load(); p != 0 {
				t.Errorf("pending = %d after the burst was read", p)
			}
		})
	}
}

func TestConcurrentSendersKeepEachOrder(t *testing.T) {
	// Send and SendBatched from several goroutines: each goroutine's frames
	// arrive in its order, none lost.
	h := newTestHandler()
	ts := newTestServer(t, h, Options{OutboundQueue: 100000, BatchDelay: time.Millisecond})
	c, conn := ts.connect(t, h)
	const workers, per = 6, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				f := EncodeEventRaw("n", []json.RawMessage{json.RawMessage(fmt.Sprint(w)), json.RawMessage(fmt.Sprint(i))})
				send := conn.Send
				if (w+i)%2 == 0 {
					send = conn.SendBatched
				}
				if err := send(f); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	last := make(map[int]int)
	for range workers * per {
		var w, i int
		if _, err := fmt.Sscanf(c.read(t), `42["n",%d,%d]`, &w, &i); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[w]; ok && i != prev+1 || !ok && i != 0 {
			t.Fatalf("worker %d: %d after %d", w, i, prev)
		}
		last[w] = i
	}
}

// readNone fails if a frame (other than a ping) arrives within d.
func (c *testClient) readNone(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if f.data != "2" {
				t.Fatalf("frame %q arrived while batched frames should wait", f.data)
			}
		case <-timeout:
			return
		}
	}
}

// waitWriterIdle waits until no writer is scheduled or running for conn.
func waitWriterIdle(t *testing.T, conn *Conn) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		conn.wmu.Lock()
		idle := !conn.writing
		conn.wmu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writer still running")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatchedFramesWaitThenFollowSend(t *testing.T) {
	h := newTestHandler()
	// A delay far longer than the test: batched frames only go out when a
	// Send or a close pushes them.
	ts := newTestServer(t, h, Options{BatchDelay: time.Hour})
	c, conn := ts.connect(t, h)
	// The connect answer was just written, so batched frames wait — once its
	// writer has finished: the client may read the answer before the writer
	// saw its queue empty, and a frame queued meanwhile goes out with it.
	waitWriterIdle(t, conn)
	if err := conn.SendBatched([]byte(`42["a"]`)); err != nil {
		t.Fatal(err)
	}
	if err := conn.SendBatched([]byte(`42["b"]`)); err != nil {
		t.Fatal(err)
	}
	c.readNone(t, 100*time.Millisecond)
	if err := conn.Send([]byte(`42["direct"]`)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`42["a"]`, `42["b"]`, `42["direct"]`} {
		if got := c.read(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	// A close writes what waits before the close frame.
	if err := conn.SendBatched([]byte(`42["c"]`)); err != nil {
		t.Fatal(err)
	}
	conn.Close("bye")
	if got := c.read(t); got != `42["c"]` {
		t.Fatalf("got %q before the close", got)
	}
	if code := c.waitClosed(t); code != 1000 {
		t.Errorf("close code %d", code)
	}
}

func TestBatchedFrameWrittenAfterDelay(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{BatchDelay: 50 * time.Millisecond})
	c, conn := ts.connect(t, h)
	// Whether it waits or not (the last write may be older than the delay
	// on a slow machine), the batcher delivers it without another Send.
	if err := conn.SendBatched([]byte(`42["late"]`)); err != nil {
		t.Fatal(err)
	}
	if got := c.read(t); got != `42["late"]` {
		t.Fatalf("got %q", got)
	}
	// Idle long enough: the next batched frame does not wait for the batcher.
	time.Sleep(60 * time.Millisecond)
	if err := conn.SendBatched([]byte(`42["now"]`)); err != nil {
		t.Fatal(err)
	}
	conn.wmu.Lock()
	deferred := conn.deferred
	conn.wmu.Unlock()
	if deferred {
		t.Error("a frame to an idle connection was deferred")
	}
	if got := c.read(t); got != `42["now"]` {
		t.Fatalf("got %q", got)
	}
}

func TestSlowConsumerBatched(t *testing.T) {
	// The outbound queue bound holds for batched frames too.
	h := newTestHandler()
	ts := newTestServer(t, h, Options{OutboundQueue: 16, BatchDelay: time.Hour})
	nc := rawDial(t, ts) // never reads
	writeClientText(t, nc, `40`)
	conn := h.nextConnected(t)
	big := EncodeEventRaw("x", []json.RawMessage{json.RawMessage(`"` + strings.Repeat("a", 64<<10) + `"`)})
	var err error
	n := 0
	for ; n < 100000 && err == nil; n++ {
		if n%2 == 0 {
			err = conn.SendBatched(big)
		} else {
			err = conn.Send(big)
		}
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("send error %v after %d frames, want ErrSlowConsumer", err, n)
	}
	if r := h.nextDisconnect(t); r != ReasonSlowConsumer {
		t.Errorf("reason %q", r)
	}
	if err := conn.SendBatched(big); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
}

func TestInvalidUTF8FrameClosesAfterEarlierFrames(t *testing.T) {
	// gws refused to write a text frame that is not UTF-8 and closed the
	// connection; the batched writer does the same, after the frames queued
	// before it.
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, conn := ts.connect(t, h)
	_ = conn.Send([]byte(`42["ok"]`))
	_ = conn.Send([]byte("42[\"\xff\"]"))
	_ = conn.Send([]byte(`42["dropped"]`))
	if got := c.read(t); got != `42["ok"]` {
		t.Fatalf("got %q", got)
	}
	if code := c.waitClosed(t); code != closeGoingAway {
		t.Errorf("close code %d, want %d", code, closeGoingAway)
	}
	if r := h.nextDisconnect(t); r != ReasonTransportError {
		t.Errorf("reason %q", r)
	}
	select {
	case f := <-c.frames:
		t.Errorf("frame %q written after the bad one", f.data)
	default:
	}
}
