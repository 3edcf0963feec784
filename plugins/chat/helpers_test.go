package chat

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
	chat1    = "6f1c1b2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
	chat2    = "7a2d2c3f-4b5c-4d6e-9fa0-1b2c3d4e5f60"
	sid1     = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	sid2     = "2c5f39cb-3ab2-42e3-994a-1127e4ddb538"
	regAlice = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	regBob   = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	regCarol = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
	regDave  = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
	regMod   = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"
)

var (
	fixedNow = time.Date(2021, 4, 1, 12, 30, 45, 123_000_000, time.UTC)
	alice    = sdktest.Socket("sA", "alice", "conf1")
	bob      = sdktest.Socket("sB", "bob", "conf1")
	mod      = sdktest.Socket("sM", "mod", "conf1")
	errDir   = errors.New("directory down")
)

var registrants = map[string]sdk.Registrant{
	regAlice: {ID: regAlice, UserID: "alice", DisplayName: "Alice"},
	regBob:   {ID: regBob, UserID: "bob", DisplayName: "Bob"},
	regCarol: {ID: regCarol, UserID: "carol", DisplayName: "Carol"},
	regDave:  {ID: regDave, UserID: "dave", DisplayName: "Dave"},
	regMod:   {ID: regMod, UserID: "mod", DisplayName: "Mod"},
}

// newTestPlugin starts a chat plugin on a fresh sdktest host whose directory
// lets everyone read, lets a user write as their own registrant and lets
// "mod" write as anyone. cfg entries override {"notify_delay":"0s"}.
func newTestPlugin(t *testing.T, cfg map[string]any) (*Plugin, *sdktest.Host) {
	t.Helper()
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	h.Dir.CanSelectChatFunc = func(_ context.Context, _ sdk.Socket, chatID string) (bool, error) {
		return chatID != chat2, nil
	}
	h.Dir.CanWriteChatFunc = func(_ context.Context, s sdk.Socket, chatID, sender string) (bool, error) {
		if chatID == chat2 {
			return false, nil
		}
		if s.UserID == "mod" {
			return true, nil
		}
		r, ok := registrants[sender]
		return ok && r.UserID == s.UserID, nil
	}
	h.Dir.RegistrantFunc = func(_ context.Context, id string) (sdk.Registrant, bool, error) {
		r, ok := registrants[id]
		return r, ok, nil
	}
	full := map[string]any{"notify_delay": "0s"}
	for k, v := range cfg {
		full[k] = v
	}
	p := New()
	p.now = func() time.Time { return fixedNow }
	p.retryBackoff = 0
	sdktest.Start(t, context.Background(), p, h, full)
	t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return p, h
}

// message returns a valid Message as a map (mutable per test).
func message(sID, senderID string) map[string]any {
	return map[string]any{
		"created_at": "2000-01-01T00:00:00.000Z",
		"updated_at": "2000-01-01T00:00:00.000Z",
		"type":       "MESSAGE",
		"chatId":     chat1,
		"senderId":   senderID,
		"message":    "hello <world>",
		"data":       map[string]any{},
		"isPinned":   false,
		"sId":        sID,
	}
}

func reaction(sID, senderID string) map[string]any {
	return map[string]any{
		"chatId":     chat1,
		"sId":        sID,
		"senderId":   senderID,
		"messageSId": sid1,
		"type":       "EMOJI",
		"symbol":     "👍",
		"data":       map[string]any{},
		"created_at": "2000-01-01T00:00:00.000Z",
		"updated_at": "2000-01-01T00:00:00.000Z",
	}
}

func act(op string, data any) map[string]any { return map[string]any{"op": op, "data": data} }

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// emitsNamed returns the recorded emits with the event name.
func emitsNamed(h *sdktest.Host, name string) []sdktest.Emit {
	var out []sdktest.Emit
	for _, e := range h.Emits() {
		if e.Event == name {
			out = append(out, e)
		}
	}
	return out
}

// argsJSON renders an emit's args as one JSON array for comparison.
func argsJSON(e sdktest.Emit) string {
	b, _ := json.Marshal(e.Args)
	return string(b)
}

// waitTasks waits for the scheduled follow-ups.
func (p *Plugin) waitTasks() { p.tasks.Wait() }

type jsonRaw = json.RawMessage
