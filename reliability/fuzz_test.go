package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/host/socketio"
	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/plugins/analytics"
	"github.com/clowdr/realtime/plugins/chat"
	"github.com/clowdr/realtime/plugins/handraise"
	"github.com/clowdr/realtime/plugins/presence"
	"github.com/clowdr/realtime/plugins/push"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// The fuzz targets cover every decoder of untrusted input: the Socket.IO
// packet and event decoders (client frames), the CONNECT payload and token
// check, the presence plugin's path/list-id decoding and its event
// arguments, the chat plugin's send payloads and bus messages, the plugins'
// config decoders, the test client's array splitter, the hand-raise event
// arguments, the analytics.view.count payload, and the Hasura webhook bodies
// of chat, push and handraise. Their seed corpus
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

// fuzzUUIDRE is uuid@8's validate regex, the plugins' documented notion of a
// valid id (their copy is in plugins/internal/kit, not importable from here).
// The targets below use it as an independent oracle of what must be accepted.
var fuzzUUIDRE = regexp.MustCompile(`(?i)^(?:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|00000000-0000-0000-0000-000000000000)$`)

// fuzzString is a positional argument or a field as the plugins document
// them: a non-empty JSON string, or nothing usable.
func fuzzString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil || s == "" {
		return "", false
	}
	return s, true
}

// fuzzOneEmit fails unless emits is exactly one emit of event to to, and
// decodes its first argument into v.
func fuzzOneEmit(t *testing.T, what string, emits []sdktest.Emit, to sdk.Target, event string, v any) {
	t.Helper()
	if len(emits) != 1 || emits[0].To != to || emits[0].Event != event {
		t.Fatalf("%s: emitted %+v, want exactly one %s to %+v", what, emits, event, to)
	}
	if err := emits[0].Arg(0, v); err != nil {
		t.Fatalf("%s: %s argument: %v", what, event, err)
	}
}

var fuzzHandRaise, fuzzAnalytics, fuzzHookChat, fuzzHookPush, fuzzHookHandRaise fuzzPlugin

