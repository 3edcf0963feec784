package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/host/socketio"
	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/plugins/chat"
	"github.com/clowdr/realtime/plugins/presence"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// The fuzz targets cover every decoder of untrusted input: the Socket.IO
// packet and event decoders (client frames), the CONNECT payload and token
// check, the presence plugin's path/list-id decoding and its event
// arguments, the chat plugin's send payloads and bus messages, the plugins'
// config decoders, and the test client's array splitter. Their seed corpus
// is in testdata/fuzz/<Target> (plus the f.Add seeds below); plain `go test`
// runs every seed, `go test -fuzz=FuzzX ./reliability` explores further.

// FuzzDecodePacket: DecodePacket and DecodeEvent never panic, reject what
// they document, and what they accept re-encodes to an equivalent packet.
func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{
		`0{"token":"x"}`, `0`, `1`, `2["time",{"a":1}]`, `212["ev",1,"two",[3]]`, `3`, `31[]`, `4{"message":"m"}`,
		`0/admin,{}`, `2/admin,["x"]`, `51-["x",{"_placeholder":true,"num":0}]`, `2[42]`, `2[]`, `2{}`, `2["a",`,
		`2["a"]x`, `299999999999999999999["x"]`, "2[\"\xff\"]", `2["\u0000\ud800"]`, `2[` + deepArray(33) + `]`,
		`2[ "sp" , 1 ]`, `2["a\"b",{"c":"]"}]`, `9`, ``, `0"tok"`, `1{}`, `17`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := socketio.DecodePacket(msg)
		if err != nil {
			var de *socketio.DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v is not a *DecodeError with a reason", err)
			}
			return
		}
		if !utf8.Valid(msg) {
			t.Fatalf("accepted invalid UTF-8 %q", msg)
		}
		if p.Data != nil && !json.Valid(p.Data) {
			t.Fatalf("accepted invalid JSON data %q", p.Data)
		}
		if p.Type != socketio.PacketEvent {
			return
		}
		name, args, err := socketio.DecodeEvent(p)
		if err != nil {
			return // e.g. an event name with an invalid escape
		}
		for _, a := range args {
			if !json.Valid(a) {
				t.Fatalf("argument %q of %q is not valid JSON", a, msg)
			}
		}
		// Re-encode (the server's own encoder) and decode again.
		frame := socketio.EncodeEventRaw(name, args)
		if len(frame) < 2 || frame[0] != '4' {
			t.Fatalf("EncodeEventRaw gave %q", frame)
		}
		p2, err := socketio.DecodePacket(frame[1:])
		if err != nil {
			t.Fatalf("re-encoded %q of %q does not decode: %v", frame, msg, err)
		}
		name2, args2, err := socketio.DecodeEvent(p2)
		if err != nil || name2 != name || len(args2) != len(args) {
			t.Fatalf("round trip of %q: got %q %d args (%v), want %q %d args", msg, name2, len(args2), err, name, len(args))
		}
	})
}

// FuzzSplitArray: the test client's array splitter agrees with encoding/json
// on valid arrays and never panics.
func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, `[1]`, `["a",{"b":[1,2]},"c\"]"]`, `[1,]`, `{}`, `[`, `["\\"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		elems, ok := sioclient.SplitArray(data)
		var want []json.RawMessage
		if json.Unmarshal(data, &want) != nil {
			return // not a valid array: any answer without a panic is fine
		}
		if !ok {
			t.Fatalf("valid array %q not split", data)
		}
		if len(elems) != len(want) {
			t.Fatalf("%q split into %d elements, want %d", data, len(elems), len(want))
		}
		for i := range want {
			if !bytes.Equal(bytes.TrimSpace(elems[i]), bytes.TrimSpace(want[i])) {
				t.Fatalf("%q element %d: %q, want %q", data, i, elems[i], want[i])
			}
		}
	})
}

var (
	fuzzVerifierOnce sync.Once
	fuzzVerifier     *auth.Verifier
	fuzzVerifierErr  error
)

// FuzzVerify: the CONNECT payload / token check never panics, refuses with
// the documented codes, and accepts only tokens signed by the test key for
// the one user the seeds carry.
func FuzzVerify(f *testing.F) {
	good := signToken(f, testKey, testKeyKid, "fuzz-user")
	parts := strings.Split(good, ".")
	for _, s := range []string{
		`{"token":"` + good + `"}`,
		`{"token":"` + parts[0] + `.` + parts[1] + `.AAAA"}`,
		`{"token":"` + parts[0] + `.e30.` + parts[2] + `"}`,
		`{"token":"eyJhbGciOiJub25lIn0.` + parts[1] + `."}`,
		`{"token":42}`, `{}`, `null`, `[]`, `"x"`, `{"token":"a.b.c"}`, `{"token":""}`,
		`{"token":"` + good + `","token":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		fuzzVerifierOnce.Do(func() {
			fuzzVerifier, fuzzVerifierErr = auth.New(config.AuthConfig{TestJWKS: testJWKS},
				slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		})
		if fuzzVerifierErr != nil {
			t.Fatalf("verifier: %v", fuzzVerifierErr)
		}
		id, err := fuzzVerifier.Verify(context.Background(), payload)
		if err == nil {
			if id.UserID != "fuzz-user" {
				t.Fatalf("accepted a token for %q: %q", id.UserID, payload)
			}
			return
		}
		var ref *auth.Refusal
		switch {
		case errors.As(err, &ref):
			if ref.Code != auth.CodeCredentialsRequired && ref.Code != auth.CodeInvalidToken {
				t.Fatalf("refusal code %q", ref.Code)
			}
			if ref.Message != auth.MessageNoToken && ref.Message != auth.MessageInvalidToken {
				t.Fatalf("refusal message %q", ref.Message)
			}
		case errors.Is(err, auth.ErrNoHasuraClaims):
		default:
			t.Fatalf("Verify(%q) = %v: neither a Refusal nor ErrNoHasuraClaims", payload, err)
		}
	})
}

