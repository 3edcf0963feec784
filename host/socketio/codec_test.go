package socketio

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// unauthorized mirrors the original service's error data (field order matters
// for the exact bytes).
type unauthorized struct {
	Message string `json:"message"`
	Code    string `json:"code"`
	Type    string `json:"type"`
}

func TestEncodeFrames(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"open", EncodeOpen("abc", 25000, 5000, 1000000),
			`0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}`},
		{"connect ack", EncodeConnect("abcdefghij0123456789"), `40{"sid":"abcdefghij0123456789"}`},
		{"connect error with data", EncodeConnectError("no token provided", unauthorized{
			Message: "no token provided", Code: "credentials_required", Type: "UnauthorizedError"}),
			`44{"message":"no token provided","data":{"message":"no token provided","code":"credentials_required","type":"UnauthorizedError"}}`},
		{"connect error invalid token", EncodeConnectError("Unauthorized: Token is missing or invalid Bearer", unauthorized{
			Message: "Unauthorized: Token is missing or invalid Bearer", Code: "invalid_token", Type: "UnauthorizedError"}),
			`44{"message":"Unauthorized: Token is missing or invalid Bearer","data":{"message":"Unauthorized: Token is missing or invalid Bearer","code":"invalid_token","type":"UnauthorizedError"}}`},
		{"connect error no data", EncodeConnectError("nope", nil), `44{"message":"nope"}`},
		{"connect error unmarshalable data", EncodeConnectError("nope", func() {}), `44{"message":"nope"}`},
		{"namespace error", encodeConnectErrorNS("/admin", "Invalid namespace", nil), `44/admin,{"message":"Invalid namespace"}`},
		{"disconnect", EncodeDisconnect(), `41`},
		{"event raw two args", EncodeEventRaw("chat.unreadCount.update", []json.RawMessage{json.RawMessage(`"c1"`), json.RawMessage(`"3"`)}),
			`42["chat.unreadCount.update","c1","3"]`},
		{"event raw nil arg", EncodeEventRaw("x", []json.RawMessage{nil}), `42["x",null]`},
		{"event raw no args", EncodeEventRaw("x", nil), `42["x"]`},
		{"ack", EncodeAck(12, []json.RawMessage{json.RawMessage(`"pong"`), json.RawMessage(`{"a":1}`)}), `4312["pong",{"a":1}]`},
		{"ack empty", EncodeAck(0, nil), `430[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Errorf("got  %s\nwant %s", tt.got, tt.want)
			}
		})
	}
}

func TestEncodeEvent(t *testing.T) {
	tests := []struct {
		name    string
		event   string
		args    []any
		want    string
		wantErr bool
	}{
		{"string arg", "enterPage", []any{"/conference/popl/room/123"}, `42["enterPage","/conference/popl/room/123"]`, false},
		{"two args", "chat.unreadCount.update", []any{"<chatId>", "3"}, `42["chat.unreadCount.update","<chatId>","3"]`, false},
		{"raw passes through unchanged", "e", []any{json.RawMessage(`{"b": 2, "a": 1}`)}, `42["e",{"b": 2, "a": 1}]`, false},
		{"mixed", "e", []any{1, true, nil, map[string]int{"x": 1}}, `42["e",1,true,null,{"x":1}]`, false},
		{"quotes in name", `a"b`, nil, `42["a\"b"]`, false},
		{"invalid raw", "e", []any{json.RawMessage(`{`)}, "", true},
		{"unmarshalable", "e", []any{make(chan int)}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeEvent(tt.event, tt.args...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDecodePacket(t *testing.T) {
	tests := []struct {
		name       string
		in         string // Socket.IO part, after the Engine.IO '4'
		want       Packet
		wantReason string // "" = success
	}{
		{"connect with token", `0{"token":"eyJ"}`, Packet{Type: PacketConnect, Namespace: "/", AckID: -1, Data: json.RawMessage(`{"token":"eyJ"}`)}, ""},
		{"connect no auth", `0`, Packet{Type: PacketConnect, Namespace: "/", AckID: -1}, ""},
		{"connect sid (server frame)", `0{"sid":"abc"}`, Packet{Type: PacketConnect, Namespace: "/", AckID: -1, Data: json.RawMessage(`{"sid":"abc"}`)}, ""},
		{"connect other namespace", `0/admin,{"token":"x"}`, Packet{Type: PacketConnect, Namespace: "/admin", AckID: -1, Data: json.RawMessage(`{"token":"x"}`)}, ""},
		{"disconnect", `1`, Packet{Type: PacketDisconnect, Namespace: "/", AckID: -1}, ""},
		{"disconnect namespace no comma", `1/admin`, Packet{Type: PacketDisconnect, Namespace: "/admin", AckID: -1}, ""},
		{"disconnect namespace comma", `1/admin,`, Packet{Type: PacketDisconnect, Namespace: "/admin", AckID: -1}, ""},
		{"event", `2["enterPage","/conference/popl/room/123"]`, Packet{Type: PacketEvent, Namespace: "/", AckID: -1, Data: json.RawMessage(`["enterPage","/conference/popl/room/123"]`)}, ""},
		{"event with ack", `212["x"]`, Packet{Type: PacketEvent, Namespace: "/", AckID: 12, Data: json.RawMessage(`["x"]`)}, ""},
		{"event ns and ack", `2/admin,7["x"]`, Packet{Type: PacketEvent, Namespace: "/admin", AckID: 7, Data: json.RawMessage(`["x"]`)}, ""},
		{"event max ack", `29223372036854775807["x"]`, Packet{Type: PacketEvent, Namespace: "/", AckID: 9223372036854775807, Data: json.RawMessage(`["x"]`)}, ""},
		{"ack", `35["a"]`, Packet{Type: PacketAck, Namespace: "/", AckID: 5, Data: json.RawMessage(`["a"]`)}, ""},
		{"ack empty array", `35[]`, Packet{Type: PacketAck, Namespace: "/", AckID: 5, Data: json.RawMessage(`[]`)}, ""},
		{"connect error", `4{"message":"m"}`, Packet{Type: PacketConnectError, Namespace: "/", AckID: -1, Data: json.RawMessage(`{"message":"m"}`)}, ""},
		{"connect error string", `4"m"`, Packet{Type: PacketConnectError, Namespace: "/", AckID: -1, Data: json.RawMessage(`"m"`)}, ""},

		{"empty", ``, Packet{}, ReasonEmpty},
		{"unknown type", `7["x"]`, Packet{}, ReasonUnknownType},
		{"letter type", `x`, Packet{}, ReasonUnknownType},
		{"binary event", `51-["x",{"_placeholder":true,"num":0}]`, Packet{}, ReasonBinaryUnsupported},
		{"binary ack", `61-1[{"_placeholder":true,"num":0}]`, Packet{}, ReasonBinaryUnsupported},
		{"ack id overflow", `29223372036854775808["x"]`, Packet{}, ReasonBadAckID},
		{"ack id huge", `2` + strings.Repeat("9", 400) + `["x"]`, Packet{}, ReasonBadAckID},
		{"ack id on connect", `01{}`, Packet{}, ReasonBadAckID},
		{"ack without id", `3["a"]`, Packet{}, ReasonBadAckID},
		{"bad json", `2["x",]`, Packet{}, ReasonBadJSON},
		{"truncated json", `2["x"`, Packet{}, ReasonBadJSON},
		{"trailing garbage", `2["x"]x`, Packet{}, ReasonBadJSON},
		{"invalid utf8", "2[\"\xff\"]", Packet{}, ReasonInvalidUTF8},
		{"too deep", `2["x",` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `]`, Packet{}, ReasonTooDeep},
		{"brackets in strings do not count", `2["x","` + strings.Repeat("[", 40) + `"]`, Packet{Type: PacketEvent, Namespace: "/", AckID: -1, Data: json.RawMessage(`["x","` + strings.Repeat("[", 40) + `"]`)}, ""},
		{"event object", `2{"a":1}`, Packet{}, ReasonBadPayload},
		{"event empty array", `2[ ]`, Packet{}, ReasonBadPayload},
		{"event no data", `2`, Packet{}, ReasonBadPayload},
		{"connect array", `0["x"]`, Packet{}, ReasonBadPayload},
		{"connect null", `0null`, Packet{}, ReasonBadPayload},
		{"disconnect with data", `1{}`, Packet{}, ReasonBadPayload},
		{"ack object", `31{}`, Packet{}, ReasonBadPayload},
		{"connect error number", `41`, Packet{}, ReasonBadAckID},
		{"connect error array", `4[1]`, Packet{}, ReasonBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodePacket([]byte(tt.in))
			if tt.wantReason != "" {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want DecodeError %s", err, tt.wantReason)
				}
				if de.Reason != tt.wantReason {
					t.Fatalf("reason = %s (%v), want %s", de.Reason, err, tt.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.Type != tt.want.Type || got.Namespace != tt.want.Namespace || got.AckID != tt.want.AckID || string(got.Data) != string(tt.want.Data) {
				t.Errorf("got %+v (data %s), want %+v (data %s)", got, got.Data, tt.want, tt.want.Data)
			}
			if (got.Data == nil) != (tt.want.Data == nil) {
				t.Errorf("data nil = %v, want %v", got.Data == nil, tt.want.Data == nil)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	tests := []struct {
		name       string
		data       string
		typ        PacketType
		wantName   string
		wantArgs   []string
		wantReason string
	}{
		{"one arg", `["enterPage","/conference/popl/room/123"]`, PacketEvent, "enterPage", []string{`"/conference/popl/room/123"`}, ""},
		{"no args", `["time"]`, PacketEvent, "time", []string{}, ""},
		{"nested and whitespace", ` [ "e" , {"a":[1,2,{"b":","}]} , [ ] , "x\"]," , null ] `, PacketEvent, "e",
			[]string{`{"a":[1,2,{"b":","}]}`, `[ ]`, `"x\"],"`, `null`}, ""},
		{"escaped name", `["a\u0041\"b"]`, PacketEvent, `aA"b`, []string{}, ""},
		{"name not string", `[1,"x"]`, PacketEvent, "", nil, ReasonEventNameType},
		{"name object", `[{"a":1}]`, PacketEvent, "", nil, ReasonEventNameType},
		{"not array", `{"a":1}`, PacketEvent, "", nil, ReasonEventNotArray},
		{"empty array", `[]`, PacketEvent, "", nil, ReasonEventNotArray},
		{"string", `"x"`, PacketEvent, "", nil, ReasonEventNotArray},
		{"invalid json", `["x",`, PacketEvent, "", nil, ReasonBadJSON},
		{"nil data", ``, PacketEvent, "", nil, ReasonBadJSON},
		{"not event", `["x"]`, PacketAck, "", nil, ReasonNotEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data json.RawMessage
			if tt.data != "" {
				data = json.RawMessage(tt.data)
			}
			name, args, err := DecodeEvent(Packet{Type: tt.typ, Namespace: "/", AckID: -1, Data: data})
			if tt.wantReason != "" {
				var de *DecodeError
				if !errors.As(err, &de) || de.Reason != tt.wantReason {
					t.Fatalf("err = %v, want reason %s", err, tt.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if name != tt.wantName {
				t.Errorf("name = %q, want %q", name, tt.wantName)
			}
			if len(args) != len(tt.wantArgs) {
				t.Fatalf("args = %q, want %q", args, tt.wantArgs)
			}
			for i := range args {
				if string(args[i]) != tt.wantArgs[i] {
					t.Errorf("arg %d = %s, want %s", i, args[i], tt.wantArgs[i])
				}
			}
		})
	}
}

// TestRoundTrip decodes what the encoder produces.
func TestRoundTrip(t *testing.T) {
	frame, err := EncodeEvent("chat.messages.send", map[string]any{"sId": "s1", "message": "héllo \u2028 <b>"}, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if string(frame[:2]) != "42" {
		t.Fatalf("frame %s does not start with 42", frame)
	}
	p, err := DecodePacket(frame[1:])
	if err != nil {
		t.Fatal(err)
	}
	name, args, err := DecodeEvent(p)
	if err != nil {
		t.Fatal(err)
	}
	if name != "chat.messages.send" || len(args) != 2 {
		t.Fatalf("name %q args %q", name, args)
	}
	var m map[string]string
	if err := json.Unmarshal(args[0], &m); err != nil || m["message"] != "héllo \u2028 <b>" {
		t.Fatalf("arg0 %s: %v", args[0], err)
	}
}

func FuzzDecodePacket(f *testing.F) {
	for _, s := range []string{`0{"token":"eyJ"}`, `0`, `1`, `2["enterPage","/x"]`, `212["x",{"a":[1]}]`, `2/admin,3["x"]`, `35[]`, `4{"message":"m"}`, `51-["x"]`, `29223372036854775808["x"]`, "2[\"\xff\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := DecodePacket(msg)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v is not a DecodeError with a reason", err)
			}
			return
		}
		if p.Data != nil && !json.Valid(p.Data) {
			t.Fatalf("accepted invalid JSON %q", p.Data)
		}
		if p.AckID < -1 {
			t.Fatalf("negative ack id %d", p.AckID)
		}
		if p.Type == PacketEvent {
			name, args, err := DecodeEvent(p)
			if err == nil {
				// Re-encoding must give a frame that decodes to the same event.
				frame := EncodeEventRaw(name, args)
				p2, err := DecodePacket(frame[1:])
				if err != nil {
					t.Fatalf("re-encoded %q does not decode: %v", frame, err)
				}
				name2, args2, err := DecodeEvent(p2)
				if err != nil || name2 != name || len(args2) != len(args) {
					t.Fatalf("round trip mismatch: %q %q vs %q %q (%v)", name, args, name2, args2, err)
				}
			}
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`["x"]`, `["x",1,{"a":"]"}]`, `[]`, `{}`, `[1]`, `["\""]`, ` [ "a" , [ ] ] `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		name, args, err := DecodeEvent(Packet{Type: PacketEvent, Namespace: "/", AckID: -1, Data: data})
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		for i, a := range args {
			if !json.Valid(a) {
				t.Fatalf("arg %d %q is not valid JSON (event %q)", i, a, name)
			}
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(data, &arr); err != nil || len(arr) != len(args)+1 {
			t.Fatalf("split %d args, encoding/json sees %d (%v)", len(args), len(arr)-1, err)
		}
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	arg := map[string]any{"sId": "0b8f0a2e-7d0c-4b5e-9c4b-2f1f6f3b8a11", "chatId": "c1", "message": "hello world"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeEvent("chat.messages.receive", arg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEventRaw(b *testing.B) {
	args := []json.RawMessage{json.RawMessage(`{"sId":"0b8f0a2e-7d0c-4b5e-9c4b-2f1f6f3b8a11","chatId":"c1","message":"hello world"}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeEventRaw("chat.messages.receive", args)
	}
}

func BenchmarkDecodePacket(b *testing.B) {
	msg := []byte(`2["chat.messages.send",{"sId":"0b8f0a2e-7d0c-4b5e-9c4b-2f1f6f3b8a11","chatId":"c1","message":"hello world","data":{}}]`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		p, err := DecodePacket(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := DecodeEvent(p); err != nil {
			b.Fatal(err)
		}
	}
}
