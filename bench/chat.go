package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

// maxChatSteps bounds the chat ramp.
const maxChatSteps = 16

// subReadBuffer is a chat subscriber's socket read buffer.
const subReadBuffer = 4 << 10

// ackWindow is how many sends the chat ack phase keeps in flight.
const ackWindow = 32

// chatStepState is one step's live counters.
type chatStepState struct {
	hist     Histogram
	ackHist  Histogram
	received atomic.Int64
	acked    atomic.Int64
	nacked   atomic.Int64
	// sem, when set, holds one token per send in flight (the ack phase).
	sem chan struct{}
}

// sendTracker remembers when each sId was sent and turns acks into latency.
type sendTracker struct {
	prefix string // first 24 chars of every sId of the run
	mu     sync.Mutex
	at     map[uint64]sendRec
	seq    atomic.Uint64
}

type sendRec struct {
	at   int64
	step *chatStepState
}

func newSendTracker() *sendTracker {
	var b [10]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	// xxxxxxxx-xxxx-4xxx-8xxx-<12 hex counter>: a version-4, RFC-variant UUID.
	return &sendTracker{prefix: h[0:8] + "-" + h[8:12] + "-4" + h[12:15] + "-8" + h[15:18] + "-", at: map[uint64]sendRec{}}
}

// next returns a fresh sId and registers its send time.
func (t *sendTracker) next(step *chatStepState) string {
	n := t.seq.Add(1)
	t.mu.Lock()
	t.at[n] = sendRec{at: time.Now().UnixNano(), step: step}
	t.mu.Unlock()
	return t.prefix + fmt.Sprintf("%012x", n)
}

// done resolves an ack or nack for sId.
func (t *sendTracker) done(sID string, ok bool) (sendRec, bool) {
	if len(sID) != len(t.prefix)+12 || sID[:len(t.prefix)] != t.prefix {
		return sendRec{}, false
	}
	n, err := strconv.ParseUint(sID[len(t.prefix):], 16, 64)
	if err != nil {
		return sendRec{}, false
	}
	t.mu.Lock()
	r, found := t.at[n]
	delete(t.at, n)
	t.mu.Unlock()
	if found && r.step != nil {
		if ok {
			r.step.acked.Add(1)
			r.step.ackHist.RecordValue(time.Now().UnixNano() - r.at)
		} else {
			r.step.nacked.Add(1)
		}
		if r.step.sem != nil {
			select {
			case <-r.step.sem:
			default:
			}
		}
	}
	return r, found
}

// newUUID returns a random version-4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// chatMessage builds the chat.messages.send action; the text carries the
// step and send time.
func chatMessage(chatID, senderID, sID string, step int, now int64) json.RawMessage {
	b := make([]byte, 0, 320)
	b = append(b, `{"op":"INSERT","data":{"created_at":"","updated_at":"","type":"MESSAGE","chatId":"`...)
	b = append(b, chatID...)
	b = append(b, `","senderId":"`...)
	b = append(b, senderID...)
	b = append(b, `","message":"bench:`...)
	b = strconv.AppendInt(b, int64(step), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, now, 10)
	b = append(b, `","data":{},"isPinned":false,"sId":"`...)
	b = append(b, sID...)
	b = append(b, `"}}`...)
	return b
}

var benchMarker = []byte(`bench:`)

