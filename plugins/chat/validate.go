package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
)

// Operations of an Action.
const (
	opInsert = "INSERT"
	opUpdate = "UPDATE"
	opDelete = "DELETE"
)

// kind says whether an action carries a Message or a Reaction.
type kind int

const (
	kindMessage kind = iota
	kindReaction
)

func (k kind) String() string {
	if k == kindReaction {
		return "reaction"
	}
	return "message"
}

// errInvalid marks a payload that fails validation.
var errInvalid = errors.New("invalid payload")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

var (
	messageTypes = map[string]bool{
		"ANSWER": true, "DUPLICATION_MARKER": true, "EMOTE": true, "MESSAGE": true,
		"POLL": true, "POLL_RESULTS": true, "QUESTION": true,
	}
	reactionTypes = map[string]bool{
		"ANSWER": true, "EMOJI": true, "POLL_CHOICE": true, "POLL_CLOSED": true, "POLL_COMPLETE": true,
	}
)

// A check validates one property value (raw JSON).
type check func(raw json.RawMessage) error

// rule is one property of a typescript-is interface check.
type rule struct {
	key      string
	optional bool
	check    check
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(raw, []byte("null")) }

func anyValue(json.RawMessage) error { return nil }

func stringValue(raw json.RawMessage) error {
	if _, ok := kit.JSONString(raw); !ok {
		return errors.New("must be a string")
	}
	return nil
}

func boolValue(raw json.RawMessage) error {
	if !bytes.Equal(raw, []byte("true")) && !bytes.Equal(raw, []byte("false")) {
		return errors.New("must be a boolean")
	}
	return nil
}

func uuidValue(raw json.RawMessage) error {
	s, ok := kit.JSONString(raw)
	if !ok {
		return errors.New("must be a string")
	}
	if !kit.ValidUUID(s) {
		return fmt.Errorf("%q is not a UUID", s)
	}
	return nil
}

// optUUIDValue is a string that is UUID-validated when non-empty (truthy).
func optUUIDValue(raw json.RawMessage) error {
	s, ok := kit.JSONString(raw)
	if !ok {
		return errors.New("must be a string")
	}
	if s != "" && !kit.ValidUUID(s) {
		return fmt.Errorf("%q is not a UUID", s)
	}
	return nil
}

func nullable(c check) check {
	return func(raw json.RawMessage) error {
		if isNull(raw) {
			return nil
		}
		return c(raw)
	}
}

func enumValue(allowed map[string]bool) check {
	return func(raw json.RawMessage) error {
		s, ok := kit.JSONString(raw)
		if !ok || !allowed[s] {
			return fmt.Errorf("%s is not an allowed value", raw)
		}
		return nil
	}
}

// messageRules is the Message interface (types/chat.ts L3-16) plus the UUID
// checks of socket-handlers/chat/messages.ts.
var messageRules = []rule{
	{key: "created_at", check: stringValue},
	{key: "updated_at", check: stringValue},
	{key: "type", check: enumValue(messageTypes)},
	{key: "chatId", check: uuidValue},
	{key: "senderId", check: nullable(optUUIDValue)},
	{key: "message", check: stringValue},
	{key: "data", check: anyValue},
	{key: "isPinned", check: boolValue},
	{key: "duplicatedMessageSId", optional: true, check: nullable(optUUIDValue)},
	{key: "systemId", optional: true, check: nullable(stringValue)},
	{key: "remoteServiceId", optional: true, check: nullable(stringValue)},
	{key: "sId", check: uuidValue},
}

// reactionRules is the Reaction interface (types/chat.ts L18-31) plus the
// UUID checks of socket-handlers/chat/reactions.ts.
var reactionRules = []rule{
	{key: "chatId", check: uuidValue},
	{key: "sId", check: uuidValue},
	{key: "senderId", check: optUUIDValue},
	{key: "messageSId", check: uuidValue},
	{key: "type", check: enumValue(reactionTypes)},
	{key: "symbol", check: stringValue},
	{key: "data", check: anyValue},
	{key: "created_at", check: stringValue},
	{key: "updated_at", check: stringValue},
	{key: "duplicateSId", optional: true, check: nullable(optUUIDValue)},
}

