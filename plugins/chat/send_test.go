package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestSendMessage(t *testing.T) {
	good := act("INSERT", message(sid1, regAlice))
	tests := []struct {
		name        string
		sock        sdk.Socket
		arg         any
		noArg       bool
		setup       func(h *sdktest.Host)
		wantEvent   string // ack or nack
		wantArg     string // JSON
		wantPublish bool
	}{
		{name: "good insert is published then acked", sock: alice, arg: good, wantEvent: "chat.messages.send.ack", wantArg: `"` + sid1 + `"`, wantPublish: true},
		{name: "moderator may send without sender", sock: mod, arg: act("INSERT", message(sid1, "")), wantEvent: "chat.messages.send.ack", wantArg: `"` + sid1 + `"`, wantPublish: true},
		{name: "missing key nacks with the sId", sock: alice, arg: func() any { d := message(sid1, regAlice); delete(d, "isPinned"); return act("INSERT", d) }(), wantEvent: "chat.messages.send.nack", wantArg: `"` + sid1 + `"`},
		{name: "bad sId nacks with that sId", sock: alice, arg: act("INSERT", message("not-a-uuid", regAlice)), wantEvent: "chat.messages.send.nack", wantArg: `"not-a-uuid"`},
		{name: "no sId nacks with null", sock: alice, arg: map[string]any{"op": "INSERT"}, wantEvent: "chat.messages.send.nack", wantArg: `null`},
		{name: "null payload nacks with null", sock: alice, arg: nil, wantEvent: "chat.messages.send.nack", wantArg: `null`},
		{name: "no argument nacks with null", sock: alice, noArg: true, wantEvent: "chat.messages.send.nack", wantArg: `null`},
		{name: "sending as someone else is forbidden", sock: bob, arg: good, wantEvent: "chat.messages.send.nack", wantArg: `"` + sid1 + `"`},
		{name: "forbidden chat", sock: alice, arg: func() any { d := message(sid1, regAlice); d["chatId"] = chat2; return act("INSERT", d) }(), wantEvent: "chat.messages.send.nack", wantArg: `"` + sid1 + `"`},
		{name: "directory error", sock: alice, arg: good, setup: func(h *sdktest.Host) {
			h.Dir.CanWriteChatFunc = func(context.Context, sdk.Socket, string, string) (bool, error) { return false, errDir }
		}, wantEvent: "chat.messages.send.nack", wantArg: `"` + sid1 + `"`},
		{name: "publish error", sock: alice, arg: good, setup: func(h *sdktest.Host) {
			h.PublishFunc = func(context.Context, string, string, []byte) error { return errors.New("broker nacked") }
		}, wantEvent: "chat.messages.send.nack", wantArg: `"` + sid1 + `"`, wantPublish: true},
		{name: "oversized", sock: alice, arg: func() any {
			d := message(sid1, regAlice)
			d["message"] = strings.Repeat("x", DefaultMaxMessageBytes)
			return act("INSERT", d)
		}(), wantEvent: "chat.messages.send.nack", wantArg: `"` + sid1 + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := newTestPlugin(t, nil)
			if tt.setup != nil {
				tt.setup(h)
			}
			e := sdk.Event{Socket: tt.sock, Name: EventMessagesSend}
			if !tt.noArg {
				e.Args = sdktest.Args(t, tt.arg)
			}
			ack, err := p.OnEvent(context.Background(), e)
			if err != nil || ack != nil {
				t.Fatalf("OnEvent = %v, %v; want no ack values and no error", ack, err)
			}
			emits := h.Emits()
			var got []sdktest.Emit
			for _, em := range emits {
				if strings.HasPrefix(em.Event, "chat.messages.send.") {
					got = append(got, em)
				}
			}
			if len(got) != 1 {
				t.Fatalf("ack/nack emits = %+v, want exactly one", got)
			}
			if got[0].Event != tt.wantEvent || got[0].To != sdk.SocketTarget(tt.sock.ID) || argsJSON(got[0]) != "["+tt.wantArg+"]" {
				t.Errorf("emit = %s to %+v args %s, want %s [%s]", got[0].Event, got[0].To, argsJSON(got[0]), tt.wantEvent, tt.wantArg)
			}
			pubs := h.Publishes()
			if (len(pubs) == 1) != tt.wantPublish || len(pubs) > 1 {
				t.Fatalf("publishes = %d, want publish %v", len(pubs), tt.wantPublish)
			}
			if tt.wantPublish {
				if pubs[0].Exchange != ExchangeMessages || pubs[0].RoutingKey != chat1 {
					t.Errorf("published to %s/%s", pubs[0].Exchange, pubs[0].RoutingKey)
				}
				var body struct {
					Op   string         `json:"op"`
					Data map[string]any `json:"data"`
				}
				if err := json.Unmarshal(pubs[0].Body, &body); err != nil {
					t.Fatal(err)
				}
				if body.Op != "INSERT" || body.Data["created_at"] != "2021-04-01T12:30:45.123Z" || body.Data["sId"] != sid1 {
					t.Errorf("published body = %s", pubs[0].Body)
				}
			}
		})
	}
}