// FuzzHandRaiseEvent: a hand-raise event with any arguments never panics and
// never answers an ack; input the doc says is ignored (falsy, non-string or
// non-UUID eventId, bad targetUserId) and refused input (no access, not a
// chair) emit, join, leave and store nothing; valid input has exactly its
// documented effect (handraise/doc.go "Events", "Broadcasts").
func FuzzHandRaiseEvent(f *testing.F) {
	eventID, target := "5f0b9a4e-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "auth0|target"
	for _, s := range []string{`["` + eventID + `"]`, `["` + eventID + `","` + target + `"]`, `[]`, `[null]`, `[0]`, `[false]`, `[""]`,
		`[42]`, `[-0]`, `[0e5]`, `[{"eventId":"` + eventID + `"}]`, `["not-a-uuid"]`, `["` + strings.ToUpper(eventID) + `"]`,
		`["00000000-0000-0000-0000-000000000000"]`, `["` + eventID + `",null]`, `["` + eventID + `",7]`, `["` + eventID + `",""]`,
		`["` + eventID + `","` + strings.Repeat("u", 257) + `"]`, `["` + eventID + `","` + strings.Repeat("u", 256) + `"]`,
		`["\u0035f0b9a4e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"]`, `["` + eventID + `\u0000"]`, `["` + eventID + `",["x"]]`, `[` + deepArray(20) + `]`} {
		for ev := range uint8(7) {
			f.Add(ev, []byte(s), true)
		}
		f.Add(uint8(0), []byte(s), false)
		f.Add(uint8(6), []byte(s), false)
	}
	events := []string{handraise.EventRaise, handraise.EventLower, handraise.EventFetch, handraise.EventAccept,
		handraise.EventReject, handraise.EventObserve, handraise.EventUnobserve}
	sock := sdk.Socket{ID: "fuzz-handraise", UserID: "auth0|fuzz-user", ConferenceSlugs: []string{"demo"}}
	f.Fuzz(func(t *testing.T, ev uint8, rawArgs []byte, allowed bool) {
		var args []json.RawMessage
		if json.Unmarshal(rawArgs, &args) != nil {
			return // the host hands plugins the arguments of a valid JSON array
		}
		p, h := fuzzHandRaise.get(t, func() sdk.Plugin { return handraise.New() }, map[string]any{"event_secret": "s3cret"})
		fuzzHandRaise.mu.Lock()
		defer fuzzHandRaise.mu.Unlock()
		h.Reset()
		h.Redis().FlushAll()
		h.Dir.CanAccessEventFunc = func(context.Context, sdk.Socket, string) (bool, error) { return allowed, nil }
		h.Dir.IsEventChairFunc = func(context.Context, sdk.Socket, string) (bool, error) { return allowed, nil }
		name := events[int(ev)%len(events)]
		res, err := p.OnEvent(context.Background(), sdk.Event{Socket: sock, Name: name, Args: args})
		if res != nil || err != nil {
			t.Fatalf("%s%s answered %v, %v; the plugin never answers an ack", name, rawArgs, res, err)
		}
		arg := func(i int) json.RawMessage {
			if i < len(args) {
				return args[i]
			}
			return nil
		}
		id, ok := fuzzString(arg(0))
		valid := ok && fuzzUUIDRE.MatchString(id)
		tgt, ok := fuzzString(arg(1))
		if name == handraise.EventAccept || name == handraise.EventReject {
			valid = valid && ok && len(tgt) <= 256
		}
		emits, joins, leaves := h.Emits(), h.Joins(), h.Leaves()
		what := name + string(rawArgs)
		if !valid || (!allowed && name != handraise.EventUnobserve) {
			if len(emits)+len(joins)+len(leaves) > 0 {
				t.Fatalf("%s (valid %t, allowed %t) emitted %v, joined %v, left %v", what, valid, allowed, emits, joins, leaves)
			}
			if keys := h.Redis().Keys(); len(keys) > 0 {
				t.Fatalf("%s (valid %t, allowed %t) wrote %v", what, valid, allowed, keys)
			}
			return
		}
		room := handraise.Room(id)
		wantJoin := name == handraise.EventFetch || name == handraise.EventObserve
		if (len(joins) == 1 && joins[0] == sdktest.RoomCall{SocketID: sock.ID, Room: room}) != wantJoin || len(joins) > 1 {
			t.Fatalf("%s joined %v", what, joins)
		}
		if (len(leaves) == 1 && leaves[0] == sdktest.RoomCall{SocketID: sock.ID, Room: room}) != (name == handraise.EventUnobserve) || len(leaves) > 1 {
			t.Fatalf("%s left %v", what, leaves)
		}
		var ch handraise.Change
		switch name {
		case handraise.EventRaise:
			fuzzOneEmit(t, what, emits, sdk.RoomTarget(room), handraise.EmitRaised, &ch)
			if ch != (handraise.Change{EventID: id, UserID: sock.UserID}) {
				t.Fatalf("%s broadcast %+v", what, ch)
			}
			if m, err := h.Redis().ZMembers(handraise.HandsKey(id)); err != nil || !slices.Equal(m, []string{sock.UserID}) {
				t.Fatalf("%s: hands %v (%v), want the socket's user", what, m, err)
			}
		case handraise.EventLower:
			fuzzOneEmit(t, what, emits, sdk.RoomTarget(room), handraise.EmitLowered, &ch)
			if ch != (handraise.Change{EventID: id, UserID: sock.UserID}) {
				t.Fatalf("%s broadcast %+v", what, ch)
			}
		case handraise.EventReject:
			fuzzOneEmit(t, what, emits, sdk.RoomTarget(room), handraise.EmitRejected, &ch)
			if ch != (handraise.Change{EventID: id, UserID: tgt}) {
				t.Fatalf("%s broadcast %+v", what, ch)
			}
		case handraise.EventAccept:
			var a handraise.Accepted
			fuzzOneEmit(t, what, emits, sdk.RoomTarget(room), handraise.EmitAccepted, &a)
			if a.EventID != id || a.UserID != tgt || a.EventPerson != nil {
				t.Fatalf("%s broadcast %+v", what, a)
			}
		case handraise.EventFetch:
			var l handraise.Listing
			fuzzOneEmit(t, what, emits, sdk.SocketTarget(sock.ID), handraise.EmitListing, &l)
			if l.EventID != id || l.UserIDs == nil || len(l.UserIDs) != 0 {
				t.Fatalf("%s listed %+v, want an empty list", what, l)
			}
		default: // observe, unobserve
			if len(emits) > 0 {
				t.Fatalf("%s emitted %v", what, emits)
			}
		}
	})
}

