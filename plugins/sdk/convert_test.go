package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestRedisArg(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{"s", "s"}, {[]byte("b"), "b"}, {nil, ""}, {42, "42"}, {int8(-3), "-3"}, {int64(1) << 40, "1099511627776"},
		{uint16(7), "7"}, {uint64(9), "9"}, {1.5, "1.5"}, {float32(0.25), "0.25"}, {true, "1"}, {false, "0"},
		{time.Duration(1500), "1500"}, {time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "2026-01-02T03:04:05.000000006Z"},
		{struct{ A int }{1}, "{1}"},
	}
	for _, tt := range tests {
		if got := string(redisArg(tt.in)); got != tt.want {
			t.Errorf("redisArg(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		err     error
		want    any
		wantErr string
		nilErr  bool
	}{
		{name: "string", v: "OK", want: "OK"},
		{name: "bytes", v: []byte("raw"), want: "raw"},
		{name: "int", v: int64(-5), want: int64(-5)},
		{name: "int (go int)", v: 3, want: int64(3)},
		{name: "bool", v: true, want: int64(1)},
		{name: "float", v: 2.5, want: "2.5"},
		{name: "nil", v: nil, nilErr: true},
		{name: "ErrNil", err: ErrNil, nilErr: true},
		{name: "wrapped ErrNil", err: errors.Join(errors.New("x"), ErrNil), nilErr: true},
		{name: "redis error", err: errors.New("WRONGTYPE bad"), wantErr: "WRONGTYPE bad"},
		{name: "array", v: []any{"a", int64(1), nil, []any{"n"}, errors.New("ERR in array")},
			want: []any{"a", int64(1), nil, []any{"n"}, errors.New("ERR in array")}},
		{name: "strings", v: []string{"x", "y"}, want: []any{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replyFromProto(replyToProto(tt.v, tt.err))
			switch {
			case tt.nilErr:
				if !errors.Is(err, ErrNil) || got != nil {
					t.Fatalf("got %#v, %v; want nil, ErrNil", got, err)
				}
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			default:
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %#v, %v; want %#v", got, err, tt.want)
				}
			}
		})
	}
}

func TestMarshalArgs(t *testing.T) {
	got, err := MarshalArgs([]any{json.RawMessage(`{"a":1}`), "s", 1, nil, []byte("b")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"a":1}`, `"s"`, `1`, `null`, `"Yg=="`}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("arg %d = %s, want %s", i, got[i], want[i])
		}
	}
	if _, err := MarshalArgs([]any{json.RawMessage(`{bad`)}); err == nil {
		t.Error("invalid RawMessage accepted")
	}
	if _, err := MarshalArgs([]any{make(chan int)}); err == nil {
		t.Error("unmarshallable value accepted")
	}
	if got, err := MarshalArgs(nil); got != nil || err != nil {
		t.Errorf("MarshalArgs(nil) = %v, %v", got, err)
	}
}

func TestHTTPConvert(t *testing.T) {
	req := HTTPRequest{Method: "POST", Path: "/p", Header: http.Header{"X-A": {"1", "2"}}, Body: []byte("b"), RemoteAddr: "r"}
	req.Query = map[string][]string{"q": {"a&b", "c"}}
	got := httpRequestFromProto(httpRequestToProto(req))
	if !reflect.DeepEqual(got, req) {
		t.Errorf("request round trip = %+v, want %+v", got, req)
	}
	resp := HTTPResponse{Status: 204, Header: http.Header{"Content-Type": {"x"}}, Body: []byte("z")}
	if got := httpResponseFromProto(httpResponseToProto(resp)); !reflect.DeepEqual(got, resp) {
		t.Errorf("response round trip = %+v", got)
	}
	for _, k := range []TargetKind{ToSocket, ToRoom, ToUser, ToLocalRoom} {
		if back, err := targetKindFromProto(targetKindToProto(k)); err != nil || back != k {
			t.Errorf("target kind %d -> %d, %v", k, back, err)
		}
	}
	if _, err := targetKindFromProto(99); err == nil {
		t.Error("unknown target kind accepted")
	}
}

func TestDispatcher(t *testing.T) {
	d := newDispatcher(4, 8)
	var mu sync.Mutex
	got := map[string][]int{}
	for i := range 100 {
		key := []string{"a", "b", "c"}[i%3]
		if err := d.submit(context.Background(), key, func() {
			mu.Lock()
			got[key] = append(got[key], i)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	d.close() // runs what is queued
	for key, seq := range got {
		for j := 1; j < len(seq); j++ {
			if seq[j] < seq[j-1] {
				t.Fatalf("key %s out of order: %v", key, seq)
			}
		}
	}
	if n := len(got["a"]) + len(got["b"]) + len(got["c"]); n != 100 {
		t.Fatalf("ran %d of 100", n)
	}
	if err := d.submit(context.Background(), "a", func() {}); !errors.Is(err, ErrPluginUnavailable) {
		t.Errorf("submit after close = %v", err)
	}

	// A full queue: trySubmit fails fast, submit waits for ctx.
	d = newDispatcher(1, 1)
	defer d.close()
	block, started := make(chan struct{}), make(chan struct{})
	if err := d.trySubmit("k", func() { close(started); <-block }); err != nil {
		t.Fatal(err)
	}
	<-started                                           // the worker holds the blocking job; the queue is empty again
	if err := d.trySubmit("k", func() {}); err != nil { // fill the one slot
		t.Fatal(err)
	}
	if err := d.trySubmit("k", func() {}); !errors.Is(err, ErrOverloaded) {
		t.Errorf("trySubmit on full queue = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.submit(ctx, "k", func() {}); !errors.Is(err, context.Canceled) {
		t.Errorf("submit with done ctx on full queue = %v", err)
	}
	close(block)
}

func TestSafely(t *testing.T) {
	err := safely(nil, "h", func() error { panic("x") })
	if err == nil || err.Error() != "h: panic: x" {
		t.Errorf("safely = %v", err)
	}
	if err := safely(nil, "h", func() error { return nil }); err != nil {
		t.Errorf("safely = %v", err)
	}
}
