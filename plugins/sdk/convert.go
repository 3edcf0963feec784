package sdk

// Converters between the Go types of this package and the generated proto
// types (proto/v1). Both shims use only these.

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	pluginv1 "github.com/clowdr/realtime/plugins/sdk/proto/v1"
)

func descriptorToProto(d Descriptor) *pluginv1.Descriptor {
	out := &pluginv1.Descriptor{Name: d.Name, Version: d.Version, Events: d.Events,
		SkipConnect: d.SkipConnect, SkipReplay: d.SkipReplay, SkipDisconnect: d.SkipDisconnect}
	for _, r := range d.Routes {
		out.Routes = append(out.Routes, &pluginv1.Route{Method: r.Method, Path: r.Path})
	}
	for _, e := range d.Exchanges {
		out.Exchanges = append(out.Exchanges, &pluginv1.Exchange{Name: e.Name, Kind: e.Kind, Durable: e.Durable})
	}
	for _, q := range d.Queues {
		out.Queues = append(out.Queues, &pluginv1.Queue{
			Name: q.Name, Exchange: q.Exchange, Bindings: q.Bindings, Durable: q.Durable,
			AutoDelete: q.AutoDelete, Exclusive: q.Exclusive, Prefetch: int32(q.Prefetch), ExpiresMs: q.ExpiresMs,
			BatchMax: int32(q.BatchMax), BatchWaitMs: q.BatchWait.Milliseconds(),
		})
	}
	return out
}

func descriptorFromProto(p *pluginv1.Descriptor) Descriptor {
	d := Descriptor{Name: p.GetName(), Version: p.GetVersion(), Events: p.GetEvents(),
		SkipConnect: p.GetSkipConnect(), SkipReplay: p.GetSkipReplay(), SkipDisconnect: p.GetSkipDisconnect()}
	for _, r := range p.GetRoutes() {
		d.Routes = append(d.Routes, Route{Method: r.GetMethod(), Path: r.GetPath()})
	}
	for _, e := range p.GetExchanges() {
		d.Exchanges = append(d.Exchanges, Exchange{Name: e.GetName(), Kind: e.GetKind(), Durable: e.GetDurable()})
	}
	for _, q := range p.GetQueues() {
		d.Queues = append(d.Queues, Queue{
			Name: q.GetName(), Exchange: q.GetExchange(), Bindings: q.GetBindings(), Durable: q.GetDurable(),
			AutoDelete: q.GetAutoDelete(), Exclusive: q.GetExclusive(), Prefetch: int(q.GetPrefetch()), ExpiresMs: q.GetExpiresMs(),
			BatchMax: int(q.GetBatchMax()), BatchWait: time.Duration(q.GetBatchWaitMs()) * time.Millisecond,
		})
	}
	return d
}

func socketToProto(s Socket) *pluginv1.Socket {
	return &pluginv1.Socket{Id: s.ID, UserId: s.UserID, ConferenceSlugs: s.ConferenceSlugs}
}

func socketFromProto(p *pluginv1.Socket) Socket {
	return Socket{ID: p.GetId(), UserID: p.GetUserId(), ConferenceSlugs: p.GetConferenceSlugs()}
}

func targetKindToProto(k TargetKind) pluginv1.TargetKind {
	switch k {
	case ToRoom:
		return pluginv1.TargetKind_TARGET_KIND_ROOM
	case ToUser:
		return pluginv1.TargetKind_TARGET_KIND_USER
	case ToLocalRoom:
		return pluginv1.TargetKind_TARGET_KIND_LOCAL_ROOM
	default:
		return pluginv1.TargetKind_TARGET_KIND_SOCKET
	}
}

func targetKindFromProto(k pluginv1.TargetKind) (TargetKind, error) {
	switch k {
	case pluginv1.TargetKind_TARGET_KIND_SOCKET:
		return ToSocket, nil
	case pluginv1.TargetKind_TARGET_KIND_ROOM:
		return ToRoom, nil
	case pluginv1.TargetKind_TARGET_KIND_USER:
		return ToUser, nil
	case pluginv1.TargetKind_TARGET_KIND_LOCAL_ROOM:
		return ToLocalRoom, nil
	}
	return 0, fmt.Errorf("unknown emit target kind %d", k)
}

