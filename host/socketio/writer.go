package socketio

import (
	"container/heap"
	"encoding/binary"
	"sync"
	"time"
	"unicode/utf8"
)

// The outbound path. gws's WriteAsync costs, per frame, a closure, a queue
// push, a goroutine start when the connection's writer is idle, and one
// write syscall; a room emit to 1,000 sockets was 1,000 goroutine wakeups and
// 1,000 syscalls per message, and every frame cost the client one read. So
// each Conn keeps its own queue: Send appends under a small mutex and wakes
// the writer (one gws Async job, which gws runs one at a time per
// connection) only when none is scheduled; the writer takes everything
// queued, frames it into one buffer, writes it with one syscall and repeats
// until the queue is empty. Idle, a frame is written at once (no timer);
// under load frames pile up while the writer runs, so batches grow by
// themselves and the syscalls per frame fall.
//
// Frames are built here rather than by gws (server frames are unmasked: a
// header and the payload). This assumes permessage-deflate is off, which
// NewServer guarantees by not enabling it. gws's own writes (pong, close
// frames) go to the same net.Conn; a net.Conn Write is atomic, and each of
// ours holds whole frames, so frames never interleave. Close frames queued
// by closeWith run as a gws Async job after the writer's, so they follow
// every frame queued before them.

const (
	// writeChunk: the writer writes when its buffer passes this many bytes,
	// so a long queue of large frames is not copied into one huge buffer.
	writeChunk = 64 << 10
	// maxPooledBuffer: larger write buffers are not kept for reuse.
	maxPooledBuffer = 256 << 10
	// maxPooledQueue: larger queue slices are not kept for reuse.
	maxPooledQueue = 1024
	// maxFramePayload is the largest frame written (gws's default
	// WriteMaxPayloadSize, which the old path enforced).
	maxFramePayload = 16 << 20
	// opText|FIN: the first byte of an unfragmented text frame.
	finText = 0x81
	// closeGoingAway is the code gws closed with when a frame could not be
	// written.
	closeGoingAway uint16 = 1001
)

// frameQueue is a batch of frames waiting for the writer. Queues are pooled:
// an idle connection holds none.
type frameQueue struct{ frames [][]byte }