// FuzzPresenceListID: list ids are 64 hex digits (or the conference slug),
// deterministic, and refused beyond max bytes; never a panic.
func FuzzPresenceListID(f *testing.F) {
	for _, s := range []string{"/conference/demo/room/1", "/conference/", "/conference//x", "/other/page", "", "/conference/demo",
		"/conference/other/x", "\xff", strings.Repeat("/", 2000), "/conference/démo/ü"} {
		f.Add(s)
	}
	sock := sdk.Socket{ID: "s", UserID: "u", ConferenceSlugs: []string{"demo", "démo"}}
	f.Fuzz(func(t *testing.T, path string) {
		id, err := presence.ListID(sock, path, 1024)
		if err != nil {
			return
		}
		if len(path) > 1024 {
			t.Fatalf("accepted a path of %d bytes", len(path))
		}
		if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("ListID(%q) = %q, want 64 hex digits", path, id)
		}
		if again, _ := presence.ListID(sock, path, 1024); again != id {
			t.Fatalf("ListID(%q) not deterministic: %q then %q", path, id, again)
		}
		if _, err := presence.ConferenceListID(sock, path, 1024); err == nil && !strings.Contains(strings.Join(sock.ConferenceSlugs, "\x00"), path) {
			t.Fatalf("ConferenceListID accepted %q, not a conference of the socket", path)
		}
	})
}

