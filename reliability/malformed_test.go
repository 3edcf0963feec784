package reliability

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// maxPayloadForTests is the socketio.max_payload of the bad-input server,
// smaller than the default so that the oversized frame is cheap.
const maxPayloadForTests = 65536

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// chatMessage is a valid chat.messages.send action (INSERT) of a MESSAGE.
func chatMessage(sID, chatID, senderID, text string) map[string]any {
	return map[string]any{
		"op": "INSERT",
		"data": map[string]any{
			"sId": sID, "chatId": chatID, "senderId": senderID, "message": text,
			"type": "MESSAGE", "data": map[string]any{}, "isPinned": false,
			"created_at": time.Now().UTC().Format(time.RFC3339Nano), "updated_at": time.Now().UTC().Format(time.RFC3339Nano),
		},
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// deepArray returns n nested JSON arrays.
func deepArray(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// badCase is one row of the bad-input table.
type badCase struct {
	name string
	// open: send before the Socket.IO CONNECT (the default is after it).
	open bool
	// send writes the bad input.
	send func(w *rawWS) error
	// closeCode > 0: the server must close the websocket with that code
	// (-1: TCP close without a close frame). 0: the connection must stay
	// usable (a "time" probe is answered).
	closeCode int
	// reply, when set, is the prefix of a message that must arrive first.
	reply string
	// sentinel, for ignored plugin events: an event to the same plugin sent
	// right after the bad one, and the prefix of its answer, which must be
	// the next message (plugins handle one socket's events in order, so
	// nothing was answered to the bad one).
	sentinel, sentinelReply string
	// reason is the realtime_socketio_malformed_packets_total label that
	// must grow ("" = not counted there).
	reason string
}

func sendText(s string) func(w *rawWS) error { return func(w *rawWS) error { return w.text(s) } }

func sendFrame(fin bool, rsv, op byte, payload string, unmasked bool) func(w *rawWS) error {
	return func(w *rawWS) error { return w.frame(fin, rsv, op, []byte(payload), unmasked) }
}

// badCases is the bad-input table: broken Engine.IO and Socket.IO packets,
// websocket protocol violations, wrong payload types, huge and deep values,
// invalid UTF-8 and binary frames. Outcomes are host/socketio's documented
// ones (host/socketio/doc.go "Bad input"), auth's refusals, and the
// presence, chat, handraise and analytics plugins' documented handling of
// bad arguments.
func badCases(t *testing.T) []badCase {
	page := "/conference/demo/room/bad-input"
	chatID := newUUID()
	observe := `42["observePage","` + page + `"]`
	subscribe := `42["chat.subscribe","` + chatID + `"]`
	sid := newUUID()
	huge := strings.Repeat("x", 20000)
	badToken := `40{"token":"a.b.c"}`
	// The hand-raise sentinel: a fetch of a valid event, answered with its
	// listing to this socket only (the static directory lets any member in).
	handEvent := newUUID()
	fetchHands := `42["event.handRaise.fetch","` + handEvent + `"]`
	handsListed := `42["event.handRaise.listing",{"eventId":"` + handEvent + `"`
	return []badCase{
		// --- websocket level
		{name: "binary frame", send: sendFrame(true, 0, opBinary, "42[\"time\"]", false), closeCode: 1003, reason: "binary_frame"},
		{name: "binary frame before CONNECT", open: true, send: sendFrame(true, 0, opBinary, "\x00\x01\x02", false), closeCode: 1003, reason: "binary_frame"},
		{name: "invalid UTF-8 text frame", send: sendText("42[\"time\",\"\xff\xfe\xfd\"]"), closeCode: 1007, reason: "invalid_utf8"},
		{name: "truncated UTF-8 sequence", send: sendText("42[\"enterPage\",\"\xe2\x82\"]"), closeCode: 1007, reason: "invalid_utf8"},
		{name: "frame larger than max_payload", send: sendText(`42["time","` + strings.Repeat("a", maxPayloadForTests+10) + `"]`), closeCode: 1009, reason: "too_large"},
		{name: "RSV1 bit without an extension", send: sendFrame(true, 0x40, opText, `42["time"]`, false), closeCode: 1002, reason: "ws_protocol_error"},
		{name: "unmasked client frame", send: sendFrame(true, 0, opText, `42["time"]`, true), closeCode: 1002, reason: "ws_protocol_error"},
		{name: "reserved opcode 0x3", send: sendFrame(true, 0, 0x3, `x`, false), closeCode: 1002, reason: "ws_protocol_error"},
		{name: "fragmented ping", send: sendFrame(false, 0, opPing, `x`, false), closeCode: 1002, reason: "ws_protocol_error"},
		{name: "control frame over 125 bytes", send: sendFrame(true, 0, opPing, strings.Repeat("p", 200), false), closeCode: 1002, reason: "ws_protocol_error"},
		{name: "continuation without a start", send: sendFrame(true, 0, opCont, `42["time"]`, false), closeCode: 1002, reason: "ws_protocol_error"},
		{name: "text split over continuation frames is fine", send: func(w *rawWS) error {
			if err := w.frame(false, 0, opText, []byte(`42["ti`), false); err != nil {
				return err
			}
			return w.frame(true, 0, opCont, []byte(`me",{"a":1}]`), false)
		}, reply: `42["time",`},
		{name: "websocket ping is answered", send: sendFrame(true, 0, opPing, "hi", false)},
		// --- Engine.IO level
		{name: "empty text frame", send: sendText(""), closeCode: 1002, reason: "engine_empty"},
		{name: "Engine.IO open packet from the client", send: sendText("0"), closeCode: 1002, reason: "engine_unknown_type"},
		{name: "Engine.IO type 7", send: sendText("7hello"), closeCode: 1002, reason: "engine_unknown_type"},
		{name: "Engine.IO type not a digit", send: sendText("{}"), closeCode: 1002, reason: "engine_unknown_type"},
		{name: "Engine.IO upgrade", send: sendText("5"), reason: "engine_unexpected_upgrade"},
		{name: "Engine.IO noop", send: sendText("6")},
		{name: "Engine.IO pong without ping", send: sendText("3")},
		{name: "Engine.IO ping probe is answered", send: sendText("2probe"), reply: "3probe"},
		{name: "Engine.IO close", send: sendText("1"), closeCode: 1000},
		// --- Socket.IO level
		{name: "empty Socket.IO packet", send: sendText("4"), closeCode: 1002, reason: "empty"},
		{name: "Socket.IO type 7", send: sendText(`47["time"]`), closeCode: 1002, reason: "unknown_type"},
		{name: "BINARY_EVENT", send: sendText(`451-["time",{"_placeholder":true,"num":0}]`), closeCode: 1002, reason: "binary_unsupported"},
		{name: "BINARY_ACK", send: sendText(`461-1[{"_placeholder":true,"num":0}]`), closeCode: 1002, reason: "binary_unsupported"},
		{name: "ack id overflowing int64", send: sendText(`4299999999999999999999999["time"]`), closeCode: 1002, reason: "bad_ack_id"},
		{name: "ack id on DISCONNECT", send: sendText(`417`), closeCode: 1002, reason: "bad_ack_id"},
		{name: "ACK without id", send: sendText(`43[]`), closeCode: 1002, reason: "bad_ack_id"},
		{name: "JSON nested 33 deep", send: sendText(`42["time",` + deepArray(32) + `]`), closeCode: 1002, reason: "too_deep"},
		{name: "JSON nested 10000 deep", send: sendText(`42["time",` + deepArray(10000) + `]`), closeCode: 1002, reason: "too_deep"},
		{name: "invalid JSON", send: sendText(`42["time",`), closeCode: 1002, reason: "bad_json"},
		{name: "trailing garbage after JSON", send: sendText(`42["time"]x`), closeCode: 1002, reason: "bad_json"},
		{name: "EVENT payload is an object", send: sendText(`42{"time":1}`), closeCode: 1002, reason: "bad_payload"},
		{name: "EVENT payload is an empty array", send: sendText(`42[]`), closeCode: 1002, reason: "bad_payload"},
		{name: "EVENT payload is a string", send: sendText(`42"time"`), closeCode: 1002, reason: "bad_payload"},
		{name: "EVENT name is a number", send: sendText(`42[42,"x"]`), closeCode: 1002, reason: "event_name_not_string"},
		{name: "EVENT name is null", send: sendText(`42[null]`), closeCode: 1002, reason: "event_name_not_string"},
		{name: "DISCONNECT with a payload", send: sendText(`41{}`), closeCode: 1002, reason: "bad_payload"},
		{name: "CONNECT payload is a string", open: true, send: sendText(`40"token"`), closeCode: 1002, reason: "bad_payload"},
		{name: "CONNECT to another namespace", send: sendText(`40/admin,{}`), reply: `44/admin,{"message":"Invalid namespace"`, reason: "invalid_namespace"},
		{name: "EVENT on another namespace", send: sendText(`42/admin,["time"]`), reason: "wrong_namespace"},
		{name: "EVENT before CONNECT", open: true, send: sendText(`42["time"]`), reason: "event_before_connect"},
		{name: "DISCONNECT before CONNECT", open: true, send: sendText(`41`), reason: "disconnect_before_connect"},
		{name: "second CONNECT", send: sendText(`40{"token":"x"}`), reason: "duplicate_connect"},
		{name: "ACK from the client", send: sendText(`430[]`), reason: "unexpected_ack"},
		{name: "CONNECT_ERROR from the client", send: sendText(`44{"message":"x"}`), reason: "unexpected_connect_error"},
		{name: "six CONNECTs with bad tokens", open: true, send: func(w *rawWS) error {
			for i := 0; i < 5; i++ {
				if err := w.text(badToken); err != nil {
					return err
				}
				if _, err := w.expect(`44{"message":"Unauthorized: Token is missing or invalid Bearer"`, 5*time.Second); err != nil {
					return fmt.Errorf("attempt %d: %w", i+1, err)
				}
			}
			return w.text(badToken)
		}, closeCode: 1002, reason: "too_many_connect_attempts"},
		// --- auth payloads (answers of host/auth, original-service.md §2.4)
		{name: "CONNECT without a token", open: true, send: sendText(`40{}`), reply: `44{"message":"no token provided"`},
		{name: "CONNECT token is a number", open: true, send: sendText(`40{"token":42}`), reply: `44{"message":"no token provided"`},
		{name: "CONNECT token of 20000 bytes", open: true, send: sendText(`40{"token":"` + huge + `"}`), reply: `44{"message":"Unauthorized: Token is missing or invalid Bearer"`},
		{name: "CONNECT token with NULs and escapes", open: true, send: sendText(`40{"token":"\u0000.\ud800.\n"}`), reply: `44{"message":"Unauthorized: Token is missing or invalid Bearer"`},
		// --- plugin payloads: wrong types, huge and odd strings
		{name: "enterPage with a number", send: sendText(`42["enterPage",42]`), sentinel: observe, sentinelReply: `42["presences",`},
		{name: "enterPage without an argument", send: sendText(`42["enterPage"]`), sentinel: observe, sentinelReply: `42["presences",`},
		{name: "enterPage with a 20000-byte path", send: sendText(`42["enterPage","/conference/demo/` + huge + `"]`), sentinel: observe, sentinelReply: `42["presences",`},
		{name: "enterPage with an object 31 deep", send: sendText(`42["enterPage",` + deepArray(31) + `]`), sentinel: observe, sentinelReply: `42["presences",`},
		{name: "enterPage with a lone surrogate", send: sendText(`42["enterPage","/conference/demo/\ud800"]`), sentinel: observe, sentinelReply: `42["presences",`},
		{name: "observePage of a foreign conference", send: sendText(`42["observePage","/conference/other/x"]`), sentinel: observe, sentinelReply: `42["presences",`},
		{name: "chat.subscribe with an object", send: sendText(`42["chat.subscribe",{"chatId":"x"}]`), sentinel: subscribe, sentinelReply: `42["chat.subscribe.ack",`},
		{name: "chat.subscribe with a non-UUID", send: sendText(`42["chat.subscribe","` + huge + `"]`), sentinel: subscribe, sentinelReply: `42["chat.subscribe.ack",`},
		{name: "chat.messages.send with a string", send: sendText(`42["chat.messages.send","hello"]`), reply: `42["chat.messages.send.nack",null]`},
		{name: "chat.messages.send without data", send: sendText(`42["chat.messages.send",{"op":"INSERT","sId":"` + sid + `"}]`), reply: `42["chat.messages.send.nack",`},
		{name: "chat.messages.send with missing keys", send: sendText(`42["chat.messages.send",{"op":"INSERT","data":{"sId":"` + sid + `"}}]`), reply: `42["chat.messages.send.nack","` + sid + `"]`},
		{name: "chat.messages.send with a wrong op", send: sendText(`42["chat.messages.send",` + strings.Replace(mustJSON(chatMessage(sid, chatID, newUUID(), "x")), `"INSERT"`, `"UPSERT"`, 1) + `]`), reply: `42["chat.messages.send.nack","` + sid + `"]`},
		{name: "chat.messages.send over max_message_bytes", send: sendText(`42["chat.messages.send",` + mustJSON(chatMessage(sid, chatID, newUUID(), huge)) + `]`), reply: `42["chat.messages.send.nack","` + sid + `"]`},
		{name: "chat.messages.send as another sender", send: sendText(`42["chat.messages.send",` + mustJSON(chatMessage(sid, chatID, newUUID(), "spoof")) + `]`), reply: `42["chat.messages.send.nack","` + sid + `"]`},
		{name: "hand raise with a number", send: sendText(`42["event.handRaise.raise",42]`), sentinel: fetchHands, sentinelReply: handsListed},
		{name: "hand raise with an object", send: sendText(`42["event.handRaise.raise",{"eventId":"` + handEvent + `"}]`), sentinel: fetchHands, sentinelReply: handsListed},
		{name: "hand-raise fetch with null", send: sendText(`42["event.handRaise.fetch",null]`), sentinel: fetchHands, sentinelReply: handsListed},
		{name: "hand-raise fetch with a 20000-byte eventId", send: sendText(`42["event.handRaise.fetch","` + huge + `"]`), sentinel: fetchHands, sentinelReply: handsListed},
		{name: "hand-raise fetch with a NUL after the UUID", send: sendText(`42["event.handRaise.fetch","` + newUUID() + `\u0000"]`), sentinel: fetchHands, sentinelReply: handsListed},
		{name: "hand-raise accept with a 20000-byte target", send: sendText(`42["event.handRaise.accept","` + handEvent + `","` + huge + `"]`), sentinel: fetchHands, sentinelReply: handsListed},
		{name: "hand-raise reject with an array target", send: sendText(`42["event.handRaise.reject","` + handEvent + `",` + deepArray(30) + `]`), sentinel: fetchHands, sentinelReply: handsListed},
		// analytics never answers: only "no close, still usable, no panic" is observable.
		{name: "analytics view with a string", send: sendText(`42["analytics.view.count","` + newUUID() + `"]`)},
		{name: "analytics view with a 20000-byte identifier", send: sendText(`42["analytics.view.count",{"identifier":"` + huge + `","contentType":"Item"}]`)},
		{name: "analytics view with a number contentType", send: sendText(`42["analytics.view.count",{"identifier":"` + newUUID() + `","contentType":1e999}]`)},
		{name: "analytics view with an object 31 deep", send: sendText(`42["analytics.view.count",` + deepArray(31) + `]`)},
		{name: "unknown event", send: sendText(`42["no.such.event",1,2,3]`)},
		{name: "time with a huge number", send: sendText(`42["time",1e999999]`), reply: `42["time",{"serverSendTime":`},
	}
}

// TestBadInput sends every row of badCases on a fresh connection and checks
// the documented outcome, the malformed-packet counter, and that the server
// is still up afterwards.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := launch(t, serverOpts{name: "bad-input", plugins: []string{"presence", "chat", "handraise", "analytics"}, args: []string{
		"--set", fmt.Sprintf("socketio.max_payload=%d", maxPayloadForTests),
	}})
	cases := badCases(t)
	if len(cases) < 30 {
		t.Fatalf("only %d bad-input cases, want at least 30", len(cases))
	}
	user := newUUID()
	tok := token(t, user)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.metrics(t).sum("realtime_socketio_malformed_packets_total", `reason="`+tc.reason+`"`)
			w, err := dialRaw(s.URL)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer w.Close()
			if !tc.open {
				if err := w.connect(tok); err != nil {
					t.Fatalf("connect: %v", err)
				}
			}
			if err := tc.send(w); err != nil {
				t.Fatalf("send: %v", err)
			}
			if tc.sentinel != "" {
				if err := w.text(tc.sentinel); err != nil {
					t.Fatalf("send sentinel: %v", err)
				}
			}
			switch {
			case tc.closeCode != 0:
				code, err := w.closeCode(10 * time.Second)
				if err != nil {
					t.Fatalf("want close %d: %v", tc.closeCode, err)
				}
				if code != tc.closeCode {
					t.Fatalf("closed with %d, want %d", code, tc.closeCode)
				}
			default:
				if tc.reply != "" {
					if _, err := w.expect(tc.reply, 10*time.Second); err != nil {
						t.Fatalf("want a reply %q: %v", tc.reply, err)
					}
				}
				if tc.sentinel != "" {
					m, err := w.next(10 * time.Second)
					if err != nil {
						t.Fatalf("want the sentinel's answer: %v", err)
					}
					if !strings.HasPrefix(m, tc.sentinelReply) {
						t.Fatalf("the bad event was answered: got %q before the sentinel's answer %q", m, tc.sentinelReply)
					}
				}
				if tc.open {
					if err := w.connect(tok); err != nil {
						t.Fatalf("CONNECT after the bad input: %v", err)
					}
				}
				if err := w.probe(); err != nil {
					t.Fatalf("connection not usable after the bad input: %v", err)
				}
			}
			if tc.reason != "" {
				ok := within(5*time.Second, func() bool {
					return s.metrics(t).sum("realtime_socketio_malformed_packets_total", `reason="`+tc.reason+`"`) > before
				})
				if !ok {
					t.Errorf("realtime_socketio_malformed_packets_total{reason=%q} did not grow", tc.reason)
				}
			}
		})
	}
	if s.exited() {
		t.Fatalf("server exited during the bad-input table: %v", s.err)
	}
	if code, body := httpGet(s.URL + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after the bad-input table: %d %s", code, body)
	}
	if n := s.log.CountLines("panic"); n > 0 {
		t.Errorf("%d log lines mention a panic", n)
	}
}