// FuzzAnalyticsView: analytics.view.count with any argument never panics,
// never answers or emits, and counts exactly the documented views: an object
// with a UUID identifier and a known contentType, from a socket with a
// conference, under CountKey(contentType, lower-cased identifier); anything
// else leaves the store untouched.
func FuzzAnalyticsView(f *testing.F) {
	id := "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	for _, s := range []string{`{"identifier":"` + id + `","contentType":"Item"}`, `{"identifier":"` + id + `","contentType":"Element"}`,
		`{"identifier":"` + strings.ToUpper(id) + `","contentType":"Room.HLSStream","extra":[1,2]}`, `{"identifier":"` + id + `"}`,
		`{"contentType":"Item"}`, `{"identifier":"` + id + `","contentType":"item"}`, `{"identifier":"x","contentType":"Item"}`,
		`{"identifier":42,"contentType":"Item"}`, `{"identifier":null,"contentType":"Item"}`, `{"identifier":"` + id + `","contentType":null}`,
		` {"identifier":"` + id + `","contentType":"Item"}`, `{"identifier":"x","identifier":"` + id + `","contentType":"Item"}`,
		`{"Identifier":"` + id + `","contentType":"Item"}`, `{"identifier":"\u0037c9e6679-7425-40de-944b-e07fc1f90ae7","contentType":"Item"}`,
		`null`, `false`, `0`, `""`, `"x"`, `[]`, `[{"identifier":"` + id + `","contentType":"Item"}]`, `{}`, deepArray(25)} {
		f.Add([]byte(s), true)
	}
	f.Add([]byte(`{"identifier":"`+id+`","contentType":"Item"}`), false)
	f.Fuzz(func(t *testing.T, arg []byte, member bool) {
		if !json.Valid(arg) {
			return // the host's decoder only hands valid JSON to plugins
		}
		p, h := fuzzAnalytics.get(t, func() sdk.Plugin { return analytics.New() }, map[string]any{
			"views_per_second": 1000, "view_burst": 1000,
		})
		fuzzAnalytics.mu.Lock()
		defer fuzzAnalytics.mu.Unlock()
		h.Reset()
		h.Redis().FlushAll()
		sock := sdk.Socket{ID: "fuzz-analytics", UserID: "u1"}
		if member {
			sock.ConferenceSlugs = []string{"demo"}
		}
		// A fresh socket per run: its dedupe memory and limiter go with it.
		defer func() { _ = p.OnDisconnect(context.Background(), sock, "fuzz") }()
		res, err := p.OnEvent(context.Background(), sdk.Event{Socket: sock, Name: analytics.EventViewCount, Args: []json.RawMessage{arg}})
		if res != nil || err != nil {
			t.Fatalf("view %q answered %v, %v; the plugin never answers an ack", arg, res, err)
		}
		if e := h.Emits(); len(e) > 0 {
			t.Fatalf("view %q emitted %v", arg, e)
		}
		want := ""
		var m map[string]json.RawMessage
		if member && json.Unmarshal(arg, &m) == nil && m != nil {
			id, ok1 := fuzzString(m["identifier"])
			ct, ok2 := fuzzString(m["contentType"])
			if ok1 && ok2 && fuzzUUIDRE.MatchString(id) &&
				(ct == analytics.ContentItem || ct == analytics.ContentElement || ct == analytics.ContentHLSStream) {
				want = analytics.CountKey(ct, strings.ToLower(id))
			}
		}
		keys := h.Redis().Keys()
		if want == "" {
			if len(keys) > 0 {
				t.Fatalf("view %q (member %t) is not countable but wrote %v", arg, member, keys)
			}
			return
		}
		if v, err := h.Redis().Get(want); len(keys) != 1 || err != nil || v != "1" {
			t.Fatalf("view %q: keys %v, %s = %q (%v); want only %s = 1", arg, keys, want, v, err, want)
		}
	})
}

// fuzzHookRoute is one Hasura webhook route and the plugin serving it.
type fuzzHookRoute struct {
	path      string
	fp        *fuzzPlugin
	newPlugin func() sdk.Plugin
	// badBody and okBody are the documented answers to a bad payload (500)
	// and to success (200).
	badBody, okBody string
}

