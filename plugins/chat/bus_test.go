package chat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/bus"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// Two instances on the host's in-memory bus: a message sent on one reaches
// each instance's local room once, in send order.
func TestDistributionThroughMemoryBus(t *testing.T) {
	ctx := context.Background()
	b := bus.NewMemory(nil)
	defer b.Close()
	delivered := make(chan struct{}, 64)
	var hosts []*sdktest.Host
	for _, inst := range []string{"i1", "i2"} {
		p, h := newTestPlugin(t, nil)
		h.PublishFunc = b.Publish
		hosts = append(hosts, h)
		d := p.Describe()
		for _, ex := range d.Exchanges {
			if err := b.DeclareExchange(ctx, ex); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range d.Queues {
			q.Name = strings.ReplaceAll(q.Name, "{instance}", inst)
			stop, err := b.Consume(ctx, q, func(ctx context.Context, d sdk.Delivery) error {
				err := p.OnDelivery(ctx, d)
				delivered <- struct{}{}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
		}
	}
	// The sender is a second plugin on instance 1's host.
	senderHost := hosts[0]
	sender := New()
	sender.now = func() time.Time { return fixedNow }
	senderHost.Dir.CanWriteChatFunc = func(context.Context, sdk.Socket, string, string) (bool, error) { return true, nil }
	sdktest.Start(t, ctx, sender, senderHost, map[string]any{"notify_delay": "0s"})
	defer func() { _ = sender.Stop(ctx) }()

	sids := []string{sid1, sid2, "3d6a4adc-4bc3-43f4-8a5b-2238f5eec649", "4e7b5bed-5cd4-44a5-9b6c-3349a6ffd75a"}
	for _, s := range sids {
		if _, err := sdktest.Event(t, ctx, sender, alice, EventMessagesSend, act("INSERT", message(s, regAlice))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sdktest.Event(t, ctx, sender, alice, EventReactionsSend, act("INSERT", reaction(sid2, regAlice))); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < 2*(len(sids)+1); i++ {
		select {
		case <-delivered:
		case <-deadline:
			t.Fatalf("only %d of %d deliveries arrived", i, 2*(len(sids)+1))
		}
	}
	if n := len(emitsNamed(senderHost, "chat.messages.send.ack")); n != len(sids) {
		t.Errorf("acks = %d", n)
	}
	for i, h := range hosts {
		var got []string
		for _, e := range emitsNamed(h, "chat.messages.receive") {
			if e.To != sdk.LocalRoomTarget(chatRoom(chat1)) {
				t.Errorf("instance %d: emit to %+v", i, e.To)
			}
			var m map[string]any
			if err := e.Arg(0, &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m["sId"].(string))
		}
		if fmt.Sprint(got) != fmt.Sprint(sids) {
			t.Errorf("instance %d received %v, want %v once each in order", i, got, sids)
		}
		if n := len(emitsNamed(h, "chat.reactions.receive")); n != 1 {
			t.Errorf("instance %d: reactions = %d, want 1", i, n)
		}
	}
}