func headersToProto(h http.Header) []*pluginv1.Header {
	if len(h) == 0 {
		return nil
	}
	out := make([]*pluginv1.Header, 0, len(h))
	for k, v := range h {
		out = append(out, &pluginv1.Header{Name: k, Values: v})
	}
	return out
}

func headersFromProto(hs []*pluginv1.Header) http.Header {
	h := make(http.Header, len(hs))
	for _, x := range hs {
		h[http.CanonicalHeaderKey(x.GetName())] = append([]string(nil), x.GetValues()...)
	}
	return h
}

func httpRequestToProto(r HTTPRequest) *pluginv1.HTTPRequest {
	return &pluginv1.HTTPRequest{
		Method: r.Method, Path: r.Path, RawQuery: r.Query.Encode(),
		Headers: headersToProto(r.Header), Body: r.Body, RemoteAddr: r.RemoteAddr,
	}
}

func httpRequestFromProto(p *pluginv1.HTTPRequest) HTTPRequest {
	q, err := url.ParseQuery(p.GetRawQuery())
	if err != nil && q == nil {
		q = url.Values{}
	}
	return HTTPRequest{
		Method: p.GetMethod(), Path: p.GetPath(), Query: q,
		Header: headersFromProto(p.GetHeaders()), Body: p.GetBody(), RemoteAddr: p.GetRemoteAddr(),
	}
}

func httpResponseToProto(r HTTPResponse) *pluginv1.HTTPResponse {
	return &pluginv1.HTTPResponse{Status: int32(r.Status), Headers: headersToProto(r.Header), Body: r.Body}
}

func httpResponseFromProto(p *pluginv1.HTTPResponse) HTTPResponse {
	return HTTPResponse{Status: int(p.GetStatus()), Header: headersFromProto(p.GetHeaders()), Body: p.GetBody()}
}

// MarshalArgs turns Emit/ack arguments into raw JSON. A json.RawMessage
// passes through after a validity check; everything else goes through
// json.Marshal (so a []byte becomes a base64 string, as encoding/json does).
func MarshalArgs(args []any) ([]json.RawMessage, error) {
	if len(args) == 0 {
		return nil, nil
	}
	out := make([]json.RawMessage, len(args))
	for i, a := range args {
		if raw, ok := a.(json.RawMessage); ok {
			if !json.Valid(raw) {
				return nil, fmt.Errorf("argument %d: invalid json.RawMessage", i)
			}
			out[i] = raw
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i, err)
		}
		out[i] = b
	}
	return out, nil
}

