// Package sioclient is a small Socket.IO v5 client (Engine.IO 4, websocket
// transport only) built on github.com/lxzan/gws. It speaks like
// socket.io-client 4.x created with transports: ["websocket"]: it opens
// /socket.io/?EIO=4&transport=websocket, waits for the Engine.IO open packet,
// sends the CONNECT packet with the auth payload ({"token": ...}), waits for
// the CONNECT acknowledgement, answers pings, and delivers events and acks.
//
// It is meant for load generation and tests: a client costs one gws read
// loop goroutine, a small read buffer and a handful of small allocations, so
// tens of thousands of clients fit in one process. The server is trusted
// (frames are parsed leniently but never cause a panic).
package sioclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/clowdr/realtime/host/socketio"
)

// Disconnect reasons passed to Options.OnDisconnect (socket.io-client's names).
const (
	ReasonServerDisconnect = "io server disconnect"
	ReasonClientDisconnect = "io client disconnect"
	ReasonPingTimeout      = "ping timeout"
	ReasonTransportClose   = "transport close"
	ReasonTransportError   = "transport error"
	ReasonParseError       = "parse error"
)

// DefaultConnectTimeout bounds Dial when neither Options.ConnectTimeout nor
// the context sets a shorter limit.
const DefaultConnectTimeout = 10 * time.Second

// defaultReadBuffer is the size of each client's socket read buffer. Frames
// larger than it are still read whole (into a pooled buffer).
const defaultReadBuffer = 1024

var (
	// ErrServerDisconnect is returned by Dial when the server answers the
	// CONNECT with a DISCONNECT (41), e.g. a valid token without a user id.
	ErrServerDisconnect = errors.New("sioclient: server disconnected the socket")
	// ErrClosed is returned by operations on a closed or disconnected client.
	ErrClosed = errors.New("sioclient: client is closed")
)

// ConnectError is the server's CONNECT_ERROR (44): the connection was refused.
type ConnectError struct {
	// Message is the error message ("message" member).
	Message string
	// Data is the "data" member, or nil when absent.
	Data json.RawMessage
}

// Error implements error.
func (e *ConnectError) Error() string { return "sioclient: connect refused: " + e.Message }

// Options configure Dial.
type Options struct {
	// Token is sent as the CONNECT payload {"token": Token} (socket.io-client's
	// auth option). An empty token sends {} (no token).
	Token string
	// Auth, when non-nil, is sent verbatim as the CONNECT payload instead of
	// the token object (for tests of malformed auth). It must be valid JSON
	// for a well-formed packet.
	Auth json.RawMessage
	// Header is added to the websocket upgrade request (e.g. Origin).
	Header http.Header
	// OnEvent is called from the read loop for every event the server emits,
	// in order. args may be retained. It must not block for long: it holds
	// up this client's reads (pings included).
	OnEvent func(name string, args []json.RawMessage)
	// OnDisconnect is called once when a connected client goes away, with a
	// socket.io-client reason (Reason* constants).
	OnDisconnect func(reason string)
	// ConnectTimeout bounds the whole Dial (TCP, upgrade, open, CONNECT);
	// default DefaultConnectTimeout. The context may set a shorter limit.
	ConnectTimeout time.Duration
	// ReadBufferSize is the socket read buffer (default 1 KiB).
	ReadBufferSize int
}

// client states
const (
	stateOpening    int32 = iota // waiting for the Engine.IO open packet
	stateConnecting              // CONNECT sent, waiting for 40/44/41
	stateConnected
	stateClosed
)

// Client is one Socket.IO connection. Its methods are safe for concurrent use.
type Client struct {
	ws           *gws.Conn
	onEvent      func(string, []json.RawMessage)
	onDisconnect func(string)
	connectFrame []byte // sent on open, then dropped

	state    atomic.Int32
	closing  atomic.Bool
	sid      string // set before Dial returns
	liveness time.Duration

	connectCh chan error // buffered 1; the outcome of the handshake
	done      chan struct{}

	mu       sync.Mutex
	nextAck  int64
	acks     map[int64]chan []json.RawMessage
	waiters  []*waiter
	reason   string
	finished bool
}

type waiter struct {
	name string
	ch   chan []json.RawMessage // buffered 1
}

