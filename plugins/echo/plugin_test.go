package echo_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/clowdr/realtime/plugins/echo"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// TestMain lets the test binary serve the plugin when sdktest.StartSubprocess
// re-executes it.
func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

func TestEcho(t *testing.T) {
	alice := sdktest.Socket("s1", "alice", "conf")
	tests := []struct {
		name      string
		event     string
		args      []any
		wantErr   bool
		wantAck   string // JSON of the ack values
		wantEmit  *sdktest.Emit
		wantJoins []sdktest.RoomCall
	}{
		{
			name: "echo returns and emits its args", event: "echo", args: []any{"hi", map[string]int{"n": 1}},
			wantAck:  `["hi",{"n":1}]`,
			wantEmit: &sdktest.Emit{To: sdk.SocketTarget("s1"), Event: "echo", Args: []json.RawMessage{json.RawMessage(`"hi"`), json.RawMessage(`{"n":1}`)}},
		},
		{
			name: "echo.room joins and emits to the room", event: "echo.room", args: []any{"lobby", 42},
			wantAck:   `[]`,
			wantEmit:  &sdktest.Emit{To: sdk.RoomTarget("lobby"), Event: "echo.room", Args: []json.RawMessage{json.RawMessage(`42`)}},
			wantJoins: []sdktest.RoomCall{{SocketID: "s1", Room: "lobby"}},
		},
		{name: "echo.room without a room fails", event: "echo.room", wantErr: true},
		{name: "echo.room with a non-string room fails", event: "echo.room", args: []any{7}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sdktest.NewHost()
			defer h.Close()
			p := echo.New()
			sdktest.Start(t, context.Background(), p, h, nil)
			ack, err := sdktest.Event(t, context.Background(), p, alice, tt.event, tt.args...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if ack == nil {
				ack = []any{}
			}
			if got, _ := json.Marshal(ack); string(got) != tt.wantAck {
				t.Errorf("ack = %s, want %s", got, tt.wantAck)
			}
			emits := h.Emits()
			if len(emits) != 1 {
				t.Fatalf("emits = %+v, want 1", emits)
			}
			assertEmit(t, emits[0], *tt.wantEmit)
			if got := h.Joins(); len(got) != len(tt.wantJoins) || (len(got) > 0 && got[0] != tt.wantJoins[0]) {
				t.Errorf("joins = %+v, want %+v", got, tt.wantJoins)
			}
		})
	}
}

func assertEmit(t *testing.T, got, want sdktest.Emit) {
	t.Helper()
	if got.To != want.To || got.Event != want.Event || len(got.Args) != len(want.Args) {
		t.Fatalf("emit = %+v, want %+v", got, want)
	}
	for i := range got.Args {
		if string(got.Args[i]) != string(want.Args[i]) {
			t.Errorf("emit arg %d = %s, want %s", i, got.Args[i], want.Args[i])
		}
	}
}

func TestPing(t *testing.T) {
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/echo/ping", 200, "pong"},
		{http.MethodPost, "/echo/ping", 404, "not found"},
		{http.MethodGet, "/echo/other", 404, "not found"},
	}
	p := echo.New()
	for _, tt := range tests {
		resp, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: tt.method, Path: tt.path})
		if err != nil || resp.Status != tt.status || string(resp.Body) != tt.body {
			t.Errorf("%s %s = %d %q %v, want %d %q", tt.method, tt.path, resp.Status, resp.Body, err, tt.status, tt.body)
		}
	}
}

// TestSubprocess runs the plugin the way the host runs it: in a child
// process, over gRPC.
func TestSubprocess(t *testing.T) {
	sp := sdktest.StartSubprocess(t, "echo")
	if sp.Descriptor.Name != "echo" || len(sp.Descriptor.Events) != 2 {
		t.Fatalf("descriptor = %+v", sp.Descriptor)
	}
	s := sdktest.Socket("s1", "alice")
	if err := sp.Connect(s); err != nil {
		t.Fatalf("connect: %v", err)
	}
	ack, err := sp.Event(s, "echo", "hi", 3)
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	if len(ack) != 2 || string(ack[0]) != `"hi"` || string(ack[1]) != `3` {
		t.Errorf("ack = %s", ack)
	}
	emits := sp.Host.Emits()
	if len(emits) != 1 {
		t.Fatalf("emits = %+v", emits)
	}
	assertEmit(t, emits[0], sdktest.Emit{To: sdk.SocketTarget("s1"), Event: "echo", Args: ack})

	if _, err := sp.Event(s, "echo.room", "lobby"); err != nil {
		t.Fatalf("echo.room: %v", err)
	}
	if !sp.Host.InRoom("s1", "lobby") {
		t.Errorf("socket not in room after echo.room; joins = %+v", sp.Host.Joins())
	}
	if _, err := sp.Event(s, "echo.room"); err == nil {
		t.Errorf("echo.room without room: no error")
	}

	resp, err := sp.HTTP(sdk.HTTPRequest{Method: http.MethodGet, Path: "/echo/ping"})
	if err != nil || resp.Status != 200 || string(resp.Body) != "pong" || resp.Header.Get("Content-Type") == "" {
		t.Errorf("ping = %+v, %v", resp, err)
	}
}
