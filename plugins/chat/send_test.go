package chat

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
