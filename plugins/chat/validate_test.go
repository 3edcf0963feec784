package chat

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseAction(t *testing.T) {
	type mut func(a, d map[string]any)
	del := func(k string) mut { return func(_, d map[string]any) { delete(d, k) } }
	set := func(k string, v any) mut { return func(_, d map[string]any) { d[k] = v } }
	tests := []struct {
		name    string
		kind    kind
		mut     mut
		raw     string // used instead of a mutated action when set
		wantErr bool
	}{
		{name: "good message", kind: kindMessage},
		{name: "good reaction", kind: kindReaction},
		{name: "message senderId null", kind: kindMessage, mut: set("senderId", nil)},
		{name: "message senderId empty", kind: kindMessage, mut: set("senderId", "")},
		{name: "message senderId not a UUID", kind: kindMessage, mut: set("senderId", "bob"), wantErr: true},
		{name: "message senderId number", kind: kindMessage, mut: set("senderId", 5), wantErr: true},
		{name: "message bad type", kind: kindMessage, mut: set("type", "message"), wantErr: true},
		{name: "message reaction-only type", kind: kindMessage, mut: set("type", "EMOJI"), wantErr: true},
		{name: "message bad chatId", kind: kindMessage, mut: set("chatId", "chat-1"), wantErr: true},
		{name: "message bad sId", kind: kindMessage, mut: set("sId", "1234"), wantErr: true},
		{name: "message sId number", kind: kindMessage, mut: set("sId", 1234), wantErr: true},
		{name: "message isPinned string", kind: kindMessage, mut: set("isPinned", "false"), wantErr: true},
		{name: "message text number", kind: kindMessage, mut: set("message", 1), wantErr: true},
		{name: "message data null allowed", kind: kindMessage, mut: set("data", nil)},
		{name: "message duplicatedMessageSId null", kind: kindMessage, mut: set("duplicatedMessageSId", nil)},
		{name: "message duplicatedMessageSId valid", kind: kindMessage, mut: set("duplicatedMessageSId", sid2)},
		{name: "message duplicatedMessageSId bad", kind: kindMessage, mut: set("duplicatedMessageSId", "x"), wantErr: true},
		{name: "message systemId number", kind: kindMessage, mut: set("systemId", 3), wantErr: true},
		{name: "message remoteServiceId string", kind: kindMessage, mut: set("remoteServiceId", "r")},
		{name: "message superfluous key", kind: kindMessage, mut: set("extra", []int{1})},
		{name: "reaction senderId null", kind: kindReaction, mut: set("senderId", nil), wantErr: true},
		{name: "reaction senderId empty", kind: kindReaction, mut: set("senderId", "")},
		{name: "reaction bad messageSId", kind: kindReaction, mut: set("messageSId", "m"), wantErr: true},
		{name: "reaction bad duplicateSId", kind: kindReaction, mut: set("duplicateSId", "d"), wantErr: true},
		{name: "reaction message-only type", kind: kindReaction, mut: set("type", "MESSAGE"), wantErr: true},
		{name: "bad op", kind: kindMessage, mut: func(a, _ map[string]any) { a["op"] = "insert" }, wantErr: true},
		{name: "missing op", kind: kindMessage, mut: func(a, _ map[string]any) { delete(a, "op") }, wantErr: true},
		{name: "missing data", kind: kindMessage, mut: func(a, _ map[string]any) { delete(a, "data") }, wantErr: true},
		{name: "data array", kind: kindMessage, mut: func(a, _ map[string]any) { a["data"] = []any{} }, wantErr: true},
		{name: "null", kind: kindMessage, raw: `null`, wantErr: true},
		{name: "string", kind: kindMessage, raw: `"x"`, wantErr: true},
		{name: "truncated", kind: kindMessage, raw: `{"op":"INSERT","data":{`, wantErr: true},
	}
	// Every required key, missing.
	for _, r := range messageRules {
		if !r.optional {
			tests = append(tests, struct {
				name    string
				kind    kind
				mut     mut
				raw     string
				wantErr bool
			}{name: "message missing " + r.key, kind: kindMessage, mut: del(r.key), wantErr: true})
		}
	}
	for _, r := range reactionRules {
		if !r.optional {
			tests = append(tests, struct {
				name    string
				kind    kind
				mut     mut
				raw     string
				wantErr bool
			}{name: "reaction missing " + r.key, kind: kindReaction, mut: del(r.key), wantErr: true})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			if tt.raw == "" {
				d := message(sid1, regAlice)
				if tt.kind == kindReaction {
					d = reaction(sid1, regAlice)
				}
				a := act("INSERT", d)
				if tt.mut != nil {
					tt.mut(a, d)
				}
				raw = mustJSON(t, a)
			}
			a, err := parseAction(tt.kind, raw)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errInvalid) {
				t.Errorf("err %v does not wrap errInvalid", err)
			}
			if err == nil && (a.ChatID != chat1 || a.SID != sid1) {
				t.Errorf("parsed chat %q sId %q", a.ChatID, a.SID)
			}
		})
	}
}

func TestStampKeepsSuperfluousProperties(t *testing.T) {
	d := message(sid1, regAlice)
	d["id"] = "db-id"
	d["extra"] = map[string]any{"html": "<b>"}
	a := act("INSERT", d)
	a["meta"] = 7
	in, err := marshalJSON(a) // unescaped, as a browser sends it
	if err != nil {
		t.Fatal(err)
	}
	pa, err := parseAction(kindMessage, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.stamp(fixedNow); err != nil {
		t.Fatal(err)
	}
	body, err := pa.body()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	data := got["data"].(map[string]any)
	if _, ok := data["id"]; ok {
		t.Error("data.id kept on INSERT")
	}
	if data["created_at"] != "2021-04-01T12:30:45.123Z" || data["updated_at"] != "2021-04-01T12:30:45.123Z" {
		t.Errorf("timestamps = %v / %v", data["created_at"], data["updated_at"])
	}
	if got["meta"] != float64(7) || data["extra"].(map[string]any)["html"] != "<b>" {
		t.Errorf("superfluous properties lost: %s", body)
	}
	if !strings.Contains(string(body), "<b>") {
		t.Errorf("body is HTML-escaped: %s", body)
	}

	// UPDATE keeps created_at and id.
	d = message(sid1, regAlice)
	d["id"] = "db-id"
	pa, err = parseAction(kindMessage, mustJSON(t, act("UPDATE", d)))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.stamp(fixedNow.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if string(pa.data["created_at"]) != `"2000-01-01T00:00:00.000Z"` || string(pa.data["id"]) != `"db-id"` {
		t.Errorf("UPDATE changed created_at or id: %s %s", pa.data["created_at"], pa.data["id"])
	}
	if string(pa.data["updated_at"]) != `"2021-04-01T12:30:46.123Z"` {
		t.Errorf("updated_at = %s", pa.data["updated_at"])
	}
}

func TestSIDOf(t *testing.T) {
	tests := []struct {
		raw    string
		want   string
		wantOK bool
	}{
		{`{"data":{"sId":"abc"}}`, "abc", true},
		{`{"sId":"top"}`, "", false},
		{`{"data":{"sId":5}}`, "", false},
		{`null`, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		got, ok := sIDOf(json.RawMessage(tt.raw))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("sIDOf(%s) = %q, %v", tt.raw, got, ok)
		}
	}
}