func rawToBytes(args []json.RawMessage) [][]byte {
	if len(args) == 0 {
		return nil
	}
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

func bytesToRaw(args [][]byte) []json.RawMessage {
	if len(args) == 0 {
		return nil
	}
	out := make([]json.RawMessage, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// redisArg formats one Store argument the way go-redis writes it on the wire.
func redisArg(v any) []byte {
	switch x := v.(type) {
	case nil:
		return []byte{}
	case string:
		return []byte(x)
	case []byte:
		return x
	case int:
		return strconv.AppendInt(nil, int64(x), 10)
	case int8:
		return strconv.AppendInt(nil, int64(x), 10)
	case int16:
		return strconv.AppendInt(nil, int64(x), 10)
	case int32:
		return strconv.AppendInt(nil, int64(x), 10)
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case uint:
		return strconv.AppendUint(nil, uint64(x), 10)
	case uint8:
		return strconv.AppendUint(nil, uint64(x), 10)
	case uint16:
		return strconv.AppendUint(nil, uint64(x), 10)
	case uint32:
		return strconv.AppendUint(nil, uint64(x), 10)
	case uint64:
		return strconv.AppendUint(nil, x, 10)
	case float32:
		return strconv.AppendFloat(nil, float64(x), 'f', -1, 32)
	case float64:
		return strconv.AppendFloat(nil, x, 'f', -1, 64)
	case bool:
		if x {
			return []byte("1")
		}
		return []byte("0")
	case time.Time:
		return x.AppendFormat(nil, time.RFC3339Nano)
	case time.Duration:
		return strconv.AppendInt(nil, x.Nanoseconds(), 10)
	case encoding.BinaryMarshaler:
		if b, err := x.MarshalBinary(); err == nil {
			return b
		}
	}
	return fmt.Appendf(nil, "%v", v)
}

func redisArgs(args []any) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = redisArg(a)
	}
	return out
}

func bytesToAny(args [][]byte) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

// replyToProto encodes a Store reply (v, err): ErrNil becomes a nil Value, any
// other error an error Value.
func replyToProto(v any, err error) *pluginv1.Value {
	if err != nil {
		if errors.Is(err, ErrNil) {
			return &pluginv1.Value{Kind: &pluginv1.Value_Nil{Nil: true}}
		}
		return &pluginv1.Value{Kind: &pluginv1.Value_Error{Error: err.Error()}}
	}
	return valueToProto(v)
}

func valueToProto(v any) *pluginv1.Value {
	switch x := v.(type) {
	case nil:
		return &pluginv1.Value{Kind: &pluginv1.Value_Nil{Nil: true}}
	case int64:
		return &pluginv1.Value{Kind: &pluginv1.Value_Int{Int: x}}
	case int:
		return &pluginv1.Value{Kind: &pluginv1.Value_Int{Int: int64(x)}}
	case bool:
		var n int64
		if x {
			n = 1
		}
		return &pluginv1.Value{Kind: &pluginv1.Value_Int{Int: n}}
	case string:
		return &pluginv1.Value{Kind: &pluginv1.Value_Str{Str: []byte(x)}}
	case []byte:
		return &pluginv1.Value{Kind: &pluginv1.Value_Str{Str: x}}
	case error:
		return &pluginv1.Value{Kind: &pluginv1.Value_Error{Error: x.Error()}}
	case []any:
		arr := &pluginv1.Array{Values: make([]*pluginv1.Value, len(x))}
		for i, e := range x {
			arr.Values[i] = valueToProto(e)
		}
		return &pluginv1.Value{Kind: &pluginv1.Value_Array{Array: arr}}
	case []string:
		arr := &pluginv1.Array{Values: make([]*pluginv1.Value, len(x))}
		for i, e := range x {
			arr.Values[i] = valueToProto(e)
		}
		return &pluginv1.Value{Kind: &pluginv1.Value_Array{Array: arr}}
	case float64:
		return &pluginv1.Value{Kind: &pluginv1.Value_Str{Str: strconv.AppendFloat(nil, x, 'f', -1, 64)}}
	}
	return &pluginv1.Value{Kind: &pluginv1.Value_Str{Str: fmt.Appendf(nil, "%v", v)}}
}

// valueFromProto decodes a Value inside an array: nil stays nil and a Redis
// error becomes an error value.
func valueFromProto(p *pluginv1.Value) any {
	switch k := p.GetKind().(type) {
	case *pluginv1.Value_Int:
		return k.Int
	case *pluginv1.Value_Str:
		return string(k.Str)
	case *pluginv1.Value_Error:
		return errors.New(k.Error)
	case *pluginv1.Value_Array:
		out := make([]any, len(k.Array.GetValues()))
		for i, e := range k.Array.GetValues() {
			out[i] = valueFromProto(e)
		}
		return out
	}
	return nil
}

// replyFromProto decodes a top-level Value: nil becomes (nil, ErrNil) and a
// Redis error becomes (nil, err).
func replyFromProto(p *pluginv1.Value) (any, error) {
	switch k := p.GetKind().(type) {
	case *pluginv1.Value_Nil, nil:
		return nil, ErrNil
	case *pluginv1.Value_Error:
		return nil, errors.New(k.Error)
	}
	return valueFromProto(p), nil
}