// action is a validated Action<Message> or Action<Reaction>. Unknown
// properties, of the action and of its data, are kept.
type action struct {
	kind     kind
	Op       string
	ChatID   string
	SID      string
	SenderID string // "" when null or empty
	Type     string
	Message  string // message text (messages only)

	fields map[string]json.RawMessage // the action's properties
	data   map[string]json.RawMessage // data's properties
}

func objectOf(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// parseAction validates raw as an Action<Message> or Action<Reaction> with
// typescript-is semantics: required keys present, enums exact, superfluous
// properties allowed and kept.
func parseAction(k kind, raw json.RawMessage) (*action, error) {
	fields, ok := objectOf(raw)
	if !ok {
		return nil, invalidf("action must be an object")
	}
	opRaw, ok := fields["op"]
	if !ok {
		return nil, invalidf("action: missing key \"op\"")
	}
	op, _ := kit.JSONString(opRaw)
	if op != opInsert && op != opUpdate && op != opDelete {
		return nil, invalidf("action: op %s is not INSERT, UPDATE or DELETE", opRaw)
	}
	dataRaw, ok := fields["data"]
	if !ok {
		return nil, invalidf("action: missing key \"data\"")
	}
	data, ok := objectOf(dataRaw)
	if !ok {
		return nil, invalidf("action: data must be an object")
	}
	rules := messageRules
	if k == kindReaction {
		rules = reactionRules
	}
	for _, r := range rules {
		v, present := data[r.key]
		if !present {
			if r.optional {
				continue
			}
			return nil, invalidf("%s: missing key %q", k, r.key)
		}
		if err := r.check(v); err != nil {
			return nil, invalidf("%s: %s: %v", k, r.key, err)
		}
	}
	a := &action{kind: k, Op: op, fields: fields, data: data}
	a.ChatID, _ = kit.JSONString(data["chatId"])
	a.SID, _ = kit.JSONString(data["sId"])
	a.SenderID, _ = kit.JSONString(data["senderId"])
	a.Type, _ = kit.JSONString(data["type"])
	if k == kindMessage {
		a.Message, _ = kit.JSONString(data["message"])
	}
	return a, nil
}

// sIDOf digs data.sId out of a payload that may be invalid; "" if it is not
// a string.
func sIDOf(raw json.RawMessage) (string, bool) {
	fields, ok := objectOf(raw)
	if !ok {
		return "", false
	}
	data, ok := objectOf(fields["data"])
	if !ok {
		return "", false
	}
	return kit.JSONString(data["sId"])
}

// jsTime formats t as JavaScript's Date.toISOString does.
func jsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// setData sets data[key] to the JSON of v.
func (a *action) setData(key string, v any) error {
	b, err := marshalJSON(v)
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	a.data[key] = b
	return nil
}

// stamp applies the server timestamps: on INSERT it deletes data.id and sets
// created_at; it always sets updated_at.
func (a *action) stamp(now time.Time) error {
	ts := jsTime(now)
	if a.Op == opInsert {
		delete(a.data, "id")
		if err := a.setData("created_at", ts); err != nil {
			return err
		}
	}
	return a.setData("updated_at", ts)
}

// setSender overwrites data.senderId with the recorded sender ("" becomes
// null for messages, whose senderId may be null).
func (a *action) setSender(senderID string) error {
	a.SenderID = senderID
	if senderID == "" && a.kind == kindMessage {
		return a.setData("senderId", nil)
	}
	return a.setData("senderId", senderID)
}

// dataJSON is the JSON of data.
func (a *action) dataJSON() (json.RawMessage, error) { return marshalJSON(a.data) }

// body is the JSON of the whole action, as published.
func (a *action) body() ([]byte, error) {
	d, err := a.dataJSON()
	if err != nil {
		return nil, err
	}
	a.fields["data"] = d
	return marshalJSON(a.fields)
}

// marshalJSON is json.Marshal without HTML escaping and without the trailing
// newline.
func marshalJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// unmarshalJSON is json.Unmarshal (named for symmetry with marshalJSON).
func unmarshalJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
