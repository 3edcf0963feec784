package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

// ackStats counts the answers to events sent with an ack id.
type ackStats struct {
	sent, ok, failed, lost atomic.Int64
	mu                     sync.Mutex
	errors                 map[string]int // error ack text -> count
}

func (s *ackStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("sent %d, answered ok %d, answered with an error %d %v, unanswered %d",
		s.sent.Load(), s.ok.Load(), s.failed.Load(), s.errors, s.lost.Load())
}

// Results of emitAcked.
const (
	ackOK     = "ok"
	ackFailed = "failed"
	ackLost   = "lost"
	ackGone   = "gone"
)

// emitAcked sends an event with an ack id and classifies the answer: ok,
// an error ack ({"error": ...}, e.g. the plugin is down), or none within
// 10s (lost). A client that is gone, or a test that ends, counts as neither.
func (s *ackStats) emitAcked(ctx context.Context, c *sioclient.Client, event string, args ...any) string {
	s.sent.Add(1)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ack, err := c.EmitWithAck(actx, event, args...)
	switch {
	case err == nil:
		if msg := ackError(ack); msg != "" {
			s.failed.Add(1)
			s.mu.Lock()
			if s.errors == nil {
				s.errors = map[string]int{}
			}
			s.errors[msg]++
			s.mu.Unlock()
			return ackFailed
		}
		s.ok.Add(1)
		return ackOK
	case errors.Is(err, context.DeadlineExceeded) && c.Connected():
		s.lost.Add(1)
		return ackLost
	default:
		s.sent.Add(-1) // the client is gone: not a verdict
		return ackGone
	}
}

// ackError returns the "error" member of an error ack, or "".
func ackError(ack []json.RawMessage) string {
	if len(ack) != 1 {
		return ""
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(ack[0], &e) == nil {
		return e.Error
	}
	return ""
}

// chatLedger tracks chat sends and receipts across clients, to check that
// every acked message reached every subscriber exactly once.
type chatLedger struct {
	mu     sync.Mutex
	sent   map[string]bool // sId -> sent
	acked  map[string]bool
	nacked map[string]bool
	failed map[string]bool // answered by the host with an error ack
}

func newChatLedger() *chatLedger {
	return &chatLedger{sent: map[string]bool{}, acked: map[string]bool{}, nacked: map[string]bool{}, failed: map[string]bool{}}
}

// onEvent is a sender's OnEvent hook.
func (l *chatLedger) onEvent(name string, args []json.RawMessage) {
	if len(args) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch name {
	case "chat.messages.send.ack":
		l.acked[str(args[0])] = true
	case "chat.messages.send.nack":
		l.nacked[str(args[0])] = true
	}
}

func (l *chatLedger) markSent(sID string) {
	l.mu.Lock()
	l.sent[sID] = true
	l.mu.Unlock()
}

func (l *chatLedger) markFailed(sID string) {
	l.mu.Lock()
	l.failed[sID] = true
	l.mu.Unlock()
}

// ledgerCounts summarizes a chatLedger.
type ledgerCounts struct {
	sent, acked, nacked, failed, unanswered, both int
}

func (c ledgerCounts) String() string {
	return fmt.Sprintf("sent %d: acked %d, nacked %d, error-acked by the host %d, acked and nacked %d, unanswered %d",
		c.sent, c.acked, c.nacked, c.failed, c.both, c.unanswered)
}

// counts classifies every sent sId.
func (l *chatLedger) counts() ledgerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := ledgerCounts{sent: len(l.sent)}
	for s := range l.sent {
		switch {
		case l.acked[s] && l.nacked[s]:
			c.both++
		case l.acked[s]:
			c.acked++
		case l.nacked[s]:
			c.nacked++
		case l.failed[s]:
			c.failed++
		default:
			c.unanswered++
		}
	}
	return c
}

// ackedIDs returns the acked sIds.
func (l *chatLedger) ackedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.acked))
	for s := range l.acked {
		out = append(out, s)
	}
	return out
}

// receipts counts chat.messages.receive per sId for one subscriber.
type receipts struct {
	mu    sync.Mutex
	count map[string]int
}

func newReceipts() *receipts { return &receipts{count: map[string]int{}} }

func (r *receipts) onEvent(name string, args []json.RawMessage) {
	if name != "chat.messages.receive" || len(args) == 0 {
		return
	}
	var m struct {
		SID string `json:"sId"`
	}
	if json.Unmarshal(args[0], &m) != nil {
		return
	}
	r.mu.Lock()
	r.count[m.SID]++
	r.mu.Unlock()
}

// check returns the acked sIds missing from r and those received more than
// once (of any sId).
func (r *receipts) check(acked []string) (missing, dup []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range acked {
		if r.count[s] == 0 {
			missing = append(missing, s)
		}
	}
	for s, n := range r.count {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s x%d", s, n))
		}
	}
	return missing, dup
}

// has reports whether every sId in ids was received.
func (r *receipts) has(ids []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range ids {
		if r.count[s] == 0 {
			return false
		}
	}
	return true
}

// multi fans an OnEvent out to several hooks.
func multi(hooks ...func(string, []json.RawMessage)) func(string, []json.RawMessage) {
	return func(name string, args []json.RawMessage) {
		for _, h := range hooks {
			if h != nil {
				h(name, args)
			}
		}
	}
}

