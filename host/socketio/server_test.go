package socketio

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// wait is a guard against hangs, not a timing assertion.
const wait = 5 * time.Second

// ---------- test handler ----------

type eventRec struct {
	name  string
	args  []json.RawMessage
	ackID int64
}

type testHandler struct {
	auth    func(ctx context.Context, c *Conn, auth json.RawMessage) error
	onEvent func(c *Conn, name string, args []json.RawMessage, ackID int64)

	mu        sync.Mutex
	auths     []string
	connected chan *Conn
	events    chan eventRec
	discon    chan string
}

func newTestHandler() *testHandler {
	return &testHandler{
		connected: make(chan *Conn, 16),
		events:    make(chan eventRec, 4096),
		discon:    make(chan string, 16),
	}
}

func (h *testHandler) Authenticate(ctx context.Context, c *Conn, auth json.RawMessage) error {
	h.mu.Lock()
	h.auths = append(h.auths, string(auth))
	h.mu.Unlock()
	if h.auth != nil {
		return h.auth(ctx, c, auth)
	}
	return nil
}

func (h *testHandler) OnConnected(c *Conn) { h.connected <- c }

func (h *testHandler) OnEvent(c *Conn, name string, args []json.RawMessage, ackID int64) {
	if h.onEvent != nil {
		h.onEvent(c, name, args, ackID)
	}
	h.events <- eventRec{name, args, ackID}
}

func (h *testHandler) OnDisconnect(c *Conn, reason string) { h.discon <- reason }

func (h *testHandler) nextEvent(t *testing.T) eventRec {
	t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(wait):
		t.Fatal("no event delivered")
	}
	return eventRec{}
}

func (h *testHandler) nextDisconnect(t *testing.T) string {
	t.Helper()
	select {
	case r := <-h.discon:
		return r
	case <-time.After(wait):
		t.Fatal("OnDisconnect not called")
	}
	return ""
}

func (h *testHandler) nextConnected(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-h.connected:
		return c
	case <-time.After(wait):
		t.Fatal("OnConnected not called")
	}
	return nil
}

// ---------- test server ----------

type testServer struct {
	s     *Server
	ts    *httptest.Server
	reg   *prometheus.Registry
	wsURL string
}