// The ack is emitted only once Publish returned: a publish that is still
// waiting for its confirm has no ack yet.
func TestAckAfterPublishConfirmed(t *testing.T) {
	p, h := newTestPlugin(t, nil)
	release := make(chan struct{})
	published := make(chan struct{})
	h.PublishFunc = func(ctx context.Context, _, _ string, _ []byte) error {
		close(published)
		<-release
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = sdktest.Event(t, context.Background(), p, alice, EventMessagesSend, act("INSERT", message(sid1, regAlice)))
	}()
	<-published
	if n := len(emitsNamed(h, "chat.messages.send.ack")); n != 0 {
		t.Fatalf("%d acks before the publish was confirmed", n)
	}
	close(release)
	<-done
	if n := len(emitsNamed(h, "chat.messages.send.ack")); n != 1 {
		t.Fatalf("%d acks after the publish was confirmed, want 1", n)
	}
}

func TestSendRateLimit(t *testing.T) {
	p, h := newTestPlugin(t, map[string]any{"sends_per_second": 1, "send_burst": 2})
	// The clock is frozen, so no token comes back.
	for i, sid := range []string{sid1, sid2, "3d6a4adc-4bc3-43f4-8a5b-2238f5eec649"} {
		if _, err := sdktest.Event(t, context.Background(), p, alice, EventMessagesSend, act("INSERT", message(sid, regAlice))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	acks, nacks := emitsNamed(h, "chat.messages.send.ack"), emitsNamed(h, "chat.messages.send.nack")
	if len(acks) != 2 || len(nacks) != 1 || argsJSON(nacks[0]) != `["3d6a4adc-4bc3-43f4-8a5b-2238f5eec649"]` {
		t.Fatalf("acks %d nacks %+v, want 2 acks and a nack of the third", len(acks), nacks)
	}
	// Another socket has its own budget; reactions share the socket's budget.
	if _, err := sdktest.Event(t, context.Background(), p, bob, EventMessagesSend, act("INSERT", message("4e7b5bed-5cd4-44a5-9b6c-3349a6ffd75a", regBob))); err != nil {
		t.Fatal(err)
	}
	if got := len(emitsNamed(h, "chat.messages.send.ack")); got != 3 {
		t.Errorf("bob's send: acks = %d, want 3", got)
	}
	h.Reset()
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventReactionsSend, act("INSERT", reaction(sid2, regAlice))); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Publishes()); n != 0 {
		t.Errorf("rate-limited reaction was published")
	}
	// Disconnect forgets the limiter.
	if err := p.OnDisconnect(context.Background(), alice, "transport close"); err != nil {
		t.Fatal(err)
	}
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventReactionsSend, act("INSERT", reaction(sid2, regAlice))); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Publishes()); n != 1 {
		t.Errorf("after reconnect: publishes = %d, want 1", n)
	}
}

