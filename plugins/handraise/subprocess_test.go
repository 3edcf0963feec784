package handraise

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
	h.Dir.CanAccessEventFunc = func(context.Context, sdk.Socket, string) (bool, error) { return true, nil }
	h.Dir.IsEventChairFunc = func(_ context.Context, s sdk.Socket, _ string) (bool, error) { return s.UserID == "chair", nil }
	sp := sdktest.StartSubprocess(t, "handraise", sdktest.WithHost(h), sdktest.WithConfig(map[string]any{"event_secret": "s"}))
	if sp.Descriptor.Name != "handraise" || len(sp.Descriptor.Events) != 7 {
		t.Fatalf("descriptor = %+v", sp.Descriptor)
	}
	for _, s := range []sdk.Socket{alice, chair} {
		if err := sp.Connect(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sp.Event(alice, EventRaise, ev1); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Event(chair, EventFetch, ev1); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Event(chair, EventAccept, ev1, "alice"); err != nil {
		t.Fatal(err)
	}
	emits := h.Emits()
	if len(emits) != 3 || emits[0].Event != EmitRaised || emits[1].Event != EmitListing || emits[2].Event != EmitAccepted || !h.InRoom(chair.ID, Room(ev1)) {
		t.Errorf("emits %+v joins %+v", emits, h.Joins())
	}
	if h.Redis().Exists(HandsKey(ev1)) {
		t.Error("hand left after accept")
	}
	res, err := sp.HTTP(sdk.HTTPRequest{Method: http.MethodPost, Path: RouteEventEnded, Header: http.Header{}, Body: []byte("{}")})
	if err != nil || res.Status != http.StatusUnauthorized || string(res.Body) != "{}" {
		t.Errorf("/event/ended without secret = %d %s, %v", res.Status, res.Body, err)
	}
}