// TestBadUpgrade checks the HTTP answers to bad Engine.IO handshakes
// (host/socketio/doc.go "HTTP answers") and that the server stays up.
func TestBadUpgrade(t *testing.T) {
	t.Parallel()
	s := launch(t, serverOpts{name: "bad-upgrade", args: []string{"--set", "socketio.cors_origin=https://app.example.org"}})
	const ws = "/socket.io/?EIO=4&transport=websocket"
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		status int
		body   string // substring
	}{
		{"polling transport", "GET", "/socket.io/?EIO=4&transport=polling", nil, 400, `{"code":0,"message":"Transport unknown"}`},
		{"no transport", "GET", "/socket.io/?EIO=4", nil, 400, `{"code":0,"message":"Transport unknown"}`},
		{"sid of a polling session", "GET", ws + "&sid=abc", nil, 400, `{"code":1,"message":"Session ID unknown"}`},
		{"POST", "POST", ws, map[string]string{"Content-Length": "0"}, 400, `{"code":2,"message":"Bad handshake method"}`},
		{"foreign Origin", "GET", ws, map[string]string{"Origin": "https://evil.example.com"}, 403, `{"code":4,"message":"Forbidden"}`},
		{"EIO=3", "GET", "/socket.io/?EIO=3&transport=websocket", nil, 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"EIO missing", "GET", "/socket.io/?transport=websocket", nil, 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"no Upgrade header", "GET", ws, map[string]string{"Upgrade": "", "Connection": ""}, 400, `{"code":3,"message":"Bad request"}`},
		{"wrong Sec-WebSocket-Version", "GET", ws, map[string]string{"Sec-WebSocket-Version": "8"}, 400, ""},
		{"no Sec-WebSocket-Key", "GET", ws, map[string]string{"Sec-WebSocket-Key": ""}, 400, ""},
		{"64 KiB header", "GET", ws, map[string]string{"X-Big": strings.Repeat("b", 70<<10)}, 431, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, resp, err := rawUpgrade(s.URL, tc.method, tc.path, tc.header)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if w != nil {
				w.Close()
				t.Fatalf("upgraded (101), want %d", tc.status)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(string(body), tc.body) {
				t.Fatalf("body %q, want it to contain %q", body, tc.body)
			}
		})
	}
	// The allowed origin still upgrades.
	w, resp, err := rawUpgrade(s.URL, "GET", ws, map[string]string{"Origin": "https://app.example.org"})
	if err != nil || w == nil {
		t.Fatalf("allowed origin: %v %v", err, resp)
	}
	w.Close()
	if code, _ := httpGet(s.URL + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after bad upgrades: %d", code)
	}
}
