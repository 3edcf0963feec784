package reliability

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSlowConsumer subscribes a client that never reads to a busy chat and
// checks that the server disconnects it once its outbound queue is full
// (socketio.outbound_queue), that the server's heap stays bounded while
// tens of megabytes are addressed to it, and that a normal subscriber of
// the same chat still gets every acked message.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	const (
		queue    = 16
		messages = 120
		textSize = 150000 // bytes of message text; each frame is a bit larger
		// dropWithin bounds the bytes addressed to the slow consumer before
		// it is dropped: what the kernel buffers on loopback (a few MB),
		// the outbound queue (queue frames) and the sends in flight. An
		// unbounded queue would never drop it.
		dropWithin = 16 << 20
		// heapSlack is a backstop against gross leaks: the heap (garbage
		// included, so it is noisy) may not grow by more while
		// messages*textSize (18 MB) are fanned out.
		heapSlack = 32 << 20
	)
	s := launch(t, serverOpts{name: "slow-consumer", plugins: []string{"chat"}, args: []string{
		"--set", fmt.Sprintf("socketio.outbound_queue=%d", queue),
		"--set", "plugins.chat.config.max_message_bytes=200000",
		"--set", "socketio.events_per_second=100000", "--set", "socketio.event_burst=100000",
		"--set", "plugins.chat.config.sends_per_second=100000", "--set", "plugins.chat.config.send_burst=100000",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	chatID := newUUID()

	// The slow consumer: subscribes, then never reads again.
	// Its receive buffer is set small before it connects: set later, the
	// kernel has already advertised (and may autotune, up to tcp_rmem's
	// maximum) a window that once let 17 MB through before the drop.
	slow, err := dialRawWith(&net.Dialer{Timeout: 5 * time.Second, Control: smallReceiveBuffer}, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if err := slow.connect(token(t, "slow")); err != nil {
		t.Fatal(err)
	}
	if err := slow.text(`42["chat.subscribe","` + chatID + `"]`); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.expect(`42["chat.subscribe.ack"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	fast := newReceipts()
	fastRec := newRecorder()
	fc, err := dialWith(ctx, s.URL, "fast", token(t, "fast"), multi(fast.onEvent, fastRec.onEvent), fastRec.onDisconnect)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if err := subscribeChat(ctx, fc, fastRec, chatID); err != nil {
		t.Fatal(err)
	}
	ledger := newChatLedger()
	sender := newUUID()
	sc, err := dialWith(ctx, s.URL, sender, token(t, sender), ledger.onEvent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	runtimeGC := func() float64 {
		return s.metrics(t).sum("go_memstats_heap_inuse_bytes")
	}
	base := runtimeGC()
	slowBefore := s.metrics(t).sum("realtime_socketio_slow_consumer_disconnects_total")
	text := strings.Repeat("m", textSize)
	maxHeap := base
	droppedAt := -1 // messages sent when the drop was first seen
	for i := 0; i < messages; i++ {
		sID := newUUID()
		ledger.markSent(sID)
		if err := sc.Emit("chat.messages.send", chatMessage(sID, chatID, sender, text)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%5 == 0 {
			// Pace the sender a little, and sample the heap.
			if !within(30*time.Second, func() bool { c := ledger.counts(); return c.sent-c.acked-c.nacked < 5 }) {
				t.Fatalf("sends not answered: %s", ledger.counts())
			}
			maxHeap = max(maxHeap, runtimeGC())
			if droppedAt < 0 && s.metrics(t).sum("realtime_socketio_slow_consumer_disconnects_total") > slowBefore {
				droppedAt = i
			}
		}
	}
	acked := ledger.ackedIDs()
	if !within(60*time.Second, func() bool { return fast.has(ledger.ackedIDs()) && ledger.counts().unanswered == 0 }) {
		t.Errorf("chat: %s", ledger.counts())
	}
	acked = ledger.ackedIDs()
	maxHeap = max(maxHeap, runtimeGC())
	slowAfter := s.metrics(t).sum("realtime_socketio_slow_consumer_disconnects_total")
	t.Logf("slow consumer dropped after %d messages (%.1f MB); heap in use: %.1f MB before, at most %.1f MB while %d messages of %d bytes were sent; slow-consumer disconnects %v; chat %s",
		droppedAt, float64(droppedAt*textSize)/(1<<20), base/(1<<20), maxHeap/(1<<20), messages, textSize, slowAfter-slowBefore, ledger.counts())
	if droppedAt < 0 || droppedAt*textSize > dropWithin {
		t.Errorf("the slow consumer was not dropped within %d MB addressed to it (dropped after message %d of %d)", dropWithin>>20, droppedAt, messages)
	}
	if slowAfter-slowBefore != 1 {
		t.Errorf("slow consumer disconnects grew by %v, want 1", slowAfter-slowBefore)
	}
	if maxHeap-base > heapSlack {
		t.Errorf("heap grew by %.1f MB (> %d MB) while the slow consumer was fed", (maxHeap-base)/(1<<20), heapSlack>>20)
	}
	if missing, dup := fast.check(acked); len(missing)+len(dup) > 0 {
		t.Errorf("the normal subscriber missed %d acked messages (%s) and got %d twice", len(missing), head(missing), len(dup))
	}
	if d := fastRec.disconnects(); len(d) > 0 {
		t.Errorf("the normal subscriber was disconnected: %v", d)
	}
	// The slow consumer's connection is gone: reading drains what the
	// kernel buffered, then ends without a close frame (TCP close).
	// The server let go of the slow consumer's connection (the kernel may
	// still be trying to flush what it buffered, so the client side is not
	// checked): only the fast subscriber and the sender remain.
	if n := s.metrics(t).sum("realtime_socketio_connections"); n != 2 {
		t.Errorf("realtime_socketio_connections = %v after the slow consumer was dropped, want 2", n)
	}
}
