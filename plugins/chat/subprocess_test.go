package chat

import (
	"context"
	"net/http"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// The registered plugin works through the real subprocess (gRPC) path.
func TestSubprocess(t *testing.T) {
	h := sdktest.NewHost()
	t.Cleanup(h.Close) // registered first, so it runs after the plugin stopped
	h.Dir.CanSelectChatFunc = func(context.Context, sdk.Socket, string) (bool, error) { return true, nil }
	h.Dir.CanWriteChatFunc = func(context.Context, sdk.Socket, string, string) (bool, error) { return true, nil }
	sp := sdktest.StartSubprocess(t, "chat", sdktest.WithHost(h), sdktest.WithConfig(map[string]any{"event_secret": "s"}))
	if sp.Descriptor.Name != "chat" || len(sp.Descriptor.Events) != 10 {
		t.Fatalf("descriptor = %+v", sp.Descriptor)
	}
	if err := sp.Connect(alice); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Event(alice, EventSubscribe, chat1); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Event(alice, EventMessagesSend, act("INSERT", message(sid1, regAlice))); err != nil {
		t.Fatal(err)
	}
	if !h.InRoom(alice.ID, chatRoom(chat1)) || len(emitsNamed(h, "chat.messages.send.ack")) != 1 || len(h.Publishes()) != 1 {
		t.Errorf("joins %v emits %+v publishes %d", h.Joins(), h.Emits(), len(h.Publishes()))
	}
	if err := sp.Deliver(sdk.Delivery{Queue: "chat.messages.distribution.x", Body: h.Publishes()[0].Body}); err != nil {
		t.Fatal(err)
	}
	if n := len(emitsNamed(h, "chat.messages.receive")); n != 1 {
		t.Errorf("receive emits = %d", n)
	}
	res, err := sp.HTTP(sdk.HTTPRequest{Method: http.MethodPost, Path: RoutePinChanged, Header: http.Header{}, Body: []byte("{}")})
	if err != nil || res.Status != http.StatusUnauthorized {
		t.Errorf("webhook without secret = %d, %v", res.Status, err)
	}
	if err := sp.Disconnect(alice, "transport close"); err != nil {
		t.Fatal(err)
	}
	if h.Redis().Exists(socketChatsKey(alice.ID)) {
		t.Error("socket keys left after disconnect")
	}
}