// UPDATE and DELETE are checked against the sender recorded at INSERT, never
// the payload's senderId (§14.2 #7).
func TestUpdateDeleteUseStoredSender(t *testing.T) {
	type step struct {
		name     string
		sock     sdk.Socket
		op       string
		sID      string
		sender   string
		chat     string
		wantOK   bool
		wantSent string // senderId in the published body, when wantOK
	}
	steps := []step{
		{name: "alice inserts", sock: alice, op: "INSERT", sID: sid1, sender: regAlice, wantOK: true, wantSent: regAlice},
		{name: "bob updates alice's message as himself", sock: bob, op: "UPDATE", sID: sid1, sender: regBob},
		{name: "bob deletes alice's message as himself", sock: bob, op: "DELETE", sID: sid1, sender: regBob},
		{name: "bob inserts over alice's sId", sock: bob, op: "INSERT", sID: sid1, sender: regBob},
		{name: "alice re-sends her insert", sock: alice, op: "INSERT", sID: sid1, sender: regAlice, wantOK: true, wantSent: regAlice},
		{name: "alice updates with a spoofed sender: stored sender kept", sock: alice, op: "UPDATE", sID: sid1, sender: regBob, wantOK: true, wantSent: regAlice},
		{name: "alice moves her message to another chat", sock: alice, op: "UPDATE", sID: sid1, sender: regAlice, chat: chat2},
		{name: "bob deletes an unknown message", sock: bob, op: "DELETE", sID: sid2, sender: regBob},
		{name: "moderator deletes an unknown message", sock: mod, op: "DELETE", sID: sid2, sender: regBob, wantOK: true, wantSent: regBob},
		{name: "moderator deletes alice's message", sock: mod, op: "DELETE", sID: sid1, sender: "", wantOK: true, wantSent: regAlice},
		{name: "alice deletes her message", sock: alice, op: "DELETE", sID: sid1, sender: regAlice, wantOK: true, wantSent: regAlice},
	}
	p, h := newTestPlugin(t, nil)
	for _, st := range steps {
		h.Reset()
		d := message(st.sID, st.sender)
		if st.chat != "" {
			d["chatId"] = st.chat
		}
		if _, err := sdktest.Event(t, context.Background(), p, st.sock, EventMessagesSend, act(st.op, d)); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		acks := emitsNamed(h, "chat.messages.send.ack")
		if (len(acks) == 1) != st.wantOK {
			t.Errorf("%s: acks = %d, want ok %v (emits %+v)", st.name, len(acks), st.wantOK, h.Emits())
			continue
		}
		if !st.wantOK {
			if len(h.Publishes()) != 0 {
				t.Errorf("%s: refused action was published", st.name)
			}
			continue
		}
		var body struct {
			Data struct {
				SenderID *string `json:"senderId"`
			} `json:"data"`
		}
		if err := json.Unmarshal(h.Publishes()[0].Body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Data.SenderID == nil || *body.Data.SenderID != st.wantSent {
			t.Errorf("%s: published senderId = %v, want %q", st.name, body.Data.SenderID, st.wantSent)
		}
	}
	if ttl := h.Redis().TTL(recordKey(kindMessage, sid1)); ttl != DefaultMessageRecordTTL {
		t.Errorf("record TTL = %v, want %v", ttl, DefaultMessageRecordTTL)
	}
}

func TestSendReaction(t *testing.T) {
	tests := []struct {
		name        string
		sock        sdk.Socket
		action      any
		wantPublish bool
	}{
		{name: "good reaction", sock: alice, action: act("INSERT", reaction(sid1, regAlice)), wantPublish: true},
		{name: "invalid reaction", sock: alice, action: act("INSERT", map[string]any{"sId": sid1})},
		{name: "forbidden reaction", sock: bob, action: act("INSERT", reaction(sid1, regAlice))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := newTestPlugin(t, nil)
			if _, err := sdktest.Event(t, context.Background(), p, tt.sock, EventReactionsSend, tt.action); err != nil {
				t.Fatal(err)
			}
			pubs := h.Publishes()
			if (len(pubs) == 1) != tt.wantPublish {
				t.Fatalf("publishes = %d, want %v", len(pubs), tt.wantPublish)
			}
			if tt.wantPublish && (pubs[0].Exchange != ExchangeReactions || pubs[0].RoutingKey != chat1) {
				t.Errorf("published to %s/%s", pubs[0].Exchange, pubs[0].RoutingKey)
			}
			for _, e := range h.Emits() {
				if strings.HasPrefix(e.Event, "chat.") {
					t.Errorf("reactions emit nothing to the sender, got %s", e.Event)
				}
			}
		})
	}
}

// gatedHost holds back the Store pipelines that contain a ZADD until gate is
// closed, and records the first command of every pipeline in order.
type gatedHost struct {
	*sdktest.Host
	gate    chan struct{}
	ungated chan struct{} // one value per pipeline that was not held back
	mu      sync.Mutex
	ran     []string
}

func (g *gatedHost) Store() sdk.Store { return gatedStore{Store: g.Host.Store(), g: g} }

type gatedStore struct {
	sdk.Store
	g *gatedHost
}

func (s gatedStore) Pipeline(ctx context.Context, cmds [][]any) ([]sdk.Reply, error) {
	gated := false
	for _, c := range cmds {
		if c[0] == "ZADD" {
			gated = true
			<-s.g.gate
		}
	}
	replies, err := s.Store.Pipeline(ctx, cmds)
	var names []string
	for _, c := range cmds {
		names = append(names, fmt.Sprint(c[0]))
	}
	s.g.mu.Lock()
	s.g.ran = append(s.g.ran, strings.Join(names, " "))
	s.g.mu.Unlock()
	if !gated {
		select {
		case s.g.ungated <- struct{}{}:
		default:
		}
	}
	return replies, err
}