// parseMarker finds "bench:<step>:<ns>" in a received message.
func parseMarker(msg []byte) (step int, sentAt int64, ok bool) {
	i := bytes.Index(msg, benchMarker)
	if i < 0 {
		return 0, 0, false
	}
	rest := msg[i+len(benchMarker):]
	j := bytes.IndexByte(rest, ':')
	if j <= 0 {
		return 0, 0, false
	}
	s, err := strconv.Atoi(string(rest[:j]))
	if err != nil {
		return 0, 0, false
	}
	rest = rest[j+1:]
	k := 0
	for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
		k++
	}
	ns, err := strconv.ParseInt(string(rest[:k]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return s, ns, true
}

// runChat: cfg.Subscribers sockets subscribe to one chat; cfg.Senders sockets
// (of one user) send in turn at cfg.Rate msgs/s in total, doubling each
// cfg.Duration step up to cfg.MaxRate, until a step's send->receive p99
// exceeds cfg.TargetP99. Then one socket
// sends with ackWindow sends in flight to a chat nobody subscribes to (the
// ack rate).
func runChat(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{Scenario: ScenarioChat}
	chatID, ackChatID := newUUID(), newUUID()
	steps := make([]*chatStepState, maxChatSteps+1) // last slot: the ack phase
	for i := range steps {
		steps[i] = &chatStepState{}
	}
	steps[maxChatSteps].sem = make(chan struct{}, ackWindow)
	var subscribed, stray atomic.Int64
	onSub := func(name string, args []json.RawMessage) {
		switch name {
		case "chat.subscribe.ack":
			subscribed.Add(1)
		case "chat.messages.receive":
			if len(args) == 0 {
				return
			}
			now := time.Now().UnixNano()
			step, at, ok := parseMarker(args[0])
			if !ok || step < 0 || step >= maxChatSteps {
				stray.Add(1)
				return
			}
			st := steps[step]
			st.received.Add(1)
			st.hist.RecordValue(now - at)
		}
	}
	d := &dialer{cfg: cfg}
	subs, _, err := d.dialAll(ctx, cfg.Subscribers, 0, "chat subscribers", func(i int) (string, sioclient.Options) {
		// 4 KiB reads take a batch of frames (the server writes a busy
		// room's frames together) in one syscall.
		return "bench-sub-" + strconv.Itoa(i), sioclient.Options{OnEvent: onSub, ReadBufferSize: subReadBuffer}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(subs)
	for _, c := range subs {
		if c != nil {
			_ = c.Emit("chat.subscribe", chatID)
		}
	}
	live := int64(countLive(subs))
	if !waitFor(ctx, 30*time.Second, func() bool { return subscribed.Load() >= live }) {
		return nil, fmt.Errorf("bench: only %d of %d subscribers got chat.subscribe.ack (is the chat plugin enabled?)", subscribed.Load(), live)
	}

	tracker := newSendTracker()
	var rateLimited atomic.Int64
	onSender := func(name string, args []json.RawMessage) {
		switch name {
		case "chat.messages.send.ack", "chat.messages.send.nack":
			var sID string
			if len(args) > 0 {
				_ = json.Unmarshal(args[0], &sID)
			}
			tracker.done(sID, name == "chat.messages.send.ack")
		case "server.error":
			rateLimited.Add(1)
		}
	}
	senderUser := newUUID()
	sd := &dialer{cfg: cfg}
	senders, _, err := sd.dialAll(ctx, cfg.Senders, 0, "chat senders", func(int) (string, sioclient.Options) {
		return senderUser, sioclient.Options{OnEvent: onSender}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(senders)
	for _, c := range senders {
		if c == nil {
			return nil, fmt.Errorf("bench: sender connect: %w", sd.err())
		}
	}
	sender := senders[0]
	res.Connections = int(live) + len(senders)
	res.ConnectErrors = int(d.errors.Load())

	var best *ChatStep
	rate := cfg.Rate
	start := time.Now()
	for si := 0; si < maxChatSteps && rate <= cfg.MaxRate; si++ {
		st := steps[si]
		liveSubs := int64(countLive(subs))
		var sent atomic.Int64
		cpuBefore := snapshotCPU(cfg.ServerPID)
		stepStart := time.Now()
		stop := progress(cfg.Progress, fmt.Sprintf("chat step %d (%.0f msgs/s)", si, rate), func() string {
			el := time.Since(stepStart).Seconds()
			return fmt.Sprintf("sent %d, acked %d, %.0f deliveries/s, p99 %s", sent.Load(), st.acked.Load(), float64(st.received.Load())/el, Dur(st.hist.Percentile(99)))
		})
		p := newPacer(rate)
		total := int(rate * cfg.Duration.Seconds())
		var sendErr error
		for k := 0; k < total; k++ {
			if !p.wait(ctx, k) {
				break
			}
			sID := tracker.next(st)
			// Round robin: one socket's events are handled one at a time,
			// so a single sender would measure its own pipeline, not the
			// fan-out.
			if err := senders[k%len(senders)].Emit("chat.messages.send", chatMessage(chatID, senderUser, sID, si, time.Now().UnixNano())); err != nil {
				sendErr = err
				break
			}
			sent.Add(1)
		}
		elapsed := time.Since(stepStart)
		waitFor(ctx, 10*time.Second, func() bool { return st.acked.Load()+st.nacked.Load() >= sent.Load() })
		waitQuiet(ctx, &st.received, (sent.Load()-st.nacked.Load())*liveSubs, 10*time.Second)
		cpu := cpuUse(cpuBefore, snapshotCPU(cfg.ServerPID), st.received.Load(), time.Since(stepStart))
		stop()
		step := ChatStep{
			OfferedMsgsPerSec: rate,
			Sent:              sent.Load(),
			Acked:             st.acked.Load(),
			Nacked:            st.nacked.Load(),
			Received:          st.received.Load(),
			DeliveriesPerSec:  perSec(st.received.Load(), elapsed),
			Drops:             (sent.Load()-st.nacked.Load())*liveSubs - st.received.Load(),
			Latency:           st.hist.Summary(),
			AckLatency:        st.ackHist.Summary(),
			CPU:               cpu,
		}
		step.MetTarget = step.Latency.Count > 0 && time.Duration(step.Latency.P99) <= cfg.TargetP99 && step.Drops == 0
		res.Steps = append(res.Steps, step)
		fmt.Fprintf(cfg.Progress, "bench: chat step %d: %.0f msgs/s offered, %.0f deliveries/s, p99 %s, drops %d; CPU µs/delivery: server %.2f, plugins %.2f, load generator %.2f (cores %.2f / %.2f / %.2f)\n",
			si, rate, step.DeliveriesPerSec, step.Latency.P99, step.Drops,
			cpu.ServerUsPerDelivery, cpu.PluginUsPerDelivery, cpu.ClientUsPerDelivery, cpu.ServerCores, cpu.PluginCores, cpu.ClientCores)
		if sendErr != nil {
			res.note("step %d: send failed: %v", si, sendErr)
			break
		}
		if n := countLive(subs); int64(n) < liveSubs {
			res.note("step %d: %d subscribers were disconnected (slow consumer?)", si, liveSubs-int64(n))
		}
		if !step.MetTarget {
			break
		}
		best = &res.Steps[len(res.Steps)-1]
		rate *= 2
	}
	res.Duration = Dur(time.Since(start))
	pick := best
	if pick == nil && len(res.Steps) > 0 {
		pick = &res.Steps[len(res.Steps)-1]
	}
	if pick != nil {
		l := pick.Latency
		res.Latency = &l
		res.DeliveriesPerSec = pick.DeliveriesPerSec
		res.Drops = pick.Drops
	}
	if best == nil {
		res.note("no step met p99 <= %s without drops", cfg.TargetP99)
	}
	if n := rateLimited.Load(); n > 0 {
		res.note("%d server.error events (rate limited): raise socketio.events_per_second and plugins.chat.config.sends_per_second", n)
	}
	if n := stray.Load(); n > 0 {
		res.note("%d unexpected messages received", n)
	}

	// Ack phase: one socket, ackWindow sends in flight, no subscribers. First
	// let the ramp's backlog drain (bounded), so it does not count here.
	waitFor(ctx, 30*time.Second, func() bool {
		tracker.mu.Lock()
		defer tracker.mu.Unlock()
		return len(tracker.at) == 0
	})
	ack, err := chatAckPhase(ctx, cfg, sender, senderUser, ackChatID, tracker, steps[maxChatSteps])
	if err != nil {
		res.note("ack phase: %v", err)
	} else {
		ack.RateLimited = rateLimited.Load()
		res.Ack = ack
	}
	return res, nil
}

func chatAckPhase(ctx context.Context, cfg Config, sender *sioclient.Client, senderUser, chatID string, tracker *sendTracker, st *chatStepState) (*AckResult, error) {
	dur := min(cfg.Duration, 5*time.Second)
	start := time.Now()
	deadline := start.Add(dur)
	var sent int64
	stop := progress(cfg.Progress, "chat acks", func() string {
		return fmt.Sprintf("acked %d (%.0f/s)", st.acked.Load(), perSec(st.acked.Load(), time.Since(start)))
	})
	defer stop()
	timer := time.NewTimer(dur)
	defer timer.Stop()
	// st.sem was made by the caller; one token per send in flight.
	for time.Now().Before(deadline) {
		select {
		case st.sem <- struct{}{}:
		case <-timer.C:
			continue // the loop condition ends it
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		sID := tracker.next(st)
		if err := sender.Emit("chat.messages.send", chatMessage(chatID, senderUser, sID, maxChatSteps, time.Now().UnixNano())); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		sent++
	}
	elapsed := time.Since(start)
	acked := st.acked.Load()
	waitFor(ctx, 5*time.Second, func() bool { return st.acked.Load()+st.nacked.Load() >= sent })
	return &AckResult{
		Window:     ackWindow,
		Acked:      acked,
		Nacked:     st.nacked.Load(),
		AcksPerSec: perSec(acked, elapsed),
		Latency:    st.ackHist.Summary(),
	}, nil
}