func newTestServer(t *testing.T, h Handler, opt Options) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	opt.Registerer = reg
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := NewServer(h, opt)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return &testServer{s: s, ts: ts, reg: reg, wsURL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/socket.io/?EIO=4&transport=websocket"}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	m := &dto.Metric{}
	if err := (<-ch).Write(m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// ---------- test client (gws) ----------

type frame struct {
	op   gws.Opcode
	data string
}

type testClient struct {
	ws     *gws.Conn
	frames chan frame
	closed chan struct{}
	err    error // close error, valid after closed
}

type clientHandler struct {
	gws.BuiltinEventHandler
	c *testClient
}

func (h clientHandler) OnMessage(_ *gws.Conn, m *gws.Message) {
	h.c.frames <- frame{m.Opcode, string(m.Bytes())}
	_ = m.Close()
}

func (h clientHandler) OnClose(_ *gws.Conn, err error) {
	h.c.err = err
	close(h.c.closed)
}

func dial(t *testing.T, url string, hdr http.Header) (*testClient, *http.Response, error) {
	t.Helper()
	c := &testClient{frames: make(chan frame, 4096), closed: make(chan struct{})}
	ws, resp, err := gws.NewClient(clientHandler{c: c}, &gws.ClientOption{Addr: url, RequestHeader: hdr})
	if err != nil {
		return nil, resp, err
	}
	c.ws = ws
	go ws.ReadLoop()
	t.Cleanup(func() { _ = ws.NetConn().Close(); <-c.closed })
	return c, resp, nil
}

// open dials and consumes the open packet, returning the sid.
func (ts *testServer) open(t *testing.T) (*testClient, string) {
	t.Helper()
	c, _, err := dial(t, ts.wsURL, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	f := c.read(t)
	if !strings.HasPrefix(f, "0{") {
		t.Fatalf("first frame %q is not an open packet", f)
	}
	var open struct{ Sid string }
	if err := json.Unmarshal([]byte(f[1:]), &open); err != nil {
		t.Fatal(err)
	}
	return c, open.Sid
}

// connect opens and completes a Socket.IO CONNECT.
func (ts *testServer) connect(t *testing.T, h *testHandler) (*testClient, *Conn) {
	t.Helper()
	c, sid := ts.open(t)
	c.send(t, `40{"token":"t"}`)
	if f := c.read(t); f != `40{"sid":"`+sid+`"}` {
		t.Fatalf("connect answer %q", f)
	}
	return c, h.nextConnected(t)
}

func (c *testClient) send(t *testing.T, s string) {
	t.Helper()
	if err := c.ws.WriteString(s); err != nil {
		t.Fatalf("send %q: %v", s, err)
	}
}

// read returns the next text frame, skipping server pings.
func (c *testClient) read(t *testing.T) string {
	t.Helper()
	for {
		select {
		case f := <-c.frames:
			if f.data == "2" {
				continue
			}
			return f.data
		case <-c.closed:
			select { // frames that arrived before the close come first
			case f := <-c.frames:
				if f.data == "2" {
					continue
				}
				return f.data
			default:
			}
			t.Fatalf("connection closed (%v) while reading", c.err)
		case <-time.After(wait):
			t.Fatal("no frame received")
		}
	}
}

// waitClosed waits for the server to close the connection and returns the
// close code (0 when there was no close frame).
func (c *testClient) waitClosed(t *testing.T) uint16 {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(wait):
		t.Fatal("connection not closed")
	}
	var ce *gws.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	return 0
}

// ---------- tests ----------

func TestOpenPacket(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, _, err := dial(t, ts.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := c.read(t)
	if f[0] != '0' {
		t.Fatalf("frame %q", f)
	}
	var open map[string]any
	if err := json.Unmarshal([]byte(f[1:]), &open); err != nil {
		t.Fatal(err)
	}
	sid, _ := open["sid"].(string)
	if len(sid) != 20 || strings.ContainsAny(sid, ".¬+/=") {
		t.Errorf("sid %q: want 20 base64url chars", sid)
	}
	if ups, ok := open["upgrades"].([]any); !ok || len(ups) != 0 {
		t.Errorf("upgrades = %v, want []", open["upgrades"])
	}
	if open["pingInterval"] != 25000.0 || open["pingTimeout"] != 5000.0 || open["maxPayload"] != 1e6 {
		t.Errorf("open = %v", open)
	}
	if len(open) != 5 {
		t.Errorf("open has %d fields: %v", len(open), open)
	}
	if ts.s.Count() != 1 || ts.s.Lookup(sid) == nil {
		t.Errorf("Count %d, Lookup(%q) nil", ts.s.Count(), sid)
	}
}

func TestHTTPRefusals(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{AllowedOrigins: []string{"https://App.Example.org", "http://localhost:3000"}})
	upgrade := http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version": {"13"},
	}
	tests := []struct {
		name       string
		method     string
		query      string
		header     http.Header
		origin     string
		wantStatus int
		wantBody   string
	}{
		{"polling", "GET", "EIO=4&transport=polling", nil, "", 400, `{"code":0,"message":"Transport unknown"}`},
		{"no transport", "GET", "EIO=4", upgrade, "", 400, `{"code":0,"message":"Transport unknown"}`},
		{"sid upgrade", "GET", "EIO=4&transport=websocket&sid=abc", upgrade, "", 400, `{"code":1,"message":"Session ID unknown"}`},
		{"post", "POST", "EIO=4&transport=websocket", upgrade, "", 400, `{"code":2,"message":"Bad handshake method"}`},
		{"bad origin", "GET", "EIO=4&transport=websocket", upgrade, "https://evil.example.org", 403, `{"code":4,"message":"Forbidden"}`},
		{"origin null", "GET", "EIO=4&transport=websocket", upgrade, "null", 403, `{"code":4,"message":"Forbidden"}`},
		{"origin other port", "GET", "EIO=4&transport=websocket", upgrade, "http://localhost:3001", 403, `{"code":4,"message":"Forbidden"}`},
		{"eio3", "GET", "EIO=3&transport=websocket", upgrade, "", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"no eio", "GET", "transport=websocket", upgrade, "", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"not an upgrade", "GET", "EIO=4&transport=websocket", nil, "", 400, `{"code":3,"message":"Bad request"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.ts.URL+"/socket.io/?"+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}

	// Allowed origins: case-insensitive, default port dropped; no Origin allowed.
	for _, origin := range []string{"https://app.example.org", "HTTPS://APP.EXAMPLE.ORG:443", "http://localhost:3000", ""} {
		t.Run("allowed "+origin, func(t *testing.T) {
			hdr := http.Header{}
			if origin != "" {
				hdr.Set("Origin", origin)
			}
			c, _, err := dial(t, ts.wsURL, hdr)
			if err != nil {
				t.Fatalf("dial with origin %q: %v", origin, err)
			}
			if f := c.read(t); f[0] != '0' {
				t.Fatalf("frame %q", f)
			}
		})
	}
}

func TestConnectAccepted(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, conn := ts.connect(t, h)
	if got := h.auths[0]; got != `{"token":"t"}` {
		t.Errorf("auth = %s", got)
	}
	if !conn.Connected() || conn.RemoteAddr() == "" {
		t.Errorf("conn state: connected %v addr %q", conn.Connected(), conn.RemoteAddr())
	}
	conn.SetValue(42)
	if conn.Value() != 42 {
		t.Errorf("Value = %v", conn.Value())
	}
	if err := conn.Emit("chat.unreadCount.update", "c1", "3"); err != nil {
		t.Fatal(err)
	}
	if f := c.read(t); f != `42["chat.unreadCount.update","c1","3"]` {
		t.Errorf("emit frame %q", f)
	}
	// CONNECT without auth payload reaches Authenticate as nil.
	c2, _ := ts.open(t)
	c2.send(t, `40`)
	if f := c2.read(t); !strings.HasPrefix(f, `40{"sid":`) {
		t.Fatalf("frame %q", f)
	}
	h.nextConnected(t)
	if got := h.auths[1]; got != "" {
		t.Errorf("auth = %q, want empty", got)
	}
}

func TestConnectRefusedThenRetry(t *testing.T) {
	h := newTestHandler()
	attempts := 0
	h.auth = func(_ context.Context, _ *Conn, auth json.RawMessage) error {
		attempts++
		if attempts == 1 {
			return fmt.Errorf("wrapped: %w", &ConnectError{Message: "no token provided", Data: unauthorized{
				Message: "no token provided", Code: "credentials_required", Type: "UnauthorizedError"}})
		}
		if attempts == 2 {
			return errors.New("jwks down")
		}
		return nil
	}
	ts := newTestServer(t, h, Options{})
	c, sid := ts.open(t)
	c.send(t, `40`)
	if f := c.read(t); f != `44{"message":"no token provided","data":{"message":"no token provided","code":"credentials_required","type":"UnauthorizedError"}}` {
		t.Fatalf("refusal %q", f)
	}
	c.send(t, `42["early"]`) // ignored: not connected
	c.send(t, `40{"token":"t"}`)
	if f := c.read(t); f != `44{"message":"Internal server error"}` {
		t.Fatalf("internal error answer %q", f)
	}
	c.send(t, `40{"token":"t"}`)
	if f := c.read(t); f != `40{"sid":"`+sid+`"}` {
		t.Fatalf("accept %q", f)
	}
	h.nextConnected(t)
	c.send(t, `42["late"]`)
	if e := h.nextEvent(t); e.name != "late" {
		t.Fatalf("event %q, the early one must have been dropped", e.name)
	}
	if v := counterValue(t, ts.s.m.malformed.WithLabelValues("event_before_connect")); v != 1 {
		t.Errorf("event_before_connect = %v", v)
	}
}

func TestAcceptThenDisconnect(t *testing.T) {
	h := newTestHandler()
	h.auth = func(context.Context, *Conn, json.RawMessage) error { return ErrAcceptThenDisconnect }
	ts := newTestServer(t, h, Options{})
	c, sid := ts.open(t)
	c.send(t, `40{"token":"no-claims"}`)
	if f := c.read(t); f != `40{"sid":"`+sid+`"}` {
		t.Fatalf("frame %q", f)
	}
	if f := c.read(t); f != `41` {
		t.Fatalf("frame %q, want 41", f)
	}
	c.waitClosed(t)
	select {
	case <-h.connected:
		t.Error("OnConnected called")
	case r := <-h.discon:
		t.Errorf("OnDisconnect(%q) called", r)
	default:
	}
}

func TestEventsInOrderAndAck(t *testing.T) {
	h := newTestHandler()
	h.onEvent = func(c *Conn, name string, args []json.RawMessage, ackID int64) {
		if ackID >= 0 {
			_ = c.Ack(ackID, append([]json.RawMessage{json.RawMessage(`"pong"`)}, args...))
		}
	}
	ts := newTestServer(t, h, Options{})
	c, _ := ts.connect(t, h)
	const n = 200
	for i := range n {
		c.send(t, fmt.Sprintf(`42["enterPage","/p/%d"]`, i))
	}
	for i := range n {
		e := h.nextEvent(t)
		if e.name != "enterPage" || len(e.args) != 1 || string(e.args[0]) != fmt.Sprintf(`"/p/%d"`, i) || e.ackID != -1 {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
	c.send(t, `4217["ping",{"a":[1,2]}]`)
	e := h.nextEvent(t)
	if e.ackID != 17 || string(e.args[0]) != `{"a":[1,2]}` {
		t.Fatalf("ack event %+v", e)
	}
	if f := c.read(t); f != `4317["pong",{"a":[1,2]}]` {
		t.Errorf("ack frame %q", f)
	}
	if v := counterValue(t, ts.s.m.framesIn); v < n+2 {
		t.Errorf("frames in = %v", v)
	}
}

func TestClientDisconnect(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, _ := ts.connect(t, h)
	c.send(t, `41`)
	if r := h.nextDisconnect(t); r != ReasonClientDisconnect {
		t.Errorf("reason %q", r)
	}
	c.waitClosed(t)
}

func TestServerDisconnectAndClose(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, conn := ts.connect(t, h)
	conn.Disconnect()
	if f := c.read(t); f != "41" {
		t.Fatalf("frame %q", f)
	}
	if code := c.waitClosed(t); code != 1000 {
		t.Errorf("close code %d", code)
	}
	if r := h.nextDisconnect(t); r != ReasonServerDisconnect {
		t.Errorf("reason %q", r)
	}
	if err := conn.Send([]byte(`42["x"]`)); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v", err)
	}

	c2, conn2 := ts.connect(t, h)
	conn2.Close("kicked")
	c2.waitClosed(t)
	if r := h.nextDisconnect(t); r != "kicked" {
		t.Errorf("reason %q", r)
	}
}

func TestEngineClosePacket(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, _ := ts.connect(t, h)
	c.send(t, `1`)
	c.waitClosed(t)
	if r := h.nextDisconnect(t); r != ReasonTransportClose {
		t.Errorf("reason %q", r)
	}
}

func TestTransportClose(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, _ := ts.connect(t, h)
	_ = c.ws.WriteClose(1001, nil)
	if r := h.nextDisconnect(t); r != ReasonTransportClose {
		t.Errorf("reason %q", r)
	}
}

func TestHeartbeat(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{PingInterval: 20 * time.Millisecond, PingTimeout: 150 * time.Millisecond})

	// A client answering pings stays connected across several pings.
	good, _ := ts.connect(t, h)
	pings := make(chan struct{}, 1024)
	stop := make(chan struct{})
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for {
			select {
			case f := <-good.frames:
				if f.data == "2" {
					_ = good.ws.WriteString("3")
					pings <- struct{}{}
				}
			case <-stop:
				return
			}
		}
	}()
	for range 5 {
		select {
		case <-pings:
		case <-good.closed:
			t.Fatalf("answering client closed: %v", good.err)
		case <-time.After(wait):
			t.Fatal("no ping")
		}
	}

	// A client that never answers is closed with "ping timeout".
	bad, _ := ts.connect(t, h)
	bad.waitClosed(t)
	if r := h.nextDisconnect(t); r != ReasonPingTimeout {
		t.Errorf("reason %q", r)
	}
	select {
	case <-good.closed:
		t.Error("answering client was closed too")
	default:
	}
	close(stop)
	<-answered
	if v := counterValue(t, ts.s.m.connections); v != 1 {
		t.Errorf("connections gauge = %v, want 1", v)
	}
}

func TestConnectTimeout(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{ConnectTimeout: 30 * time.Millisecond})
	c, _ := ts.open(t)
	c.waitClosed(t)
	select {
	case r := <-h.discon:
		t.Errorf("OnDisconnect(%q) for a never-connected socket", r)
	default:
	}
}

func TestAuthenticateBlocksReadsNotLost(t *testing.T) {
	h := newTestHandler()
	release := make(chan struct{})
	h.auth = func(ctx context.Context, _ *Conn, _ json.RawMessage) error {
		<-release
		return nil
	}
	ts := newTestServer(t, h, Options{})
	c, _ := ts.open(t)
	c.send(t, `40{"token":"t"}`)
	c.send(t, `42["first"]`)
	c.send(t, `42["second"]`)
	close(release)
	h.nextConnected(t)
	if e := h.nextEvent(t); e.name != "first" {
		t.Errorf("got %q", e.name)
	}
	if e := h.nextEvent(t); e.name != "second" {
		t.Errorf("got %q", e.name)
	}
}

func TestMaxPayload(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{MaxPayload: 1024})
	c, _ := ts.connect(t, h)
	c.send(t, `42["ok","`+strings.Repeat("a", 900)+`"]`)
	h.nextEvent(t)
	c.send(t, `42["big","`+strings.Repeat("a", 2000)+`"]`)
	if code := c.waitClosed(t); code != 1009 {
		t.Errorf("close code %d, want 1009", code)
	}
	if r := h.nextDisconnect(t); r != ReasonTransportError {
		t.Errorf("reason %q", r)
	}
	if v := counterValue(t, ts.s.m.malformed.WithLabelValues("too_large")); v != 1 {
		t.Errorf("too_large = %v", v)
	}
}

// rawDial opens a websocket with a bare TCP connection that never reads.
func rawDial(t *testing.T, ts *testServer) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", ts.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_, err = fmt.Fprintf(nc, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "101") {
		t.Fatalf("handshake: %q %v", line, err)
	}
	return nc
}

func TestSlowConsumer(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{OutboundQueue: 8})
	rawDial(t, ts)
	var conn *Conn
	for deadline := time.Now().Add(wait); conn == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("connection not registered")
		}
		ts.s.mu.Lock()
		for _, c := range ts.s.conns {
			conn = c
		}
		ts.s.mu.Unlock()
	}
	big := EncodeEventRaw("x", []json.RawMessage{json.RawMessage(`"` + strings.Repeat("a", 64<<10) + `"`)})
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = conn.Send(big)
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("send error %v, want ErrSlowConsumer", err)
	}
	if err := conn.Send(big); !errors.Is(err, ErrClosed) {
		t.Errorf("send after slow consumer: %v", err)
	}
	if v := counterValue(t, ts.s.m.slowConsumers); v != 1 {
		t.Errorf("slow consumers = %v", v)
	}
	deadline := time.Now().Add(wait)
	for ts.s.Count() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := ts.s.Count(); n != 0 {
		t.Errorf("Count = %d after slow consumer close", n)
	}
}

func TestSlowConsumerConnected(t *testing.T) {
	// Same through the handler: OnDisconnect gets "slow consumer".
	h := newTestHandler()
	ts := newTestServer(t, h, Options{OutboundQueue: 4})
	nc := rawDial(t, ts)
	// Send CONNECT as a masked client frame.
	writeClientText(t, nc, `40`)
	conn := h.nextConnected(t)
	big := EncodeEventRaw("x", []json.RawMessage{json.RawMessage(`"` + strings.Repeat("a", 64<<10) + `"`)})
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = conn.Send(big)
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("send error %v", err)
	}
	if r := h.nextDisconnect(t); r != ReasonSlowConsumer {
		t.Errorf("reason %q", r)
	}
}

func writeClientText(t *testing.T, nc net.Conn, s string) {
	t.Helper()
	if len(s) > 125 {
		t.Fatal("short frames only")
	}
	b := []byte{0x81, 0x80 | byte(len(s)), 0, 0, 0, 0} // zero mask key
	b = append(b, s...)
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentEmit(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{OutboundQueue: 100000})
	c, conn := ts.connect(t, h)
	const workers, per = 8, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				if err := conn.Emit("n", w, i); err != nil {
					t.Errorf("emit: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	last := make(map[int]int)
	for range workers * per {
		var w, i int
		if _, err := fmt.Sscanf(c.read(t), `42["n",%d,%d]`, &w, &i); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[w]; ok && i != prev+1 {
			t.Fatalf("worker %d: %d after %d", w, i, prev)
		}
		last[w] = i
	}
}

func TestHandlerPanic(t *testing.T) {
	h := newTestHandler()
	h.onEvent = func(_ *Conn, name string, _ []json.RawMessage, _ int64) {
		if name == "boom" {
			panic("boom")
		}
	}
	ts := newTestServer(t, h, Options{})
	c, _ := ts.connect(t, h)
	c.send(t, `42["boom"]`)
	if code := c.waitClosed(t); code != 1011 {
		t.Errorf("close code %d", code)
	}
	if r := h.nextDisconnect(t); r != ReasonInternalError {
		t.Errorf("reason %q", r)
	}
	// The server still works.
	ts.connect(t, h)
}

func TestMalformedFrames(t *testing.T) {
	tests := []struct {
		name      string
		connected bool   // CONNECT first
		binary    bool   // send as a binary frame
		frame     string // what the client sends
		reason    string // malformed_packets_total label ("" = not counted)
		close     uint16 // expected close code; 0 = connection stays usable
		reply     string // expected reply frame, if any
	}{
		{"binary frame", true, true, "451-[\"x\"]", "binary_frame", 1003, ""},
		{"empty frame", true, false, "", "engine_empty", 1002, ""},
		{"engine open from client", true, false, "0{}", "engine_unknown_type", 1002, ""},
		{"engine unknown type", true, false, "9", "engine_unknown_type", 1002, ""},
		{"engine upgrade", true, false, "5", "engine_unexpected_upgrade", 0, ""},
		{"engine noop", true, false, "6", "", 0, ""},
		{"engine ping probe", true, false, "2probe", "", 0, "3probe"},
		{"socket.io empty", true, false, "4", ReasonEmpty, 1002, ""},
		{"unknown socket.io type", true, false, "48[]", ReasonUnknownType, 1002, ""},
		{"binary event", true, false, `451-["x",{"_placeholder":true,"num":0}]`, ReasonBinaryUnsupported, 1002, ""},
		{"ack id overflow", true, false, `4299999999999999999999["x"]`, ReasonBadAckID, 1002, ""},
		{"bad json", true, false, `42["x",}`, ReasonBadJSON, 1002, ""},
		{"too deep", true, false, `42["x",` + strings.Repeat("[", 33) + strings.Repeat("]", 33) + `]`, ReasonTooDeep, 1002, ""},
		{"event object", true, false, `42{"x":1}`, ReasonBadPayload, 1002, ""},
		{"event name number", true, false, `42[1,2]`, ReasonEventNameType, 1002, ""},
		{"invalid utf8", true, false, "42[\"\xff\"]", ReasonInvalidUTF8, 1007, ""},
		{"connect other namespace", true, false, `40/admin,{}`, "invalid_namespace", 0, `44/admin,{"message":"Invalid namespace"}`},
		{"event other namespace", true, false, `42/admin,["x"]`, "wrong_namespace", 0, ""},
		{"duplicate connect", true, false, `40{}`, "duplicate_connect", 0, ""},
		{"client ack", true, false, `431["x"]`, "unexpected_ack", 0, ""},
		{"client connect error", true, false, `44{"message":"x"}`, "unexpected_connect_error", 0, ""},
		{"event before connect", false, false, `42["x"]`, "event_before_connect", 0, ""},
		{"disconnect before connect", false, false, `41`, "disconnect_before_connect", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler()
			ts := newTestServer(t, h, Options{})
			var c *testClient
			if tt.connected {
				c, _ = ts.connect(t, h)
			} else {
				c, _ = ts.open(t)
			}
			op := gws.OpcodeText
			if tt.binary {
				op = gws.OpcodeBinary
			}
			if err := c.ws.WriteMessage(op, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			if tt.close != 0 {
				if code := c.waitClosed(t); code != tt.close {
					t.Errorf("close code %d, want %d", code, tt.close)
				}
				if tt.connected {
					if r := h.nextDisconnect(t); r == "" {
						t.Error("empty disconnect reason")
					}
				}
			} else {
				if tt.reply != "" {
					if f := c.read(t); f != tt.reply {
						t.Errorf("reply %q, want %q", f, tt.reply)
					}
				}
				if !tt.connected {
					c.send(t, `40`)
					c.read(t)
					h.nextConnected(t)
				}
				// Still usable: a valid event is delivered after the bad frame.
				c.send(t, `42["after"]`)
				if e := h.nextEvent(t); e.name != "after" {
					t.Errorf("event %q", e.name)
				}
			}
			if tt.reason != "" {
				if v := counterValue(t, ts.s.m.malformed.WithLabelValues(tt.reason)); v != 1 {
					t.Errorf("malformed{%s} = %v, want 1", tt.reason, v)
				}
			}
		})
	}
}

func TestTooManyConnectAttempts(t *testing.T) {
	h := newTestHandler()
	h.auth = func(context.Context, *Conn, json.RawMessage) error { return &ConnectError{Message: "no"} }
	ts := newTestServer(t, h, Options{})
	c, _ := ts.open(t)
	for range maxConnectAttempts {
		c.send(t, `40`)
		if f := c.read(t); f != `44{"message":"no"}` {
			t.Fatalf("frame %q", f)
		}
	}
	c.send(t, `40`)
	if code := c.waitClosed(t); code != 1002 {
		t.Errorf("close code %d", code)
	}
}

func TestShutdown(t *testing.T) {
	h := newTestHandler()
	ts := newTestServer(t, h, Options{})
	c, conn := ts.connect(t, h)
	c2, _ := ts.open(t) // not connected: no OnDisconnect
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ts.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ts.s.Count() != 0 {
		t.Errorf("Count = %d after Shutdown", ts.s.Count())
	}
	if f := c.read(t); f != "1" {
		t.Errorf("frame %q, want engine close 1 (and no 41)", f)
	}
	if code := c.waitClosed(t); code != 1012 {
		t.Errorf("close code %d, want 1012", code)
	}
	c2.waitClosed(t)
	if r := h.nextDisconnect(t); r != ReasonShutdown {
		t.Errorf("reason %q", r)
	}
	select {
	case r := <-h.discon:
		t.Errorf("extra OnDisconnect(%q)", r)
	default:
	}
	if err := conn.Emit("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("emit after shutdown: %v", err)
	}
	_, resp, err := dial(t, ts.wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after shutdown: %v %v", resp, err)
	}
	// The heartbeat goroutine exits once no connection is left.
	deadline := time.Now().Add(wait)
	for {
		ts.s.mu.Lock()
		scanning := ts.s.scanning
		ts.s.mu.Unlock()
		if !scanning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("scanner still running")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdownDeadline(t *testing.T) {
	h := newTestHandler()
	block := make(chan struct{})
	h.auth = func(context.Context, *Conn, json.RawMessage) error { <-block; return nil }
	ts := newTestServer(t, h, Options{})
	defer close(block)
	c, _ := ts.open(t)
	c.send(t, `40`)
	// Wait until Authenticate is running.
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
		h.mu.Lock()
		n := len(h.auths)
		h.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Authenticate not called")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	c.waitClosed(t)
}

func TestNormalizeOrigin(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"https://App.Example.org", "https://app.example.org", true},
		{"https://app.example.org:443", "https://app.example.org", true},
		{"http://app.example.org:80/", "http://app.example.org", true},
		{"http://localhost:3000", "http://localhost:3000", true},
		{"http://[::1]:3000", "http://[::1]:3000", true},
		{"http://[::1]", "http://[::1]", true},
		{"null", "", false},
		{"app.example.org", "", false},
		{"https://user@app.example.org", "", false},
	}
	for _, tt := range tests {
		got, ok := normalizeOrigin(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normalizeOrigin(%q) = %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNewRandomID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := NewRandomID()
		if len(id) != 20 || strings.ContainsAny(id, ".+/=¬") || seen[id] {
			t.Fatalf("bad or duplicate id %q", id)
		}
		seen[id] = true
	}
}
