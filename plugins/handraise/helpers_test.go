package handraise

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

const (
	ev1       = "6f1c1b2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
	evPrivate = "7a2d2c3f-4b5c-4d6e-9fa0-1b2c3d4e5f60"
	evBroken  = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
)

var (
	alice   = sdktest.Socket("sA", "alice", "conf1")
	bob     = sdktest.Socket("sB", "bob", "conf1")
	chair   = sdktest.Socket("sC", "chair", "conf1")
	mallory = sdktest.Socket("sM", "mallory")
	errDir  = errors.New("directory down")
)

// clock is a settable fake clock (ms since the epoch).
type clock struct{ ms int64 }

func (c *clock) now() time.Time { return time.UnixMilli(c.ms) }

// newTestPlugin starts a plugin on a fresh sdktest host whose directory lets
// everyone but mallory access every event but evPrivate (evBroken errors),
// and makes "chair" the only chair.
func newTestPlugin(t *testing.T, cfg map[string]any) (*Plugin, *sdktest.Host, *clock) {
	t.Helper()
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	h.Dir.CanAccessEventFunc = func(_ context.Context, s sdk.Socket, eventID string) (bool, error) {
		if eventID == evBroken {
			return false, errDir
		}
		return eventID != evPrivate && s.UserID != "mallory", nil
	}
	h.Dir.IsEventChairFunc = func(_ context.Context, s sdk.Socket, _ string) (bool, error) {
		return s.UserID == "chair", nil
	}
	c := &clock{ms: 1_600_000_000_000}
	p := New()
	p.now = c.now
	if cfg == nil {
		cfg = map[string]any{"event_secret": "s3cret"}
	}
	sdktest.Start(t, context.Background(), p, h, cfg)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p, h, c
}

// hands returns the event's raised hands, oldest first.
func hands(t *testing.T, h *sdktest.Host, eventID string) []string {
	t.Helper()
	if !h.Redis().Exists(HandsKey(eventID)) {
		return nil
	}
	m, err := h.Redis().ZMembers(HandsKey(eventID))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// argsJSON renders an emit's args as one JSON array for comparison.
func argsJSON(e sdktest.Emit) string {
	b, _ := json.Marshal(e.Args)
	return string(b)
}