// Dial connects to the Socket.IO server at baseURL (http, https, ws or wss;
// a path other than "/" is ignored: the endpoint is /socket.io/) and returns
// once the server accepted the CONNECT. A refusal is a *ConnectError; a
// DISCONNECT in answer is ErrServerDisconnect.
func Dial(ctx context.Context, baseURL string, opt Options) (*Client, error) {
	wsURL, err := endpoint(baseURL)
	if err != nil {
		return nil, err
	}
	timeout := opt.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	auth := opt.Auth
	if auth == nil {
		if opt.Token == "" {
			auth = json.RawMessage(`{}`)
		} else {
			b, merr := json.Marshal(struct {
				Token string `json:"token"`
			}{opt.Token})
			if merr != nil {
				return nil, fmt.Errorf("sioclient: encode auth: %w", merr)
			}
			auth = b
		}
	}
	c := &Client{
		onEvent:      opt.OnEvent,
		onDisconnect: opt.OnDisconnect,
		connectFrame: append([]byte("40"), auth...),
		connectCh:    make(chan error, 1),
		done:         make(chan struct{}),
	}
	rbuf := opt.ReadBufferSize
	if rbuf <= 0 {
		rbuf = defaultReadBuffer
	}
	ws, _, err := gws.NewClient(c, &gws.ClientOption{
		Addr:             wsURL,
		RequestHeader:    opt.Header.Clone(),
		HandshakeTimeout: time.Until(deadline),
		ReadBufferSize:   rbuf,
		NewDialer:        func() (gws.Dialer, error) { return ctxDialer{ctx}, nil },
		NewSession:       func() gws.SessionStorage { return noSession{} },
	})
	if err != nil {
		return nil, fmt.Errorf("sioclient: websocket upgrade %s: %w", wsURL, err)
	}
	c.ws = ws
	_ = ws.SetReadDeadline(deadline)
	go ws.ReadLoop()

	select {
	case err = <-c.connectCh:
	case <-ctx.Done():
		err = fmt.Errorf("sioclient: connect to %s: %w", baseURL, ctx.Err())
	}
	if err != nil {
		c.shut(ReasonClientDisconnect)
		<-c.done
		return nil, err
	}
	return c, nil
}

// endpoint turns a base URL into the websocket URL of the Socket.IO endpoint.
func endpoint(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("sioclient: bad url %q: %w", baseURL, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("sioclient: bad url %q: scheme must be http, https, ws or wss", baseURL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("sioclient: bad url %q: no host", baseURL)
	}
	u.Path = "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket"
	u.Fragment = ""
	return u.String(), nil
}

// ctxDialer dials with the Dial context.
type ctxDialer struct{ ctx context.Context }

func (d ctxDialer) Dial(network, addr string) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(d.ctx, network, addr)
}

// noSession is a zero-size gws.SessionStorage (the default allocates a map).
type noSession struct{}

func (noSession) Len() int                     { return 0 }
func (noSession) Load(string) (any, bool)      { return nil, false }
func (noSession) Delete(string)                {}
func (noSession) Store(string, any)            {}
func (noSession) Range(func(string, any) bool) {}

// ID returns the Socket.IO socket id the server assigned.
func (c *Client) ID() string { return c.sid }

// Connected reports whether the client is connected (not closed or dropped).
func (c *Client) Connected() bool { return c.state.Load() == stateConnected && !c.closing.Load() }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Reason returns why the connection ended ("" while it is up).
func (c *Client) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Emit sends an event. json.RawMessage arguments are sent verbatim; others
// are JSON-encoded.
func (c *Client) Emit(event string, args ...any) error {
	frame, err := EncodeEvent(-1, event, args...)
	if err != nil {
		return err
	}
	return c.write(frame)
}

// EmitWithAck sends an event with an ack id and waits for the server's ack,
// returning its arguments. It fails when ctx ends or the connection drops.
func (c *Client) EmitWithAck(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	ch := make(chan []json.RawMessage, 1)
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	id := c.nextAck
	c.nextAck++
	if c.acks == nil {
		c.acks = make(map[int64]chan []json.RawMessage)
	}
	c.acks[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.acks, id)
		c.mu.Unlock()
	}
	frame, err := EncodeEvent(id, event, args...)
	if err != nil {
		forget()
		return nil, err
	}
	if err := c.write(frame); err != nil {
		forget()
		return nil, err
	}
	select {
	case res, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		return res, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("sioclient: ack of %q: %w", event, ctx.Err())
	}
}

// SendRaw writes one websocket text frame verbatim (e.g. a malformed packet
// for fault tests).
func (c *Client) SendRaw(frame string) error { return c.write([]byte(frame)) }

func (c *Client) write(frame []byte) error {
	if c.closing.Load() || c.state.Load() == stateClosed {
		return ErrClosed
	}
	if err := c.ws.WriteMessage(gws.OpcodeText, frame); err != nil {
		return fmt.Errorf("sioclient: write: %w", err)
	}
	return nil
}

