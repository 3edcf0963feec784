package sioclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"

	_ "github.com/clowdr/realtime/plugins/echo" // the echo plugin, in-process
)

// testServer is an in-process host with the echo plugin and a signer.
type testServer struct {
	URL    string
	signer *auth.Verifier
}

func (s *testServer) token(t testing.TB, user string) string {
	t.Helper()
	tok, err := s.signer.Sign(user, time.Hour, nil)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// startServer starts a host on a loopback port (embedded Redis, in-memory
// bus, TEST_JWKS) with only the echo plugin, in-process.
func startServer(t *testing.T, extraEnv ...string) *testServer {
	t.Helper()
	jwks, err := sioclient.GenerateTestJWKS()
	if err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"TEST_JWKS=" + string(jwks),
		"RT_PLUGINS__PRESENCE__ENABLED=false",
		"RT_PLUGINS__CHAT__ENABLED=false",
		"RT_PLUGINS__ADMIN__ENABLED=false",
		"RT_PLUGINS__ECHO__ENABLED=true",
		"RT_PLUGINS__ECHO__MODE=inprocess",
		"RT_SOCKETIO__PING_INTERVAL=1s",
		"RT_SOCKETIO__PING_TIMEOUT=800ms",
	}, extraEnv...)
	url, signer := testserver.StartHost(t, env, "echo")
	return &testServer{URL: url, signer: signer}
}

func TestDialRefusals(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name    string
		opt     sioclient.Options
		wantErr func(error) bool
	}{
		{"no token", sioclient.Options{}, isConnectError},
		{"garbage token", sioclient.Options{Token: "not.a.jwt"}, isConnectError},
		{"auth not an object", sioclient.Options{Auth: json.RawMessage(`"x"`)}, func(err error) bool { return err != nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := sioclient.Dial(ctx, srv.URL, tc.opt)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want a refusal")
			}
			if !tc.wantErr(err) {
				t.Fatalf("Dial error = %v (%T), unexpected kind", err, err)
			}
		})
	}
}

func isConnectError(err error) bool {
	var ce *sioclient.ConnectError
	return errors.As(err, &ce) && ce.Message != ""
}

