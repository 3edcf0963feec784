package socketio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// PacketType is the Socket.IO (protocol v5) packet type, the first character
// of a Socket.IO packet.
type PacketType byte

// Socket.IO packet types. (Prefixed with Packet: the name ConnectError is
// the error type Handler.Authenticate returns.)
const (
	PacketConnect      PacketType = 0
	PacketDisconnect   PacketType = 1
	PacketEvent        PacketType = 2
	PacketAck          PacketType = 3
	PacketConnectError PacketType = 4
	PacketBinaryEvent  PacketType = 5
	PacketBinaryAck    PacketType = 6
)

// String returns the socket.io name of the packet type.
func (t PacketType) String() string {
	switch t {
	case PacketConnect:
		return "CONNECT"
	case PacketDisconnect:
		return "DISCONNECT"
	case PacketEvent:
		return "EVENT"
	case PacketAck:
		return "ACK"
	case PacketConnectError:
		return "CONNECT_ERROR"
	case PacketBinaryEvent:
		return "BINARY_EVENT"
	case PacketBinaryAck:
		return "BINARY_ACK"
	}
	return "PacketType(" + strconv.Itoa(int(t)) + ")"
}

// Engine.IO v4 packet types (the first character of every websocket text frame).
const (
	EngineOpen    byte = '0'
	EngineClose   byte = '1'
	EnginePing    byte = '2'
	EnginePong    byte = '3'
	EngineMessage byte = '4'
	EngineUpgrade byte = '5'
	EngineNoop    byte = '6'
)

// MaxJSONDepth is the deepest JSON nesting (objects plus arrays) the decoder
// accepts in a packet payload.
const MaxJSONDepth = 32

// DefaultNamespace is the only namespace this server serves.
const DefaultNamespace = "/"

// Packet is a decoded Socket.IO packet.
type Packet struct {
	// Type is the Socket.IO packet type.
	Type PacketType
	// Namespace is "/" unless the packet named another one.
	Namespace string
	// AckID is the acknowledgement id, or -1 when the packet carries none.
	AckID int64
	// Data is the raw JSON after the header (validated), or nil when absent.
	// It aliases the decoded message.
	Data json.RawMessage
}

// Reasons of DecodeError, also used as the "reason" label of the
// malformed_packets_total metric.
const (
	ReasonEmpty             = "empty"
	ReasonUnknownType       = "unknown_type"
	ReasonBinaryUnsupported = "binary_unsupported"
	ReasonBadAckID          = "bad_ack_id"
	ReasonInvalidUTF8       = "invalid_utf8"
	ReasonTooDeep           = "too_deep"
	ReasonBadJSON           = "bad_json"
	ReasonBadPayload        = "bad_payload"
	ReasonNotEvent          = "not_event"
	ReasonEventNotArray     = "event_not_array"
	ReasonEventNameType     = "event_name_not_string"
)

// DecodeError describes why a packet was rejected. Reason is one of the
// Reason* constants (a short, low-cardinality label).
type DecodeError struct {
	Reason string
	Detail string
}

// Error implements error.
func (e *DecodeError) Error() string {
	return "socketio: malformed packet (" + e.Reason + "): " + e.Detail
}