// WaitEvent waits for the next event called name (received after the call)
// and returns its arguments.
func (c *Client) WaitEvent(ctx context.Context, name string) ([]json.RawMessage, error) {
	w := &waiter{name: name, ch: make(chan []json.RawMessage, 1)}
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case args, ok := <-w.ch:
		if !ok {
			return nil, ErrClosed
		}
		return args, nil
	case <-ctx.Done():
		c.mu.Lock()
		for i, x := range c.waiters {
			if x == w {
				c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		select { // delivered meanwhile
		case args, ok := <-w.ch:
			if ok {
				return args, nil
			}
		default:
		}
		return nil, fmt.Errorf("sioclient: wait for %q: %w", name, ctx.Err())
	}
}

// Close disconnects like socket.io-client's disconnect(): a DISCONNECT packet,
// then a websocket close. It waits (at most 5s) for the read loop to end, so
// it should not be called from OnEvent or OnDisconnect (it would wait the
// full 5s there); use it from another goroutine.
func (c *Client) Close() error {
	c.shut(ReasonClientDisconnect)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// shut starts closing with reason (once).
func (c *Client) shut(reason string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.setReason(reason)
	if c.ws == nil {
		return
	}
	if c.state.Load() == stateConnected && reason == ReasonClientDisconnect {
		_ = c.ws.WriteMessage(gws.OpcodeText, []byte("41"))
	}
	_ = c.ws.WriteClose(1000, nil) // closes the net.Conn: the read loop ends
	_ = c.ws.NetConn().Close()
}

func (c *Client) setReason(r string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = r
	}
	c.mu.Unlock()
}

// --- gws.Event ---

// OnOpen implements gws.Event.
func (c *Client) OnOpen(*gws.Conn) {}

// OnPing implements gws.Event (websocket-level ping; Engine.IO pings are text).
func (c *Client) OnPing(ws *gws.Conn, p []byte) { _ = ws.WritePong(p) }

// OnPong implements gws.Event.
func (c *Client) OnPong(*gws.Conn, []byte) {}

// OnClose implements gws.Event: the connection ended.
func (c *Client) OnClose(_ *gws.Conn, err error) {
	reason := ReasonTransportClose
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		reason = ReasonPingTimeout
	}
	c.setReason(reason)
	prev := c.state.Swap(stateClosed)
	c.mu.Lock()
	reason = c.reason
	c.finished = true
	acks, waiters := c.acks, c.waiters
	c.acks, c.waiters = nil, nil
	c.mu.Unlock()
	for _, ch := range acks {
		close(ch)
	}
	for _, w := range waiters {
		close(w.ch)
	}
	switch prev {
	case stateConnected:
		if c.onDisconnect != nil {
			c.onDisconnect(reason)
		}
	case stateOpening, stateConnecting:
		select {
		case c.connectCh <- fmt.Errorf("sioclient: connection closed during handshake (%s): %w", reason, errOr(err)):
		default:
		}
	}
	close(c.done)
}

func errOr(err error) error {
	if err == nil {
		return ErrClosed
	}
	return err
}

// OnMessage implements gws.Event.
func (c *Client) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	data := msg.Bytes()
	if msg.Opcode != gws.OpcodeText || len(data) == 0 {
		return
	}
	switch data[0] {
	case '0': // open
		if c.state.Load() != stateOpening {
			return
		}
		var open struct {
			PingInterval int64 `json:"pingInterval"`
			PingTimeout  int64 `json:"pingTimeout"`
		}
		if err := json.Unmarshal(data[1:], &open); err != nil {
			c.failHandshake(fmt.Errorf("sioclient: bad open packet: %w", err))
			return
		}
		c.liveness = time.Duration(open.PingInterval+open.PingTimeout) * time.Millisecond
		c.state.Store(stateConnecting)
		frame := c.connectFrame
		c.connectFrame = nil
		if err := ws.WriteMessage(gws.OpcodeText, frame); err != nil {
			c.failHandshake(fmt.Errorf("sioclient: send CONNECT: %w", err))
		}
	case '1': // engine close
		c.shut(ReasonTransportClose)
	case '2': // ping
		c.extendLiveness()
		_ = ws.WriteMessage(gws.OpcodeText, []byte{'3'})
	case '4':
		c.onPacket(data[1:])
	}
}

func (c *Client) extendLiveness() {
	if c.liveness > 0 {
		_ = c.ws.SetReadDeadline(time.Now().Add(c.liveness))
	} else {
		_ = c.ws.SetReadDeadline(time.Time{})
	}
}

func (c *Client) failHandshake(err error) {
	select {
	case c.connectCh <- err:
	default:
	}
	c.shut(ReasonClientDisconnect)
}

