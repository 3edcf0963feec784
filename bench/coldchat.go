package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

// Cold chat rounds (ColdRound.Mode).
const (
	// ColdAfterAcks sends the message once every chat.subscribe was answered
	// (chat.subscribe.ack): what a client that waits for the ack sees.
	ColdAfterAcks = "after_acks"
	// ColdAfterEmits sends it right after the last chat.subscribe was
	// written, without waiting: the race the original service lost (it had
	// no ack, and its subscribes queued 5-10 s behind one cache lock).
	ColdAfterEmits = "after_emits"
)

// coldModes are the rounds of the coldchat scenario, in order.
var coldModes = []string{ColdAfterAcks, ColdAfterEmits}

// coldEmitters is how many goroutines write the subscribes: one would take
// tens of milliseconds for 2,000 sockets, which is not "at once".
const coldEmitters = 16

// coldAckWait bounds the wait for the subscribe acks (the original needed
// 5-10 s; a server that needs more has failed anyway).
const coldAckWait = 60 * time.Second

// ColdRound is one round of the coldchat scenario: every socket subscribes
// to a fresh chat at once, then one message is sent to it.
type ColdRound struct {
	Mode string `json:"mode"`
	// Subscribers is how many sockets wrote their chat.subscribe.
	Subscribers int `json:"subscribers"`
	// EmitSpan is how long writing every chat.subscribe took.
	EmitSpan Dur `json:"emit_span"`
	// Subscribed counts the chat.subscribe.ack received (within the waits).
	Subscribed int `json:"subscribed"`
	// Subscribe is each socket's chat.subscribe -> chat.subscribe.ack.
	Subscribe Latency `json:"subscribe_latency"`
	// SubscribeSpan is from the first chat.subscribe written to the last
	// ack received.
	SubscribeSpan Dur `json:"subscribe_span"`
	// SendAck is the sender's chat.messages.send -> ack (0: none came).
	SendAck Dur `json:"send_ack"`
	// Latency is send -> chat.messages.receive at each socket that got it.
	Latency Latency `json:"latency"`
	// Received counts the sockets that got the message within the wait
	// (Config.Duration after the send); Missed the others.
	Received int `json:"received"`
	Missed   int `json:"missed"`
	// WithinTarget counts the sockets that got it within Target.
	WithinTarget int `json:"within_target"`
	Target       Dur `json:"target"`
	// MetTarget: every subscriber got the message within Target.
	MetTarget bool `json:"met_target"`
}

// coldState is one round's per-socket times (unix ns, 0 = not yet).
type coldState struct {
	chatID  string
	sID     string // the round's message
	ackArg  []byte // chatID as a JSON string, the ack's argument
	emitAt  []atomic.Int64
	ackAt   []atomic.Int64
	recvAt  []atomic.Int64
	acks    atomic.Int64
	recvs   atomic.Int64
	sendAt  atomic.Int64
	sendAck atomic.Int64
	nacked  atomic.Bool
}

func newColdState(n int) *coldState {
	id := newUUID()
	return &coldState{
		chatID: id,
		sID:    newUUID(),
		ackArg: []byte(strconv.Quote(id)),
		emitAt: make([]atomic.Int64, n),
		ackAt:  make([]atomic.Int64, n),
		recvAt: make([]atomic.Int64, n),
	}
}

// summarize turns a round's times into its ColdRound. Only sockets whose
// subscribe was written count.
func (s *coldState) summarize(mode string, target time.Duration, emitSpan time.Duration) ColdRound {
	r := ColdRound{Mode: mode, EmitSpan: Dur(emitSpan), Target: Dur(target)}
	var sub, lat Histogram
	var firstEmit, lastAck int64
	sendAt := s.sendAt.Load()
	for i := range s.emitAt {
		e := s.emitAt[i].Load()
		if e == 0 {
			continue
		}
		r.Subscribers++
		if firstEmit == 0 || e < firstEmit {
			firstEmit = e
		}
		if a := s.ackAt[i].Load(); a != 0 {
			r.Subscribed++
			sub.RecordValue(a - e)
			lastAck = max(lastAck, a)
		}
		rv := s.recvAt[i].Load()
		if rv == 0 || sendAt == 0 {
			r.Missed++
			continue
		}
		r.Received++
		lat.RecordValue(rv - sendAt)
		if rv-sendAt <= int64(target) {
			r.WithinTarget++
		}
	}
	r.Subscribe, r.Latency = sub.Summary(), lat.Summary()
	if lastAck > 0 {
		r.SubscribeSpan = Dur(lastAck - firstEmit)
	}
	if a := s.sendAck.Load(); a != 0 && sendAt != 0 {
		r.SendAck = Dur(a - sendAt)
	}
	r.MetTarget = r.Subscribers > 0 && r.WithinTarget == r.Subscribers
	return r
}