// FuzzPluginConfigs: the presence and chat config decoders reject or accept
// any JSON without a panic, and what presence accepts is consistent.
func FuzzPluginConfigs(f *testing.F) {
	for _, s := range []string{`{}`, `null`, ``, `{"window":"3s","refresh_interval":"1s","sweep_interval":"500ms"}`,
		`{"window":"1s","refresh_interval":"1s"}`, `{"max_path_bytes":-1}`, `{"nope":1}`, `{"window":5}`,
		`{"events_per_second":1e309}`, `[]`, `{"window":"9999999999h"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := presence.ParseConfig(raw)
		if err == nil && (cfg.Window <= 2*cfg.RefreshInterval || cfg.SweepInterval <= 0 || cfg.MaxPathBytes < 1 || cfg.EventBurst < 1) {
			t.Fatalf("presence accepted %q as %+v", raw, cfg)
		}
		var c chat.Config
		_ = json.Unmarshal(raw, &c) // must not panic
	})
}

// fuzzPlugin is one plugin started on a recording sdktest host, shared by the
// runs of one fuzz target.
type fuzzPlugin struct {
	once sync.Once
	p    sdk.Plugin
	h    *sdktest.Host
	err  error
	mu   sync.Mutex // one run at a time: the host's recordings are shared
}

func (fp *fuzzPlugin) get(t *testing.T, newPlugin func() sdk.Plugin, cfg map[string]any) (sdk.Plugin, *sdktest.Host) {
	fp.once.Do(func() {
		fp.h = sdktest.NewHost()
		fp.h.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		fp.p = newPlugin()
		raw, err := json.Marshal(cfg)
		if err != nil {
			fp.err = err
			return
		}
		fp.err = fp.p.Start(context.Background(), fp.h, raw)
	})
	if fp.err != nil {
		t.Fatalf("start plugin: %v", fp.err)
	}
	return fp.p, fp.h
}

var fuzzChat, fuzzPresence fuzzPlugin

// FuzzChatSend: whatever chat.messages.send carries, the plugin answers the
// socket exactly once, with an ack only for a payload it published, and
// never panics.
func FuzzChatSend(f *testing.F) {
	chatID, sender := "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "2c5ea4c0-4067-41fb-8e03-bfc3f1a0e5b9"
	valid := mustJSON(chatMessage("3d6f1c0a-1b2c-4d3e-8f40-5a6b7c8d9e0f", chatID, sender, "hi"))
	for _, s := range []string{valid, `"x"`, `null`, `{}`, `{"op":"INSERT"}`, `{"op":"INSERT","data":{}}`, `[]`, `1e999`,
		strings.Replace(valid, `"INSERT"`, `"DELETE"`, 1), strings.Replace(valid, `"MESSAGE"`, `"SPAM"`, 1),
		strings.Replace(valid, sender, "not-a-uuid", 1), `{"op":"INSERT","data":` + deepArray(30) + `}`} {
		f.Add([]byte(s))
	}
	sock := sdk.Socket{ID: "fuzz-socket", UserID: sender, ConferenceSlugs: []string{"demo"}}
	f.Fuzz(func(t *testing.T, arg []byte) {
		if !json.Valid(arg) {
			return // the host's decoder only hands valid JSON to plugins
		}
		p, h := fuzzChat.get(t, func() sdk.Plugin { return chat.New() }, map[string]any{
			"notify_delay": "0s", "sends_per_second": 1e6, "send_burst": 1000000,
		})
		fuzzChat.mu.Lock()
		defer fuzzChat.mu.Unlock()
		h.Reset()
		h.Dir.CanWriteChatFunc = func(_ context.Context, s sdk.Socket, _ string, senderID string) (bool, error) {
			return senderID == s.UserID, nil
		}
		_, _ = p.OnEvent(context.Background(), sdk.Event{Socket: sock, Name: "chat.messages.send", Args: []json.RawMessage{arg}})
		var acks, nacks int
		for _, e := range h.Emits() {
			switch e.Event {
			case "chat.messages.send.ack":
				acks++
			case "chat.messages.send.nack":
				nacks++
			}
		}
		if acks+nacks != 1 {
			t.Fatalf("send %q answered with %d acks and %d nacks, want exactly one answer", arg, acks, nacks)
		}
		if acks == 1 && len(h.Publishes()) != 1 {
			t.Fatalf("send %q acked with %d publishes", arg, len(h.Publishes()))
		}
	})
}

// FuzzChatDelivery: a bus message of any shape is emitted or dropped
// (sdk.ErrDrop), never panics and never requeued forever.
func FuzzChatDelivery(f *testing.F) {
	chatID := "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	valid := mustJSON(chatMessage("3d6f1c0a-1b2c-4d3e-8f40-5a6b7c8d9e0f", chatID, "2c5ea4c0-4067-41fb-8e03-bfc3f1a0e5b9", "hi"))
	for _, s := range []string{valid, ``, `{`, `null`, `{"op":"INSERT","data":null}`, "\xff\xfe", `{"op":"UPDATE","data":{"sId":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, h := fuzzChat.get(t, func() sdk.Plugin { return chat.New() }, map[string]any{
			"notify_delay": "0s", "sends_per_second": 1e6, "send_burst": 1000000,
		})
		fuzzChat.mu.Lock()
		defer fuzzChat.mu.Unlock()
		h.Reset()
		err := p.OnDelivery(context.Background(), sdk.Delivery{Queue: "chat.messages.distribution.fuzz", Exchange: "chat.messages", RoutingKey: chatID, Body: body})
		if err != nil && !errors.Is(err, sdk.ErrDrop) {
			t.Fatalf("delivery %q: %v (would be requeued)", body, err)
		}
		if err != nil && len(h.Emits()) > 0 {
			t.Fatalf("dropped delivery %q was emitted", body)
		}
	})
}

// FuzzPresenceEvent: presence events with any argument never panic, and an
// ignored argument sends nothing to the client.
func FuzzPresenceEvent(f *testing.F) {
	for _, s := range []string{`"/conference/demo/room/1"`, `42`, `null`, `"/conference/other/x"`, `""`, `"\ud800"`, `{"path":"/x"}`,
		`"` + strings.Repeat("a", 1100) + `"`, deepArray(20)} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(2))
	}
	events := []string{"enterPage", "leavePage", "observePage", "unobservePage", "pagePresence", "pageUnpresence",
		"conferencePresence", "observeConference", "unobserveConference"}
	sock := sdk.Socket{ID: "fuzz-presence", UserID: "u1", ConferenceSlugs: []string{"demo"}}
	f.Fuzz(func(t *testing.T, arg []byte, ev uint8) {
		if !json.Valid(arg) {
			return
		}
		p, h := fuzzPresence.get(t, func() sdk.Plugin { return presence.New() }, map[string]any{
			"events_per_second": 1e6, "event_burst": 1000000,
		})
		fuzzPresence.mu.Lock()
		defer fuzzPresence.mu.Unlock()
		h.Reset()
		name := events[int(ev)%len(events)]
		_, _ = p.OnEvent(context.Background(), sdk.Event{Socket: sock, Name: name, Args: []json.RawMessage{arg}})
		var s string
		isString := json.Unmarshal(arg, &s) == nil && s != "" && len(s) <= 1024
		if !isString && len(h.Emits()) > 0 {
			t.Fatalf("%s(%q) is invalid but emitted %v", name, arg, h.Emits())
		}
		// Leave no state behind for the next run.
		_ = p.OnDisconnect(context.Background(), sock, "fuzz")
	})
}