// FuzzHasuraWebhook: the Hasura event/action webhooks of chat, push and
// handraise, given any body with or without the secret header, never panic
// or fail, and answer only their documented statuses (chat/doc.go "HTTP
// webhooks", push/doc.go "Routes", handraise/doc.go "HTTP"): 401 {} without
// exactly one right x-hasura-event-secret, 413 over 100 kB, 500 with the
// documented body for a bad payload (and then nothing emitted or stored),
// 200 with its documented effect.
func FuzzHasuraWebhook(f *testing.F) {
	const secret = "s3cret"
	moderators := []string{"mod-1", "mod-2"}
	chatCfg := map[string]any{"event_secret": secret, "moderators": moderators, "notify_delay": "0s"}
	newChat := func() sdk.Plugin { return chat.New() }
	routes := []fuzzHookRoute{
		{chat.RouteSubscriptionChanged, &fuzzHookChat, newChat, "Unexpected payload", "OK"},
		{chat.RoutePinChanged, &fuzzHookChat, newChat, "Unexpected payload", "OK"},
		{chat.RouteFlagInserted, &fuzzHookChat, newChat, "Unexpected payload", "OK"},
		{push.RouteSubscriptionChanged, &fuzzHookPush, func() sdk.Plugin { return push.New() }, "Unexpected payload", "OK"},
		{handraise.RouteEventEnded, &fuzzHookHandRaise, func() sdk.Plugin { return handraise.New() }, `{"ok":false}`, `{"ok":true}`},
	}
	cfgs := map[*fuzzPlugin]map[string]any{
		&fuzzHookChat: chatCfg, &fuzzHookPush: {"event_secret": secret}, &fuzzHookHandRaise: {"event_secret": secret},
	}
	event := func(op, old, new string) string {
		return `{"event":{"session_variables":null,"op":"` + op + `","data":{"old":` + old + `,"new":` + new + `}},"table":{"schema":"chat","name":"Subscription"},"id":"x"}`
	}
	row := `{"chatId":"c1","registrantId":"r1"}`
	// RFC 8291 §5's example subscription keys (a valid P-256 point and 16-byte secret).
	sub := `{"userId":"u1","endpoint":"https://push.example.net/x","auth":"BTBZMqHH6r4Tts7J_aSIgg","p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"}`
	ended := `{"action":{"name":"notifyEventEnded"},"input":{"eventId":"5f0b9a4e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"},"session_variables":{"x-hasura-role":"admin"}}`
	bodies := [][]string{
		{event("INSERT", "null", row), event("DELETE", row, "null"), event("UPDATE", row, `{"chatId":"c2","registrantId":"r1"}`),
			event("MANUAL", "null", row), event("INSERT", "null", `{"chatId":"","registrantId":"r1"}`), event("TRUNCATE", "null", row),
			`{"event":{"op":"INSERT","data":{"new":` + row + `}}}`, `{"event":{"op":"INSERT","data":{"old":null,"new":` + row + `},"session_variables":{"a":1}}}`},
		{event("INSERT", "null", row), event("DELETE", row, "null"), event("DELETE", "null", "null")},
		{event("INSERT", "null", `{"type":"Spam"}`), event("INSERT", "null", `{"type":7}`), event("UPDATE", "null", `{"type":"x"}`)},
		{event("INSERT", "null", sub), event("DELETE", sub, "null"), event("UPDATE", sub, strings.Replace(sub, `"u1"`, `"u2"`, 1)),
			event("INSERT", "null", strings.Replace(sub, "https:", "http:", 1)), event("INSERT", "null", strings.Replace(sub, "BTBZ", "AAAA", 1)[:len(sub)-20]+`"}`),
			event("INSERT", "null", strings.Replace(sub, `"BCVx`, `"AAAA`, 1)), `{"event":{"op":"DELETE","data":{"old":{"userId":"u1"}}}}`},
		{ended, strings.Replace(ended, "5f0b9a4e", "not-uuid", 1), `{"action":{"name":"x"},"input":{"eventId":42}}`,
			`{"action":"x","input":{"eventId":"5f0b9a4e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"}}`, strings.Replace(ended, `"admin"`, `1`, 1)},
	}
	for i, bs := range bodies {
		for _, b := range append(bs, ``, `{`, `null`, `[]`, `{}`, `{"event":null}`, "\xff", deepArray(40)) {
			f.Add(uint8(i), []byte(b), uint8(1))
		}
		f.Add(uint8(i), []byte(bs[0]), uint8(0))
		f.Add(uint8(i), []byte(bs[0]), uint8(2))
		f.Add(uint8(i), []byte(bs[0]), uint8(3))
		f.Add(uint8(i), []byte(`{"x":"`+strings.Repeat("a", 100<<10)+`"}`), uint8(1))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte, secretMode uint8) {
		r := routes[int(route)%len(routes)]
		p, h := r.fp.get(t, r.newPlugin, cfgs[r.fp])
		r.fp.mu.Lock()
		defer r.fp.mu.Unlock()
		h.Reset()
		h.Redis().FlushAll()
		hdr := http.Header{"Content-Type": {"application/json"}}
		switch secretMode % 4 {
		case 1:
			hdr.Set("X-Hasura-Event-Secret", secret)
		case 2:
			hdr.Set("X-Hasura-Event-Secret", secret+"x")
		case 3: // repeated: refused even though one copy is right
			hdr.Add("X-Hasura-Event-Secret", secret)
			hdr.Add("X-Hasura-Event-Secret", secret)
		}
		resp, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: http.MethodPost, Path: r.path, Header: hdr, Body: body, RemoteAddr: "127.0.0.1:1"})
		if err != nil {
			t.Fatalf("%s %q: error %v", r.path, body, err)
		}
		emits, keys := h.Emits(), h.Redis().Keys()
		what := fmt.Sprintf("%s %q (secret mode %d): %d %q", r.path, body, secretMode%4, resp.Status, resp.Body)
		unchanged := func() {
			if len(emits) > 0 || len(keys) > 0 {
				t.Fatalf("%s emitted %v, wrote %v", what, emits, keys)
			}
		}
		switch {
		case secretMode%4 != 1:
			if resp.Status != http.StatusUnauthorized || string(resp.Body) != "{}" {
				t.Fatalf("%s, want 401 {}", what)
			}
			unchanged()
		case len(body) > 100<<10:
			if resp.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("%s, want 413", what)
			}
			unchanged()
		case resp.Status == http.StatusInternalServerError:
			if string(resp.Body) != r.badBody {
				t.Fatalf("%s, want 500 %q (a bad payload) only", what, r.badBody)
			}
			unchanged()
		case resp.Status == http.StatusOK:
			if string(resp.Body) != r.okBody {
				t.Fatalf("%s, want 200 %q", what, r.okBody)
			}
			fuzzHookEffect(t, what, r.path, body, emits, len(moderators))
		default:
			t.Fatalf("%s: undocumented status", what)
		}
	})
}