// runColdChat: cfg.Subscribers sockets connect; then, for each of
// coldModes, every socket writes chat.subscribe for a fresh chat at once and
// one sender socket sends one message to it, after the last subscribe ack
// (after_acks) or right after the last subscribe was written (after_emits).
// Measured per socket: subscribe -> ack, and send -> receive; a socket that
// has not received the message cfg.Duration after the send missed it.
func runColdChat(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{Scenario: ScenarioColdChat}
	n := cfg.Subscribers
	rounds := make([]*coldState, len(coldModes))
	for i := range rounds {
		rounds[i] = newColdState(n)
	}
	var stray atomic.Int64
	onSub := func(i int) func(string, []json.RawMessage) {
		return func(name string, args []json.RawMessage) {
			if len(args) == 0 {
				return
			}
			now := time.Now().UnixNano()
			switch name {
			case "chat.subscribe.ack":
				for _, r := range rounds {
					if bytes.Equal(args[0], r.ackArg) {
						if r.ackAt[i].CompareAndSwap(0, now) {
							r.acks.Add(1)
						}
						return
					}
				}
				stray.Add(1)
			case "chat.messages.receive":
				ri, _, ok := parseMarker(args[0])
				if !ok || ri < 0 || ri >= len(rounds) || !rounds[ri].recvAt[i].CompareAndSwap(0, now) {
					stray.Add(1) // unknown, or a duplicate
					return
				}
				rounds[ri].recvs.Add(1)
			}
		}
	}
	d := &dialer{cfg: cfg}
	subs, _, err := d.dialAll(ctx, n, 0, "cold chat subscribers", func(i int) (string, sioclient.Options) {
		return "bench-cold-" + strconv.Itoa(i), sioclient.Options{OnEvent: onSub(i), ReadBufferSize: subReadBuffer}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(subs)

	onSender := func(name string, args []json.RawMessage) {
		if name != "chat.messages.send.ack" && name != "chat.messages.send.nack" {
			return
		}
		now := time.Now().UnixNano()
		var sID string
		if len(args) > 0 {
			_ = json.Unmarshal(args[0], &sID)
		}
		for _, r := range rounds {
			if sID == r.sID {
				r.nacked.Store(name == "chat.messages.send.nack")
				r.sendAck.Store(now)
			}
		}
	}
	senderUser := newUUID()
	sd := &dialer{cfg: cfg}
	senders, _, err := sd.dialAll(ctx, 1, 0, "cold chat sender", func(int) (string, sioclient.Options) {
		return senderUser, sioclient.Options{OnEvent: onSender}
	})
	if err != nil {
		return nil, err
	}
	defer closeAll(senders)
	sender := senders[0]
	if sender == nil {
		return nil, fmt.Errorf("bench: sender connect: %w", sd.err())
	}
	res.Connections = countLive(subs) + 1
	res.ConnectErrors = int(d.errors.Load())
	if res.Connections == 1 {
		return nil, fmt.Errorf("bench: no subscriber connected: %w", d.err())
	}

	start := time.Now()
	for ri, mode := range coldModes {
		// Let the connect ramp's (or the previous round's) trailing work
		// settle, so the round measures its own subscribes.
		if !sleepCtx(ctx, time.Second) {
			return nil, ctx.Err()
		}
		r := rounds[ri]
		label := "cold chat " + mode
		stop := progress(cfg.Progress, label, func() string {
			return fmt.Sprintf("%d/%d subscribed, %d received", r.acks.Load(), n, r.recvs.Load())
		})
		emitted, emitSpan := coldSubscribe(subs, r)
		if mode == ColdAfterAcks && !waitFor(ctx, coldAckWait, func() bool { return r.acks.Load() >= emitted }) {
			res.note("%s: only %d of %d subscribes answered within %s; sent anyway", mode, r.acks.Load(), emitted, coldAckWait)
		}
		at := time.Now().UnixNano()
		r.sendAt.Store(at)
		if err := sender.Emit("chat.messages.send", chatMessage(r.chatID, senderUser, r.sID, ri, at)); err != nil {
			stop()
			return nil, fmt.Errorf("bench: send: %w", err)
		}
		waitFor(ctx, cfg.Duration, func() bool { return r.recvs.Load() >= emitted })
		// after_emits: the acks may still be coming; they are part of the
		// result (how long subscribing took), so wait for them too.
		waitFor(ctx, coldAckWait, func() bool { return r.acks.Load() >= emitted })
		waitFor(ctx, 5*time.Second, func() bool { return r.sendAck.Load() != 0 })
		stop()
		cr := r.summarize(mode, cfg.ColdTarget, emitSpan)
		res.Cold = append(res.Cold, cr)
		fmt.Fprintf(cfg.Progress, "bench: %s: %d subscribed (span %s, p99 %s); received %d, within %s %d, missed %d; send->receive p50/p99/max %s/%s/%s\n",
			label, cr.Subscribed, cr.SubscribeSpan, cr.Subscribe.P99, cr.Received, cr.Target, cr.WithinTarget, cr.Missed, cr.Latency.P50, cr.Latency.P99, cr.Latency.Max)
		if r.nacked.Load() {
			res.note("%s: the message was refused (nack)", mode)
		}
		if cr.SendAck == 0 {
			res.note("%s: no ack for the message within 5s", mode)
		}
	}
	res.Duration = Dur(time.Since(start))
	if len(res.Cold) > 0 {
		first := res.Cold[0] // after_acks: the target
		l := first.Latency
		res.Latency = &l
		res.Drops = int64(first.Missed)
	}
	if n := stray.Load(); n > 0 {
		res.note("%d unexpected or duplicate events received", n)
	}
	return res, nil
}

// coldSubscribe writes chat.subscribe(r.chatID) on every live socket from
// coldEmitters goroutines, stamping each socket's emit time; it returns how
// many were written and how long that took.
func coldSubscribe(subs []*sioclient.Client, r *coldState) (int64, time.Duration) {
	var next, emitted atomic.Int64
	frame := json.RawMessage(r.ackArg)
	start := time.Now()
	var wg sync.WaitGroup
	for range coldEmitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(subs) {
					return
				}
				c := subs[i]
				if c == nil || !c.Connected() {
					continue
				}
				r.emitAt[i].Store(time.Now().UnixNano())
				if c.Emit("chat.subscribe", frame) != nil {
					r.emitAt[i].Store(0)
					continue
				}
				emitted.Add(1)
			}
		}()
	}
	wg.Wait()
	return emitted.Load(), time.Since(start)
}
