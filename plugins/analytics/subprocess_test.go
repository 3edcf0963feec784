package analytics

import (
	"testing"

	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// The registered plugin works through the real subprocess (gRPC) path.
func TestSubprocess(t *testing.T) {
	h := sdktest.NewHost()
	t.Cleanup(h.Close) // registered first, so it runs after the plugin stopped
	sp := sdktest.StartSubprocess(t, "analytics", sdktest.WithHost(h), sdktest.WithConfig(map[string]any{"graphql_url": "", "admin_secret": ""}))
	if sp.Descriptor.Name != "analytics" || len(sp.Descriptor.Events) != 1 {
		t.Fatalf("descriptor = %+v", sp.Descriptor)
	}
	if err := sp.Connect(alice); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := sp.Event(alice, EventViewCount, view(item1, "Item")); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := h.Redis().Get(CountKey("Item", item1)); v != "1" {
		t.Errorf("counter = %q, want 1 (the second view is deduped)", v)
	}
	if err := sp.Disconnect(alice, "transport close"); err != nil {
		t.Fatal(err)
	}
}