func TestDialBadURL(t *testing.T) {
	for _, u := range []string{"ftp://127.0.0.1:1", "http://", "::"} {
		if _, err := sioclient.Dial(context.Background(), u, sioclient.Options{}); err == nil {
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
}

func TestEmitAckEventsAndClose(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var mu sync.Mutex
	var events []string
	disc := make(chan string, 1)
	ready := make(chan struct{}, 1)
	c, err := sioclient.Dial(ctx, srv.URL, sioclient.Options{
		Token: srv.token(t, "alice"),
		OnEvent: func(name string, args []json.RawMessage) {
			mu.Lock()
			events = append(events, name)
			mu.Unlock()
			if name == "server.ready" {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		},
		OnDisconnect: func(r string) { disc <- r },
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if c.ID() == "" || !c.Connected() {
		t.Fatalf("ID %q connected %v", c.ID(), c.Connected())
	}
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("no server.ready")
	}

	// Ack round trip, with several arguments of several kinds.
	ack, err := c.EmitWithAck(ctx, "echo", "hi", 42, map[string]any{"a": []int{1, 2}}, json.RawMessage(`null`))
	if err != nil {
		t.Fatalf("EmitWithAck: %v", err)
	}
	if got := strings.Join(rawStrings(ack), " "); got != `"hi" 42 {"a":[1,2]} null` {
		t.Fatalf("ack = %s", got)
	}

	// Emit + WaitEvent: the echo plugin emits "echo" back. The waiter is
	// registered before the emit, so the reply cannot be missed.
	waitCtx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	got := make(chan []json.RawMessage, 1)
	registered := make(chan struct{})
	go func() {
		close(registered)
		args, _ := c.WaitEvent(waitCtx, "echo.room")
		got <- args
	}()
	<-registered
	// echo.room joins the room and emits to it; retry until the waiter
	// (registered concurrently) has seen one.
	var args []json.RawMessage
	for args == nil {
		if err := c.Emit("echo.room", "r1", "x,y]", json.RawMessage(`{"k":"[,]"}`)); err != nil {
			t.Fatalf("Emit: %v", err)
		}
		select {
		case args = <-got:
		case <-time.After(200 * time.Millisecond):
		case <-waitCtx.Done():
			t.Fatal("no echo.room event")
		}
	}
	wcancel()
	if len(args) != 2 || string(args[0]) != `"x,y]"` || string(args[1]) != `{"k":"[,]"}` {
		t.Fatalf("echo.room args = %q", rawStrings(args))
	}

	// Concurrent acks.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.EmitWithAck(ctx, "echo", i)
			if err != nil {
				errs <- err
				return
			}
			if len(res) != 1 || string(res[0]) != fmt.Sprint(i) {
				errs <- fmt.Errorf("ack %d = %q", i, rawStrings(res))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Pings are answered: the server (ping interval 1s, timeout 800ms) keeps
	// us through three pings; unanswered, it drops us after 1.8 s. (A 300 ms
	// timeout once seemed enough; a loaded -race box can stall that long.)
	time.Sleep(3500 * time.Millisecond)
	if !c.Connected() {
		t.Fatalf("dropped while idle: %s", c.Reason())
	}
	if _, err := c.EmitWithAck(ctx, "echo", 1); err != nil {
		t.Fatalf("EmitWithAck after idle: %v", err)
	}

	c.Close()
	if r := <-disc; r != sioclient.ReasonClientDisconnect {
		t.Fatalf("disconnect reason %q", r)
	}
	if err := c.Emit("echo", 1); !errors.Is(err, sioclient.ErrClosed) {
		t.Fatalf("Emit after Close = %v", err)
	}
	if _, err := c.EmitWithAck(ctx, "echo", 1); !errors.Is(err, sioclient.ErrClosed) {
		t.Fatalf("EmitWithAck after Close = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) == 0 || events[0] != "server.ready" {
		t.Fatalf("events = %v", events)
	}
}

func TestAckCancelledAndWaitEventClosed(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := sioclient.Dial(ctx, srv.URL, sioclient.Options{Token: srv.token(t, "bob")})
	if err != nil {
		t.Fatal(err)
	}
	// An event nobody handles gets no ack: the context ends the wait.
	short, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.EmitWithAck(short, "no.such.event")
	scancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("EmitWithAck = %v, want deadline exceeded", err)
	}
	// A waiter is released when the connection goes away.
	res := make(chan error, 1)
	go func() {
		_, err := c.WaitEvent(ctx, "never")
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	// A malformed packet makes the server drop us.
	if err := c.SendRaw(`42["echo"`); err != nil {
		t.Fatalf("SendRaw: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("server kept a socket that sent a malformed packet")
	}
	if err := <-res; !errors.Is(err, sioclient.ErrClosed) {
		t.Fatalf("WaitEvent = %v, want ErrClosed", err)
	}
	if r := c.Reason(); r == "" || r == sioclient.ReasonClientDisconnect {
		t.Fatalf("reason %q", r)
	}
}

func TestManyClients(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 50
	clients := make([]*sioclient.Client, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := sioclient.Dial(ctx, srv.URL, sioclient.Options{Token: srv.token(t, fmt.Sprintf("u%d", i))})
			if err != nil {
				errs <- err
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, c := range clients {
		if ids[c.ID()] {
			t.Fatalf("duplicate id %s", c.ID())
		}
		ids[c.ID()] = true
	}
	for _, c := range clients {
		c.Close()
	}
}

func rawStrings(a []json.RawMessage) []string {
	out := make([]string, len(a))
	for i, r := range a {
		out[i] = string(r)
	}
	return out
}