func decodeErr(reason, format string, args ...any) *DecodeError {
	return &DecodeError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// DecodePacket decodes a Socket.IO packet: the part of an Engine.IO message
// frame after its '4' prefix. It is strict: the payload must be valid UTF-8
// JSON no deeper than MaxJSONDepth whose shape fits the packet type (CONNECT:
// object or nothing; DISCONNECT: nothing; EVENT: non-empty array; ACK: array;
// CONNECT_ERROR: object or string), ack ids must fit in an int64 and are only
// allowed on EVENT and ACK (required on ACK). Binary packet types are decoded
// far enough to be recognised and rejected with ReasonBinaryUnsupported.
// Errors are *DecodeError. It never panics.
func DecodePacket(msg []byte) (Packet, error) {
	p := Packet{Namespace: DefaultNamespace, AckID: -1}
	if len(msg) == 0 {
		return p, decodeErr(ReasonEmpty, "empty packet")
	}
	c := msg[0]
	if c < '0' || c > '6' {
		return p, decodeErr(ReasonUnknownType, "unknown packet type %q", c)
	}
	p.Type = PacketType(c - '0')
	if p.Type == PacketBinaryEvent || p.Type == PacketBinaryAck {
		return p, decodeErr(ReasonBinaryUnsupported, "binary packet type %d is not supported", p.Type)
	}
	if !utf8.Valid(msg) {
		return p, decodeErr(ReasonInvalidUTF8, "packet is not valid UTF-8")
	}
	i := 1
	// Namespace: "/name," (the comma ends it; a namespace may also end the packet).
	if i < len(msg) && msg[i] == '/' {
		start := i
		for i < len(msg) && msg[i] != ',' {
			i++
		}
		p.Namespace = string(msg[start:i])
		if i < len(msg) {
			i++ // skip ','
		}
	}
	// Ack id: a run of digits.
	if i < len(msg) && msg[i] >= '0' && msg[i] <= '9' {
		start := i
		for i < len(msg) && msg[i] >= '0' && msg[i] <= '9' {
			i++
		}
		id, err := strconv.ParseInt(string(msg[start:i]), 10, 64)
		if err != nil {
			return p, decodeErr(ReasonBadAckID, "ack id %q does not fit in int64", truncate(msg[start:i], 32))
		}
		if p.Type != PacketEvent && p.Type != PacketAck {
			return p, decodeErr(ReasonBadAckID, "ack id on a %s packet", p.Type)
		}
		p.AckID = id
	}
	if p.Type == PacketAck && p.AckID < 0 {
		return p, decodeErr(ReasonBadAckID, "ACK packet without id")
	}
	if i < len(msg) {
		data := msg[i:]
		if err := validateJSON(data); err != nil {
			return p, err
		}
		p.Data = data
	}
	if err := checkPayloadShape(p.Type, p.Data); err != nil {
		return p, err
	}
	return p, nil
}

// firstJSONByte returns the first non-whitespace byte of valid JSON.
func firstJSONByte(data []byte) byte {
	for _, b := range data {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b
	}
	return 0
}

func checkPayloadShape(t PacketType, data []byte) error {
	first := firstJSONByte(data)
	switch t {
	case PacketConnect:
		if data != nil && first != '{' {
			return decodeErr(ReasonBadPayload, "CONNECT payload must be an object")
		}
	case PacketDisconnect:
		if data != nil {
			return decodeErr(ReasonBadPayload, "DISCONNECT must not carry a payload")
		}
	case PacketEvent:
		if first != '[' {
			return decodeErr(ReasonBadPayload, "EVENT payload must be an array")
		}
		if firstJSONByte(data[bytes.IndexByte(data, '[')+1:]) == ']' {
			return decodeErr(ReasonBadPayload, "EVENT payload must not be an empty array")
		}
	case PacketAck:
		if first != '[' {
			return decodeErr(ReasonBadPayload, "ACK payload must be an array")
		}
	case PacketConnectError:
		if first != '{' && first != '"' {
			return decodeErr(ReasonBadPayload, "CONNECT_ERROR payload must be an object or a string")
		}
	}
	return nil
}

// validateJSON checks UTF-8, nesting depth and JSON syntax, in that order.
func validateJSON(data []byte) error {
	if !utf8.Valid(data) {
		return decodeErr(ReasonInvalidUTF8, "payload is not valid UTF-8")
	}
	depth, maxDepth := 0, 0
	inString, escaped := false, false
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > maxDepth {
				maxDepth = depth
				if maxDepth > MaxJSONDepth {
					return decodeErr(ReasonTooDeep, "payload nesting exceeds %d", MaxJSONDepth)
				}
			}
		case ']', '}':
			depth--
		}
	}
	if !json.Valid(data) {
		return decodeErr(ReasonBadJSON, "payload is not valid JSON")
	}
	return nil
}

// DecodeEvent splits the payload of an EVENT packet into the event name and
// its arguments. The data must be a JSON array whose first element is a
// string. The returned args alias p.Data (no copy). Errors are *DecodeError.
func DecodeEvent(p Packet) (name string, args []json.RawMessage, err error) {
	if p.Type != PacketEvent {
		return "", nil, decodeErr(ReasonNotEvent, "packet type %s is not EVENT", p.Type)
	}
	if err := validateJSON(p.Data); err != nil {
		return "", nil, err
	}
	elems, ok := SplitArray(p.Data)
	if !ok {
		return "", nil, decodeErr(ReasonEventNotArray, "EVENT payload is not an array")
	}
	if len(elems) == 0 {
		return "", nil, decodeErr(ReasonEventNotArray, "EVENT payload is an empty array")
	}
	if elems[0][0] != '"' {
		return "", nil, decodeErr(ReasonEventNameType, "event name is not a string")
	}
	if err := json.Unmarshal(elems[0], &name); err != nil {
		return "", nil, decodeErr(ReasonEventNameType, "event name: %v", err)
	}
	return name, elems[1:], nil
}

// SplitArray splits a valid JSON array into its top-level elements (trimmed
// of whitespace), aliasing data. ok is false when data is not an array. It
// does not validate the elements.
func SplitArray(data []byte) (elems []json.RawMessage, ok bool) {
	data = bytes.TrimSpace(data)
	if len(data) < 2 || data[0] != '[' || data[len(data)-1] != ']' {
		return nil, false
	}
	body := data[1 : len(data)-1]
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, true
	}
	depth := 0
	inString, escaped := false, false
	start := 0
	for i, b := range body {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 0 {
				elems = append(elems, json.RawMessage(bytes.TrimSpace(body[start:i])))
				start = i + 1
			}
		}
	}
	elems = append(elems, json.RawMessage(bytes.TrimSpace(body[start:])))
	for _, e := range elems {
		if len(e) == 0 {
			return nil, false
		}
	}
	return elems, true
}

