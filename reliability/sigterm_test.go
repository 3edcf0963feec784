package reliability

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"
)

// mover is a client of the instance that is stopped: when its socket
// drops it reconnects to the other instance (as socket.io-client does
// behind a load balancer) and resumes.
type mover struct {
	user       string
	subscriber bool
	mu         sync.Mutex
	c          *sioclient.Client
	rec        *recorder
	reasons    []string
	moved      chan struct{} // closed when reconnected elsewhere
}

func (m *mover) client() *sioclient.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c
}

// TestSIGTERM stops one of two instances with SIGTERM while its clients
// send chat messages, and checks: the instance exits 0 within its shutdown
// budget; its clients are disconnected with a reason that makes
// socket.io-client reconnect ("transport close", not "io server
// disconnect"), reconnect to the other instance and resume; every message
// acked to a client reaches the stable subscribers exactly once and the
// writeback; every send the instance took was answered before its socket
// closed: acked, nacked, or refused during the drain with the "unavailable"
// error ack. A send without any answer can only be one that reached the
// closing socket too late to be read: it must never be delivered or written
// back, so no outcome is unknown and the client's resend is no duplicate.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	const budget = 10 * time.Second
	amqp := amqpURL(t)
	redis := testserver.StartRedis(t)
	hasura, gqlURL := newFakeHasura(t)
	opts := func(name string) serverOpts {
		return serverOpts{name: name, plugins: []string{"chat"},
			env: map[string]string{"REDIS_URL": redis.URL(), "CLOUDAMQP_URL": amqp},
			args: []string{
				"--set", "shutdown.timeout=" + budget.String(),
				"--set", "plugins.chat.config.sends_per_second=1000", "--set", "plugins.chat.config.send_burst=1000",
				"--set", "plugins.chat.config.writeback=true", "--set", "plugins.chat.config.graphql_url=" + gqlURL,
				"--set", "plugins.chat.config.admin_secret=test",
			}}
	}
	a := launch(t, opts("term-a"))
	b := launch(t, opts("term-b"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	chatID := newUUID()
	ledger := newChatLedger()

	// Stable subscribers on B.
	var stable []*receipts
	for i := 0; i < 2; i++ {
		rc, rec := newReceipts(), newRecorder()
		name := "stable-" + newUUID()
		c, err := dialWith(ctx, b.URL, name, token(t, name), multi(rc.onEvent, rec.onEvent), rec.onDisconnect)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := subscribeChat(ctx, c, rec, chatID); err != nil {
			t.Fatal(err)
		}
		stable = append(stable, rc)
	}
	// Movers on A: 6 senders and 2 subscribers.
	var movers []*mover
	var moved atomic.Int64
	var connect func(m *mover, url string, onDrop func(string)) error
	connect = func(m *mover, url string, onDrop func(string)) error {
		rec := newRecorder()
		c, err := dialWith(ctx, url, m.user, token(t, m.user), multi(rec.onEvent, ledger.onEvent), onDrop)
		if err != nil {
			return err
		}
		if m.subscriber {
			if err := subscribeChat(ctx, c, rec, chatID); err != nil {
				c.Close()
				return err
			}
		}
		m.mu.Lock()
		m.c, m.rec = c, rec
		m.mu.Unlock()
		return nil
	}
	for i := 0; i < 8; i++ {
		m := &mover{user: newUUID(), subscriber: i >= 6, moved: make(chan struct{})}
		err := connect(m, a.URL, func(reason string) {
			m.mu.Lock()
			m.reasons = append(m.reasons, reason)
			m.mu.Unlock()
			go func() {
				time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
				for attempt := 0; attempt < 20; attempt++ {
					if err := connect(m, b.URL, nil); err == nil {
						moved.Add(1)
						close(m.moved)
						return
					}
					time.Sleep(500 * time.Millisecond)
				}
			}()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if c := m.client(); c != nil {
				c.Close()
			}
		}()
		movers = append(movers, m)
	}

	var stats ackStats
	var unanswered sendSet // gone with their socket, no answer
	var refused sendSet    // error-acked by the draining instance
	var termSent atomic.Bool
	var unansweredBeforeTerm atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range movers[:6] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-tick.C:
				}
				c := m.client()
				if !c.Connected() {
					continue
				}
				sID := newUUID()
				ledger.markSent(sID)
				// Logged only: the senders tick in step with SIGTERM (2 s = 20
				// ticks), so a send issued "before" it may still be on the wire,
				// unread, when its socket closes; those are never processed
				// (checked below), which is what matters.
				beforeTerm := !termSent.Load()
				switch stats.emitAcked(loadCtx, c, "chat.messages.send", chatMessage(sID, chatID, m.user, "term")) {
				case ackFailed:
					ledger.markFailed(sID)
					refused.add(sID)
				case ackGone:
					ledger.forget(sID)
					unanswered.add(sID)
					if beforeTerm {
						unansweredBeforeTerm.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	termAt := time.Now()
	termSent.Store(true)
	a.term()
	if !a.waitExit(budget + 5*time.Second) {
		t.Fatalf("%s still running %v after SIGTERM (shutdown budget %v)", a.Name, budget+5*time.Second, budget)
	}
	exitAfter := time.Since(termAt)
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", a.Name, a.err)
	}
	for _, m := range movers {
		select {
		case <-m.moved:
		case <-time.After(30 * time.Second):
			t.Fatalf("client %s did not reconnect to %s within 30s", m.user, b.Name)
		}
	}
	movedAfter := time.Since(termAt)
	time.Sleep(2 * time.Second) // load on B
	stopLoad()
	wg.Wait()

	// A message sent after the move reaches the moved subscribers too.
	final := newUUID()
	ledger.markSent(final)
	if _, err := movers[0].client().EmitWithAck(ctx, "chat.messages.send", chatMessage(final, chatID, movers[0].user, "final")); err != nil {
		t.Fatal(err)
	}
	for _, m := range movers[6:] {
		m.mu.Lock()
		rec := m.rec
		m.mu.Unlock()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		if !rec.waitFor(wctx, func(evs []event) bool {
			for _, e := range evs {
				if e.name == "chat.messages.receive" && len(e.args) > 0 && jsonHasSID(e.args[0], final) {
					return true
				}
			}
			return false
		}) {
			t.Errorf("moved subscriber %s did not get a message sent after the move", m.user)
		}
		wcancel()
	}

	acked := ledger.ackedIDs()
	within(30*time.Second, func() bool {
		for _, rc := range stable {
			if !rc.has(acked) {
				return false
			}
		}
		return len(hasura.missing(acked)) == 0
	})
	counts := ledger.counts()
	t.Logf("%s exited %v after SIGTERM; all %d clients back on %s %v after it; chat %s; %d sends without an answer on a closed socket (%d of them sent before SIGTERM); error acks %v",
		a.Name, exitAfter.Round(time.Millisecond), moved.Load(), b.Name, movedAfter.Round(time.Millisecond), counts,
		len(unanswered.list()), unansweredBeforeTerm.Load(), ackErrors(&stats))
	for _, m := range movers {
		m.mu.Lock()
		reasons := m.reasons
		m.mu.Unlock()
		if len(reasons) != 1 || reasons[0] != sioclient.ReasonTransportClose {
			t.Errorf("client %s: disconnect reasons %q, want one %q (socket.io-client reconnects)", m.user, reasons, sioclient.ReasonTransportClose)
		}
	}
	if counts.unanswered > 0 || counts.both > 0 || stats.lost.Load() > 0 {
		t.Errorf("chat sends: %s; %d lost", counts, stats.lost.Load())
	}
	// The only error ack is the draining instance's refusal of new events.
	for msg := range ackErrors(&stats) {
		if msg != "unavailable: retry shortly" {
			t.Errorf("error ack %q, want only the drain's \"unavailable: retry shortly\"", msg)
		}
	}
	// A send refused or left unanswered was never processed: its outcome is
	// known (not sent), so resending it after the reconnect is safe.
	for what, ids := range map[string][]string{"unanswered": unanswered.list(), "refused": refused.list()} {
		for i, rc := range stable {
			if missing, _ := rc.check(ids); len(missing) < len(ids) {
				t.Errorf("stable subscriber %d received %d %s sends (their sender never learned they went out)", i, len(ids)-len(missing), what)
			}
		}
		if m := hasura.missing(ids); len(m) < len(ids) {
			t.Errorf("writeback: %d %s sends were written back (their sender never learned they went out)", len(ids)-len(m), what)
		}
	}
	for i, rc := range stable {
		missing, dup := rc.check(acked)
		if len(missing) > 0 {
			t.Errorf("stable subscriber %d: %d of %d acked messages missing: %s", i, len(missing), len(acked), head(missing))
		}
		if len(dup) > 0 {
			t.Errorf("stable subscriber %d: %d messages duplicated: %s", i, len(dup), head(dup))
		}
	}
	if m := hasura.missing(acked); len(m) > 0 {
		t.Errorf("writeback: %d of %d acked messages never reached Hasura: %s", len(m), len(acked), head(m))
	}
}

// jsonHasSID reports whether a chat message payload has the given sId.
func jsonHasSID(raw []byte, sID string) bool {
	var m struct {
		SID string `json:"sId"`
	}
	return jsonUnmarshal(raw, &m) == nil && m.SID == sID
}

// sendSet collects sIds from the sender goroutines.
type sendSet struct {
	mu  sync.Mutex
	ids []string
}

func (s *sendSet) add(id string) {
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
}

func (s *sendSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// ackErrors copies the error ack texts counted by s.
func ackErrors(s *ackStats) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.errors))
	for k, v := range s.errors {
		out[k] = v
	}
	return out
}