// dialWith connects userID to url with the given event hook.
func dialWith(ctx context.Context, url, userID, tok string, onEvent func(string, []json.RawMessage), onDisconnect func(string)) (*sioclient.Client, error) {
	return sioclient.Dial(ctx, url, sioclient.Options{
		Token: tok, OnEvent: onEvent, OnDisconnect: onDisconnect, ConnectTimeout: 20 * time.Second,
	})
}

// subscribeChat subscribes c to chatID and waits for chat.subscribe.ack.
func subscribeChat(ctx context.Context, c *sioclient.Client, r *recorder, chatID string) error {
	n := len(r.all("chat.subscribe.ack"))
	if err := c.Emit("chat.subscribe", chatID); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !r.waitFor(wctx, func(evs []event) bool { return countNamed(evs, "chat.subscribe.ack") > n }) {
		return fmt.Errorf("no chat.subscribe.ack for %s", chatID)
	}
	return nil
}

func countNamed(evs []event, name string) int {
	n := 0
	for _, e := range evs {
		if e.name == name {
			n++
		}
	}
	return n
}

// presenceDelta decodes an entered/left payload.
func presenceDelta(raw json.RawMessage) (listID, userID string) {
	var d struct {
		ListID string `json:"listId"`
		UserID string `json:"userId"`
	}
	_ = json.Unmarshal(raw, &d)
	return d.ListID, d.UserID
}

// snapshot asks for observePage(path) on c and returns the user ids of the
// "presences" answer.
func snapshot(ctx context.Context, c *sioclient.Client, r *recorder, path string) ([]string, error) {
	n := len(r.all("presences"))
	if err := c.Emit("observePage", path); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !r.waitFor(wctx, func(evs []event) bool { return countNamed(evs, "presences") > n }) {
		return nil, fmt.Errorf("no presences answer for %s", path)
	}
	evs := r.all("presences")
	var s struct {
		UserIDs []string `json:"userIds"`
	}
	if len(evs[len(evs)-1].args) > 0 {
		_ = json.Unmarshal(evs[len(evs)-1].args[0], &s)
	}
	return s.UserIDs, nil
}

// sameSet reports whether a and b hold the same strings, and describes the
// difference.
func sameSet(got, want []string) (bool, string) {
	g := map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	w := map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	var extra, missing []string
	for s := range g {
		if !w[s] {
			extra = append(extra, s)
		}
	}
	for s := range w {
		if !g[s] {
			missing = append(missing, s)
		}
	}
	if len(extra) == 0 && len(missing) == 0 && len(got) == len(g) {
		return true, ""
	}
	return false, fmt.Sprintf("%d listed (%d distinct), %d expected; extra %s; missing %s",
		len(got), len(g), len(w), head(extra), head(missing))
}

// head returns up to 5 elements, for messages.
func head(s []string) string {
	if len(s) > 5 {
		return fmt.Sprintf("%s ... (%d)", strings.Join(s[:5], ", "), len(s))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// forget removes a send whose answer could not arrive (its socket closed).
func (l *chatLedger) forget(sID string) {
	l.mu.Lock()
	delete(l.sent, sID)
	l.mu.Unlock()
}

// jsonUnmarshal is json.Unmarshal (for files that do not import it).
func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// chatSubscriber connects the user "sub" and subscribes it to chatID; its
// receipts count each message it receives. It is closed when the test ends.
func chatSubscriber(ctx context.Context, t *testing.T, url, chatID string) (*recorder, *receipts) {
	t.Helper()
	rcpt := newReceipts()
	rec := newRecorder()
	sub, err := dialWith(ctx, url, "sub", token(t, "sub"), multi(rec.onEvent, rcpt.onEvent), rec.onDisconnect)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if err := subscribeChat(ctx, sub, rec, chatID); err != nil {
		t.Fatal(err)
	}
	return rec, rcpt
}

// member is one load user: its id, connection and recorder.
type member struct {
	id  string
	c   *sioclient.Client
	rec *recorder
}

// enterUsers connects n users that each enter page, their chat acks and
// nacks going to ledger; they are closed when the test ends.
func enterUsers(ctx context.Context, t *testing.T, url, page string, n int, ledger *chatLedger) ([]member, []string) {
	t.Helper()
	var members []member
	var ids []string
	for i := 0; i < n; i++ {
		id := newUUID()
		rec := newRecorder()
		c, err := dialWith(ctx, url, id, token(t, id), multi(rec.onEvent, ledger.onEvent), rec.onDisconnect)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.EmitWithAck(ctx, "enterPage", page); err != nil {
			t.Fatal(err)
		}
		members = append(members, member{id, c, rec})
		ids = append(ids, id)
	}
	return members, ids
}

// mixedLoad makes every member alternate, every interval, an enterPage of
// page and a chat.messages.send to chatID (recorded in ledger), both with ack
// ids (answers in stats), until ctx ends; wait on the result after ending it.
func mixedLoad(ctx context.Context, members []member, every time.Duration, page, chatID string, ledger *chatLedger, stats *ackStats) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if i%2 == 0 {
					stats.emitAcked(ctx, m.c, "enterPage", page)
					continue
				}
				sID := newUUID()
				ledger.markSent(sID)
				if stats.emitAcked(ctx, m.c, "chat.messages.send", chatMessage(sID, chatID, m.id, "load")) == ackFailed {
					ledger.markFailed(sID)
				}
			}
		}()
	}
	return &wg
}