// EncodeEvent encodes a full Engine.IO message frame carrying a Socket.IO
// EVENT: `42["event",arg...]`. json.RawMessage arguments are copied verbatim
// (they must be valid JSON); other arguments go through json.Marshal.
func EncodeEvent(event string, args ...any) ([]byte, error) {
	buf := make([]byte, 0, 64)
	buf = append(buf, '4', '2', '[')
	buf = appendJSONString(buf, event)
	for i, a := range args {
		buf = append(buf, ',')
		switch v := a.(type) {
		case json.RawMessage:
			if !json.Valid(v) {
				return nil, fmt.Errorf("socketio: encode event %q: argument %d is not valid JSON", event, i)
			}
			buf = append(buf, v...)
		default:
			var err error
			if buf, err = appendJSON(buf, a); err != nil {
				return nil, fmt.Errorf("socketio: encode event %q argument %d: %w", event, i, err)
			}
		}
	}
	buf = append(buf, ']')
	return buf, nil
}

// EncodeEventRaw is EncodeEvent for arguments that are already JSON. The
// arguments are trusted and copied verbatim; an empty one is written as null.
func EncodeEventRaw(event string, args []json.RawMessage) []byte {
	n := 8 + len(event)
	for _, a := range args {
		n += len(a) + 1
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '4', '2', '[')
	buf = appendJSONString(buf, event)
	for _, a := range args {
		buf = append(buf, ',')
		buf = appendRaw(buf, a)
	}
	return append(buf, ']')
}

// EncodeAck encodes an Engine.IO message frame carrying a Socket.IO ACK:
// `43<id>[arg...]`. Arguments are trusted JSON; an empty one is written as null.
func EncodeAck(id int64, args []json.RawMessage) []byte {
	buf := make([]byte, 0, 24)
	buf = append(buf, '4', '3')
	buf = strconv.AppendInt(buf, id, 10)
	buf = append(buf, '[')
	for i, a := range args {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendRaw(buf, a)
	}
	return append(buf, ']')
}

// EncodeConnect encodes the CONNECT acknowledgement `40{"sid":"<sid>"}`.
func EncodeConnect(sid string) []byte {
	buf := append(make([]byte, 0, 16+len(sid)), `40{"sid":`...)
	buf = appendJSONString(buf, sid)
	return append(buf, '}')
}

// EncodeConnectError encodes a CONNECT_ERROR for namespace "/":
// `44{"message":"...","data":...}`. The "data" member is omitted when data is
// nil or cannot be marshalled (as JSON.stringify omits undefined).
func EncodeConnectError(message string, data any) []byte {
	return encodeConnectErrorNS(DefaultNamespace, message, data)
}

func encodeConnectErrorNS(ns, message string, data any) []byte {
	buf := append(make([]byte, 0, 32+len(message)), '4', '4')
	if ns != DefaultNamespace {
		buf = append(buf, ns...)
		buf = append(buf, ',')
	}
	buf = append(buf, `{"message":`...)
	buf = appendJSONString(buf, message)
	if data != nil {
		n := len(buf)
		var err error
		if buf, err = appendJSON(append(buf, `,"data":`...), data); err != nil {
			buf = buf[:n]
		}
	}
	return append(buf, '}')
}

// EncodeDisconnect encodes the server DISCONNECT for namespace "/": `41`.
func EncodeDisconnect() []byte { return []byte{'4', '1'} }

// EncodeOpen encodes the Engine.IO open packet:
// `0{"sid":..,"upgrades":[],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`
// (durations in milliseconds).
func EncodeOpen(sid string, pingIntervalMS, pingTimeoutMS int64, maxPayload int) []byte {
	buf := append(make([]byte, 0, 112), `0{"sid":`...)
	buf = appendJSONString(buf, sid)
	buf = append(buf, `,"upgrades":[],"pingInterval":`...)
	buf = strconv.AppendInt(buf, pingIntervalMS, 10)
	buf = append(buf, `,"pingTimeout":`...)
	buf = strconv.AppendInt(buf, pingTimeoutMS, 10)
	buf = append(buf, `,"maxPayload":`...)
	buf = strconv.AppendInt(buf, int64(maxPayload), 10)
	return append(buf, '}')
}

func appendRaw(buf []byte, a json.RawMessage) []byte {
	if len(a) == 0 {
		return append(buf, "null"...)
	}
	return append(buf, a...)
}

// appendJSON appends the JSON encoding of v to buf, without HTML escaping
// (like JSON.stringify). On error buf is returned unchanged.
func appendJSON(buf []byte, v any) ([]byte, error) {
	n := len(buf)
	bb := bytes.NewBuffer(buf)
	enc := json.NewEncoder(bb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return buf[:n], err
	}
	out := bb.Bytes()
	return out[:len(out)-1], nil // Encode appends '\n'
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(buf []byte, s string) []byte {
	out, err := appendJSON(buf, s) // cannot fail for a string
	if err != nil {
		return append(buf, `""`...)
	}
	return out
}

// truncate returns at most n bytes of b as a printable string, for logs.
func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(bytes.ToValidUTF8(b[:n], []byte("?"))) + "…"
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