var (
	queuePool = sync.Pool{New: func() any { return &frameQueue{frames: make([][]byte, 0, 8)} }}
	bufPool   = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// push queues a frame (pending was already counted) and wakes the writer if
// it is not scheduled. A batched frame on a connection that wrote within the
// batch delay leaves the wake-up to the batcher instead.
func (c *Conn) push(frame []byte, batched bool) {
	c.wmu.Lock()
	if c.wq == nil {
		c.wq = queuePool.Get().(*frameQueue)
	}
	c.wq.frames = append(c.wq.frames, frame)
	if c.writing || batched && c.deferred {
		c.wmu.Unlock()
		return
	}
	if b := c.s.batch; batched && b != nil {
		if due := c.lastWrite.Load() + int64(b.delay); due > c.s.now() {
			c.deferred = true
			c.wmu.Unlock()
			b.add(c, due)
			return
		}
	}
	c.writing = true
	c.deferred = false // the batcher's entry will find the writer scheduled
	c.wmu.Unlock()
	c.ws.Async(c.flushFn)
}

// flushDeferred is the batcher's wake-up of a deferred connection.
func (c *Conn) flushDeferred() {
	c.wmu.Lock()
	if !c.deferred || c.writing {
		c.wmu.Unlock()
		return
	}
	c.deferred = false
	c.writing = true
	c.wmu.Unlock()
	c.ws.Async(c.flushFn)
}

// flush is the writer: it writes whatever is queued, in order, until the
// queue is empty. gws runs it as an Async job, never two at once for a
// connection, which is what keeps frames in order.
func (c *Conn) flush() {
	for {
		c.wmu.Lock()
		q := c.wq
		c.wq = nil
		if q == nil {
			c.writing = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
		c.writeFrames(q.frames)
		n := len(q.frames)
		if cap(q.frames) <= maxPooledQueue {
			clear(q.frames) // drop the frame references
			q.frames = q.frames[:0]
			queuePool.Put(q)
		}
		c.pending.Add(-int64(n))
	}
}

// writeFrames frames and writes a batch with as few writes as possible.
// After a write error (or a bad frame) it drops every frame: the connection
// is closing.
func (c *Conn) writeFrames(frames [][]byte) {
	if c.werr {
		return
	}
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	inBuf := 0 // frames in buf
	for _, f := range frames {
		if len(f) > maxFramePayload || !utf8.Valid(f) {
			c.write(buf, inBuf)
			if !c.werr {
				c.werr = true
				c.s.log.Error("socketio: outbound frame refused, closing", "conn", c.id, "bytes", len(f), "frame", truncate(f, logFrameBytes))
				c.closeWith(ReasonTransportError, closeGoingAway, nil)
			}
			buf, inBuf = buf[:0], 0
			break
		}
		buf = appendFrameHeader(buf, len(f))
		buf = append(buf, f...)
		inBuf++
		if len(buf) >= writeChunk {
			c.write(buf, inBuf)
			buf, inBuf = buf[:0], 0
			if c.werr {
				break
			}
		}
	}
	c.write(buf, inBuf)
	if cap(buf) <= maxPooledBuffer {
		*bp = buf[:0]
		bufPool.Put(bp)
	}
}

// write writes n framed frames in one call. A failed write closes the TCP
// connection (reason "transport error" unless a close was already decided),
// as gws did.
func (c *Conn) write(buf []byte, n int) {
	if n == 0 || c.werr {
		return
	}
	if _, err := c.ws.NetConn().Write(buf); err != nil {
		c.werr = true
		c.s.log.Debug("socketio: write failed", "conn", c.id, "err", err)
		c.abort(ReasonTransportError)
		return
	}
	c.s.m.framesOut.Add(float64(n))
	c.lastWrite.Store(c.s.now())
}

// appendFrameHeader appends the header of an unmasked, unfragmented text
// frame with an n-byte payload (RFC 6455 §5.2).
func appendFrameHeader(b []byte, n int) []byte {
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, finText, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, finText, 127), uint64(n))
	}
}

// batcher wakes the writers of connections whose batched frames wait (see
// Conn.SendBatched): each at its last write + delay, so a connection gets at
// most one write of batched frames per delay however many arrive, and a
// frame waits at most delay. One goroutine runs while anything waits.
type batcher struct {
	s     *Server
	delay time.Duration

	mu      sync.Mutex
	q       dueHeap
	running bool
}

type batchEntry struct {
	c   *Conn
	due int64 // server clock (ns)
}

// dueHeap is a min-heap of entries by due. A room's members were written at
// about the same time, so entries mostly arrive in order and sift little.
type dueHeap []batchEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(batchEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = batchEntry{}
	*h = old[:len(old)-1]
	return e
}

func (b *batcher) add(c *Conn, due int64) {
	b.mu.Lock()
	heap.Push(&b.q, batchEntry{c, due})
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go b.run()
	}
}

func (b *batcher) run() {
	var due []*Conn
	for {
		b.mu.Lock()
		if len(b.q) == 0 {
			b.running = false
			b.q = nil // let a burst's backing array go
			b.mu.Unlock()
			return
		}
		now := b.s.now()
		if wait := b.q[0].due - now; wait > 0 {
			b.mu.Unlock()
			time.Sleep(time.Duration(wait))
			continue
		}
		for len(b.q) > 0 && b.q[0].due <= now {
			due = append(due, heap.Pop(&b.q).(batchEntry).c)
		}
		b.mu.Unlock()
		for _, c := range due {
			c.flushDeferred()
		}
		clear(due)
		due = due[:0]
	}
}