func startGated(t *testing.T) (*Plugin, *gatedHost) {
	t.Helper()
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	h.Dir.CanWriteChatFunc = func(context.Context, sdk.Socket, string, string) (bool, error) { return true, nil }
	g := &gatedHost{Host: h, gate: make(chan struct{}), ungated: make(chan struct{}, 1)}
	p := New()
	p.now = func() time.Time { return fixedNow }
	sdktest.Start(t, context.Background(), p, g, map[string]any{"notify_delay": "0s"})
	return p, g
}

// The recent-messages update runs after the ack without holding up the
// socket's next send, and the updates of one chat keep publish order: an
// INSERT's ZADD that is still waiting runs before the DELETE's ZREM, so the
// deleted message does not stay in the window.
func TestAfterPublishInBackgroundKeepsChatOrder(t *testing.T) {
	p, g := startGated(t)
	defer func() { _ = p.Stop(context.Background()) }()
	ctx := context.Background()
	for _, op := range []string{"INSERT", "DELETE"} {
		if _, err := sdktest.Event(t, ctx, p, alice, EventMessagesSend, act(op, message(sid1, regAlice))); err != nil {
			t.Fatal(err)
		}
	}
	// Both sends were acked while the INSERT's bookkeeping is held back.
	if n := len(emitsNamed(g.Host, "chat.messages.send.ack")); n != 2 {
		t.Fatalf("acks = %d, want 2 before the window was updated", n)
	}
	// Give an out-of-order ZREM the chance to run before the gate opens (the
	// pass does not depend on this pause; it only lets a bug show).
	select {
	case <-g.ungated:
	case <-time.After(200 * time.Millisecond):
	}
	close(g.gate)
	p.waitTasks()
	g.mu.Lock()
	ran := fmt.Sprint(g.ran)
	g.mu.Unlock()
	if want := "[INCR EXPIRE ZADD ZREMRANGEBYRANK ZREM]"; ran != want {
		t.Errorf("pipelines ran %s, want %s (one round trip each, in publish order)", ran, want)
	}
	mr := g.Host.Redis()
	if mr.Exists(recentMessagesKey(chat1)) {
		members, _ := mr.ZMembers(recentMessagesKey(chat1))
		t.Errorf("window after INSERT+DELETE = %v, want empty", members)
	}
	if v, _ := mr.Get(StatsKeyPrefix + strconv.FormatInt(fixedNow.Unix()/60, 10)); v != "1" {
		t.Errorf("messages counted = %q, want 1", v)
	}
}

// Stop waits for the bookkeeping of messages already acked and does not
// cancel it.
func TestStopFinishesAfterPublish(t *testing.T) {
	p, g := startGated(t)
	if _, err := sdktest.Event(t, context.Background(), p, alice, EventMessagesSend, act("INSERT", message(sid1, regAlice))); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()
	close(g.gate)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, err := g.Host.Redis().ZScore(recentMessagesKey(chat1), sid1); err != nil {
		t.Errorf("message not in the window after Stop: %v", err)
	}
}

// Sends of several sockets to several chats: every send is answered exactly
// once and every acked message reaches its chat's window.
func TestConcurrentSendsAnsweredOnce(t *testing.T) {
	p, h := newTestPlugin(t, map[string]any{"sends_per_second": 1000, "send_burst": 1000})
	ctx := context.Background()
	chats := []string{chat1, "8b3e3d40-5c6d-4e7f-8a01-2c3d4e5f6071"}
	socks := []sdk.Socket{alice, sdktest.Socket("sA2", "alice", "conf1")}
	var wg sync.WaitGroup
	var sids []string
	for i := 0; i < 40; i++ {
		sids = append(sids, fmt.Sprintf("%08x-0000-4000-8000-000000000000", i+1))
	}
	for si, s := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := si; i < len(sids); i += len(socks) {
				d := message(sids[i], regAlice)
				d["chatId"] = chats[i%len(chats)]
				if _, err := sdktest.Event(t, ctx, p, s, EventMessagesSend, act("INSERT", d)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	p.waitTasks()
	answered := map[string]int{}
	for _, e := range h.Emits() {
		if e.Event == "chat.messages.send.ack" || e.Event == "chat.messages.send.nack" {
			var sID string
			if err := e.Arg(0, &sID); err != nil {
				t.Fatal(err)
			}
			answered[e.Event+" "+sID]++
		}
	}
	for i, s := range sids {
		if answered["chat.messages.send.ack "+s] != 1 || answered["chat.messages.send.nack "+s] != 0 {
			t.Errorf("%s answered %v", s, answered)
		}
		if _, err := h.Redis().ZScore(recentMessagesKey(chats[i%len(chats)]), s); err != nil {
			t.Errorf("%s not in its window: %v", s, err)
		}
	}
}