// onPacket handles one Socket.IO packet (the frame after its '4').
func (c *Client) onPacket(p []byte) {
	if len(p) == 0 {
		return
	}
	typ := p[0]
	rest := p[1:]
	// namespace "/x," (we only use "/", which has no prefix)
	if len(rest) > 0 && rest[0] == '/' {
		if i := indexByte(rest, ','); i >= 0 {
			rest = rest[i+1:]
		} else {
			rest = nil
		}
	}
	id := int64(-1)
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' && n < 18 {
		n++
	}
	if n > 0 {
		id, _ = strconv.ParseInt(string(rest[:n]), 10, 64)
		rest = rest[n:]
	}
	switch typ {
	case '0': // CONNECT ack
		if c.state.Load() != stateConnecting {
			return
		}
		var ack struct {
			SID string `json:"sid"`
		}
		if err := json.Unmarshal(rest, &ack); err != nil || ack.SID == "" {
			c.failHandshake(fmt.Errorf("sioclient: bad CONNECT ack %q", truncate(rest)))
			return
		}
		c.sid = ack.SID
		c.extendLiveness()
		if c.state.CompareAndSwap(stateConnecting, stateConnected) {
			c.connectCh <- nil
		}
	case '4': // CONNECT_ERROR
		ce := &ConnectError{}
		var obj struct {
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(rest, &obj); err == nil {
			ce.Message, ce.Data = obj.Message, obj.Data
		} else if err := json.Unmarshal(rest, &ce.Message); err != nil {
			ce.Message = truncate(rest)
		}
		if c.state.Load() == stateConnecting {
			c.failHandshake(ce)
		}
	case '1': // DISCONNECT
		if c.state.Load() == stateConnecting {
			c.failHandshake(ErrServerDisconnect)
			return
		}
		c.shut(ReasonServerDisconnect)
	case '2': // EVENT
		if c.state.Load() != stateConnected {
			return
		}
		cp := append([]byte(nil), rest...) // the frame buffer goes back to gws's pool
		elems, ok := SplitArray(cp)
		if !ok || len(elems) == 0 || elems[0][0] != '"' {
			return
		}
		name, ok := eventName(elems[0])
		if !ok {
			return
		}
		c.deliver(name, elems[1:])
	case '3': // ACK
		if id < 0 {
			return
		}
		cp := append([]byte(nil), rest...)
		elems, ok := SplitArray(cp)
		if !ok {
			return
		}
		c.mu.Lock()
		ch := c.acks[id]
		delete(c.acks, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- elems
		}
	}
}

func (c *Client) deliver(name string, args []json.RawMessage) {
	c.mu.Lock()
	if len(c.waiters) > 0 {
		kept := c.waiters[:0]
		for _, w := range c.waiters {
			if w.name == name {
				w.ch <- args
				continue
			}
			kept = append(kept, w)
		}
		clear(c.waiters[len(kept):])
		c.waiters = kept
	}
	c.mu.Unlock()
	if c.onEvent != nil {
		c.onEvent(name, args)
	}
}

// eventName decodes an event name (a JSON string). Names are plain ASCII
// in practice: those without an escape are taken as they are, which spares
// the load generator a json.Unmarshal per frame.
func eventName(raw []byte) (string, bool) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && indexByte(raw[1:len(raw)-1], '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", false
	}
	return name, true
}

func indexByte(b []byte, x byte) int {
	for i, v := range b {
		if v == x {
			return i
		}
	}
	return -1
}

func truncate(b []byte) string {
	const max = 64
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// EncodeEvent encodes the Engine.IO frame of a Socket.IO EVENT:
// `42["event",...]`, or `42<id>["event",...]` when ackID >= 0.
// json.RawMessage arguments are copied verbatim (they must be valid JSON);
// others go through json.Marshal.
func EncodeEvent(ackID int64, event string, args ...any) ([]byte, error) {
	buf := make([]byte, 0, 32+len(event))
	buf = append(buf, '4', '2')
	if ackID >= 0 {
		buf = strconv.AppendInt(buf, ackID, 10)
	}
	name, err := json.Marshal(event)
	if err != nil {
		return nil, fmt.Errorf("sioclient: encode event name: %w", err)
	}
	buf = append(append(buf, '['), name...)
	for i, a := range args {
		buf = append(buf, ',')
		if raw, ok := a.(json.RawMessage); ok {
			if len(raw) == 0 {
				buf = append(buf, "null"...)
				continue
			}
			buf = append(buf, raw...)
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("sioclient: encode %q argument %d: %w", event, i, err)
		}
		buf = append(buf, b...)
	}
	return append(buf, ']'), nil
}

// SplitArray splits a JSON array into its top-level elements (the server's
// own splitter, socketio.SplitArray).
func SplitArray(data []byte) (elems []json.RawMessage, ok bool) { return socketio.SplitArray(data) }