// fuzzHookEffect checks the emits of an accepted webhook call against the
// documented effect of its route and event.op.
func fuzzHookEffect(t *testing.T, what, path string, body []byte, emits []sdktest.Emit, moderators int) {
	t.Helper()
	if path == handraise.RouteEventEnded {
		var in struct {
			Input struct {
				EventID string `json:"eventId"`
			} `json:"input"`
		}
		_ = json.Unmarshal(body, &in)
		var l handraise.Listing
		fuzzOneEmit(t, what, emits, sdk.RoomTarget(handraise.Room(in.Input.EventID)), handraise.EmitListing, &l)
		if l.EventID != in.Input.EventID || l.UserIDs == nil || len(l.UserIDs) != 0 {
			t.Fatalf("%s listed %+v, want an empty list", what, l)
		}
		return
	}
	if path == push.RouteSubscriptionChanged {
		if len(emits) > 0 {
			t.Fatalf("%s emitted %v", what, emits)
		}
		return
	}
	// chat: the op, read with exact key matching as the plugin does.
	var top, ev map[string]json.RawMessage
	_ = json.Unmarshal(body, &top)
	_ = json.Unmarshal(top["event"], &ev)
	op, _ := fuzzString(ev["op"])
	want := 0
	switch {
	case path == chat.RouteFlagInserted && (op == "INSERT" || op == "MANUAL"):
		want = moderators
	case path != chat.RouteFlagInserted && op != "UPDATE":
		want = 1
	}
	if len(emits) != want {
		t.Fatalf("%s (op %q) emitted %d events %v, want %d", what, op, len(emits), emits, want)
	}
}
