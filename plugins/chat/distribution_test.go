package chat

import (
	"context"
	"errors"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
)

func TestDistribution(t *testing.T) {
	msg := func(op string) []byte {
		d := message(sid1, regAlice)
		d["extra"] = "kept"
		b, _ := marshalJSON(act(op, d))
		return b
	}
	react := func(op string) []byte { b, _ := marshalJSON(act(op, reaction(sid2, regAlice))); return b }
	tests := []struct {
		name      string
		queue     string
		body      []byte
		wantEvent string
		wantDrop  bool
	}{
		{name: "message insert", queue: "chat.messages.distribution.test-instance", body: msg("INSERT"), wantEvent: "chat.messages.receive"},
		{name: "message update", queue: "chat.messages.distribution.test-instance", body: msg("UPDATE"), wantEvent: "chat.messages.update"},
		{name: "message delete", queue: "chat.messages.distribution.test-instance", body: msg("DELETE"), wantEvent: "chat.messages.delete"},
		{name: "reaction insert", queue: "chat.reactions.distribution.test-instance", body: react("INSERT"), wantEvent: "chat.reactions.receive"},
		{name: "reaction update", queue: "chat.reactions.distribution.test-instance", body: react("UPDATE"), wantEvent: "chat.reactions.update"},
		{name: "reaction delete", queue: "chat.reactions.distribution.test-instance", body: react("DELETE"), wantEvent: "chat.reactions.delete"},
		{name: "invalid message", queue: "chat.messages.distribution.test-instance", body: []byte(`{"op":"INSERT","data":{}}`), wantDrop: true},
		{name: "reaction on the message queue", queue: "chat.messages.distribution.test-instance", body: react("INSERT"), wantDrop: true},
		{name: "not JSON", queue: "chat.reactions.distribution.test-instance", body: []byte(`nope`), wantDrop: true},
		{name: "writeback queue while writeback is off", queue: QueueMessagesWriteback, body: msg("INSERT"), wantDrop: true},
		{name: "unknown queue", queue: "other", body: msg("INSERT"), wantDrop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := newTestPlugin(t, nil)
			err := p.OnDelivery(context.Background(), sdk.Delivery{Queue: tt.queue, Body: tt.body})
			if tt.wantDrop {
				if !errors.Is(err, sdk.ErrDrop) {
					t.Fatalf("err = %v, want ErrDrop", err)
				}
				if len(h.Emits()) != 0 {
					t.Errorf("dropped delivery emitted %+v", h.Emits())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			emits := h.Emits()
			if len(emits) != 1 {
				t.Fatalf("emits = %+v", emits)
			}
			e := emits[0]
			if e.Event != tt.wantEvent || e.To != sdk.LocalRoomTarget("chat:chat."+chat1) {
				t.Errorf("emit %s to %+v, want %s to the local room", e.Event, e.To, tt.wantEvent)
			}
			// The data goes out exactly as published.
			var full struct {
				Data jsonRaw `json:"data"`
			}
			if err := unmarshalJSON(tt.body, &full); err != nil {
				t.Fatal(err)
			}
			if len(e.Args) != 1 || string(e.Args[0]) != string(full.Data) {
				t.Errorf("args = %s, want [%s]", argsJSON(e), full.Data)
			}
		})
	}
}

// A message redelivered after a reconnect is not emitted twice.
func TestRedeliveredDistributionIsDroppedOnce(t *testing.T) {
	p, h := newTestPlugin(t, nil)
	body := mustJSON(t, act("INSERT", message(sid1, regAlice)))
	d := sdk.Delivery{Queue: "chat.messages.distribution.x", Exchange: ExchangeMessages, RoutingKey: chat1, Body: body}
	for i, redelivered := range []bool{false, true} {
		d.Redelivered = redelivered
		if err := p.OnDelivery(context.Background(), d); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	if n := len(emitsNamed(h, "chat.messages.receive")); n != 1 {
		t.Fatalf("%d receive emits, want 1", n)
	}
	// An UPDATE of the same message is a different delivery.
	d.Body = mustJSON(t, act("UPDATE", message(sid1, regAlice)))
	if err := p.OnDelivery(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if n := len(emitsNamed(h, "chat.messages.update")); n != 1 {
		t.Fatalf("%d update emits, want 1", n)
	}
}
