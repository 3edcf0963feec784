package socketio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options (engine.io 4 / socket.io 3 defaults where they exist).
const (
	DefaultPingInterval   = 25 * time.Second
	DefaultPingTimeout    = 5 * time.Second
	DefaultConnectTimeout = 45 * time.Second
	DefaultMaxPayload     = 1_000_000
	DefaultOutboundQueue  = 1024
	DefaultBatchDelay     = 30 * time.Millisecond
)

const (
	// closeGrace bounds a graceful close: if the queued frames and the close
	// frame are not written by then, the TCP connection is closed.
	closeGrace = 2 * time.Second
	// maxConnectAttempts bounds Authenticate calls per engine connection.
	maxConnectAttempts = 5
	// readBufferSize is gws's per-connection bufio.Reader size, which every
	// connection keeps while idle. Client frames are small (events are
	// mostly under 256 bytes; a CONNECT with its token still takes two
	// reads, as with 512); larger payloads are read past the buffer, so a
	// frame of 256–512 bytes costs a second read. 512 → 256 saved ~0.5 KiB
	// of RSS per idle socket (BENCHMARKS.md, connect).
	readBufferSize = 256
	// logFrameBytes is how much of a bad frame is logged.
	logFrameBytes = 128
)

// Options configures a Server. Zero values take the documented defaults.
type Options struct {
	// PingInterval is the time between server pings (default 25s).
	PingInterval time.Duration
	// PingTimeout is how long the server waits for any frame after a ping
	// before closing with reason "ping timeout" (default 5s).
	PingTimeout time.Duration
	// ConnectTimeout closes an engine connection that has not completed a
	// Socket.IO CONNECT to "/" by then (default 45s).
	ConnectTimeout time.Duration
	// MaxPayload is the largest websocket message accepted, in bytes
	// (default 1_000_000); a larger one closes the connection (1009).
	MaxPayload int
	// AllowedOrigins lists the browser origins ("https://host[:port]")
	// allowed to open a websocket. Empty, or containing "*", allows any.
	// Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string
	// OutboundQueue is the most frames that may wait to be written to one
	// connection (default 1024); beyond it the connection is closed as a
	// slow consumer.
	OutboundQueue int
	// BatchDelay is how long a frame sent with Conn.SendBatched (room
	// fan-out) may wait to share a write with later frames when the
	// connection wrote within the last BatchDelay (default 30ms; negative:
	// never wait). See writer.go.
	BatchDelay time.Duration
	// NewID generates engine/socket ids (default: 20 characters of
	// crypto-random base64url). Ids must be unique and must not contain '.'.
	NewID func() string
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the server's Prometheus collectors.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = DefaultPingTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.OutboundQueue <= 0 {
		o.OutboundQueue = DefaultOutboundQueue
	}
	if o.BatchDelay == 0 {
		o.BatchDelay = DefaultBatchDelay
	}
	if o.NewID == nil {
		o.NewID = NewRandomID
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// NewRandomID returns 20 characters of crypto-random base64url (120 bits).
func NewRandomID() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Handler receives the Socket.IO life cycle of every connection. Calls for
// one connection happen one at a time, in order: each Socket.IO packet is
// handled on a short-lived goroutine while the connection's read goroutine
// waits for it (so that goroutine's stack stays small), and OnDisconnect
// runs on the read goroutine after the last of them.
type Handler interface {
	// Authenticate runs when the client's Socket.IO CONNECT to "/" arrives
	// (auth = the CONNECT JSON payload, may be nil). It may block (token
	// check, directory lookup); events arriving meanwhile are read only after
	// it returns, so none is lost. ctx ends at the connect timeout or at
	// Shutdown.
	//   - nil: the server sends `40{"sid":id}` and then calls OnConnected.
	//   - a *ConnectError (possibly wrapped): sent as
	//     `44{"message":..,"data":..}`; the socket stays unconnected (the
	//     client may retry CONNECT) until ConnectTimeout.
	//   - ErrAcceptThenDisconnect: `40{"sid"}` then `41`, then the
	//     connection is closed; OnConnected/OnDisconnect are not called.
	//   - any other error: logged, and answered `44{"message":"Internal server error"}`.
	Authenticate(ctx context.Context, c *Conn, auth json.RawMessage) error
	// OnConnected runs after `40{"sid"}` was queued.
	OnConnected(c *Conn)
	// OnEvent delivers one EVENT; ackID is -1 when the client asked no ack.
	// args stay valid after the call (they are not reused). It must not
	// block long: the connection reads nothing meanwhile.
	OnEvent(c *Conn, name string, args []json.RawMessage, ackID int64)
	// OnDisconnect is called once for every conn for which OnConnected was
	// called, with a reason such as "client namespace disconnect",
	// "transport close", "transport error", "ping timeout", "slow consumer",
	// "server shutting down", "server namespace disconnect".
	OnDisconnect(c *Conn, reason string)
}

// ConnectError is returned by Handler.Authenticate to refuse a CONNECT; it is
// sent to the client as `44{"message":Message,"data":Data}`.
type ConnectError struct {
	Message string
	Data    any
}

// Error implements error.
func (e *ConnectError) Error() string { return "socketio: connect refused: " + e.Message }

// ErrAcceptThenDisconnect makes Authenticate accept the CONNECT and disconnect
// the socket right away (`40{"sid"}` then `41`), as the original service did
// for tokens without Hasura claims.
var ErrAcceptThenDisconnect = errors.New("socketio: accept then disconnect")

// Errors of Conn.Send.
var (
	ErrClosed       = errors.New("socketio: connection closed")
	ErrSlowConsumer = errors.New("socketio: slow consumer, connection closed")
)

// Disconnect reasons passed to Handler.OnDisconnect.
const (
	ReasonClientDisconnect = "client namespace disconnect"
	ReasonServerDisconnect = "server namespace disconnect"
	ReasonTransportClose   = "transport close"
	ReasonTransportError   = "transport error"
	ReasonPingTimeout      = "ping timeout"
	ReasonConnectTimeout   = "connect timeout"
	ReasonSlowConsumer     = "slow consumer"
	ReasonShutdown         = "server shutting down"
	ReasonParseError       = "parse error"
	ReasonInternalError    = "internal error"
)

// Server is an Engine.IO v4 / Socket.IO v5 server (namespace "/" only,
// websocket transport only). Mount it at /socket.io/.
type Server struct {
	h      Handler
	opt    Options
	log    *slog.Logger
	m      *metrics
	up     *gws.Upgrader
	batch  *batcher // nil: SendBatched is Send
	start  time.Time
	tick   time.Duration
	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc

	allowAnyOrigin bool
	origins        map[string]struct{}

	mu       sync.Mutex
	conns    map[string]*Conn
	shutting bool
	scanning bool
	wg       sync.WaitGroup // one per accepted upgrade, done in OnClose
}

// NewServer returns a Server delivering to h.
func NewServer(h Handler, opt Options) *Server {
	opt = opt.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		h:      h,
		opt:    opt,
		log:    opt.Logger,
		m:      newMetrics(opt.Registerer),
		start:  time.Now(),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[string]*Conn),
	}
	if opt.BatchDelay > 0 {
		s.batch = &batcher{s: s, delay: opt.BatchDelay}
	}
	s.tick = min(opt.PingInterval, opt.PingTimeout, opt.ConnectTimeout) / 4
	s.tick = max(min(s.tick, 500*time.Millisecond), time.Millisecond)

	s.allowAnyOrigin = len(opt.AllowedOrigins) == 0
	s.origins = make(map[string]struct{}, len(opt.AllowedOrigins))
	for _, o := range opt.AllowedOrigins {
		if strings.TrimSpace(o) == "*" {
			s.allowAnyOrigin = true
			continue
		}
		n, ok := normalizeOrigin(o)
		if !ok {
			s.log.Warn("socketio: ignoring unparsable allowed origin", "origin", o)
			continue
		}
		s.origins[n] = struct{}{}
	}

	s.up = gws.NewUpgrader(wsHandler{s}, &gws.ServerOption{
		ParallelEnabled:    false,
		ReadMaxPayloadSize: opt.MaxPayload,
		ReadBufferSize:     readBufferSize,
		CheckUtf8Enabled:   true,
		Recovery:           gws.Recovery,
		Logger:             gwsLogger{s.log},
		NewSession:         func() gws.SessionStorage { return &connSession{} },
	})
	return s
}

// now is the server's monotonic clock, in nanoseconds since NewServer.
func (s *Server) now() int64 { return int64(time.Since(s.start)) }

// Count returns the number of open engine connections.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Lookup returns the open connection with the given id, or nil.
func (s *Server) Lookup(id string) *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[id]
}

// Engine.IO HTTP error codes (engine.io lib/server.js Server.errors).
const (
	errUnknownTransport    = 0
	errUnknownSID          = 1
	errBadHandshakeMethod  = 2
	errBadRequest          = 3
	errForbidden           = 4
	errUnsupportedProtocol = 5
)

func writeEngineError(w http.ResponseWriter, status, code int, message string) {
	body := fmt.Appendf(nil, `{"code":%d,"message":`, code)
	body = appendJSONString(body, message)
	body = append(body, '}')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ServeHTTP handles GET /socket.io/?EIO=4&transport=websocket upgrades and
// answers everything else with an engine.io-style JSON error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("transport") != "websocket":
		writeEngineError(w, http.StatusBadRequest, errUnknownTransport, "Transport unknown")
		return
	case q.Get("sid") != "":
		writeEngineError(w, http.StatusBadRequest, errUnknownSID, "Session ID unknown")
		return
	case r.Method != http.MethodGet:
		writeEngineError(w, http.StatusBadRequest, errBadHandshakeMethod, "Bad handshake method")
		return
	case !s.originAllowed(r.Header.Get("Origin")):
		s.log.Debug("socketio: origin refused", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		writeEngineError(w, http.StatusForbidden, errForbidden, "Forbidden")
		return
	case q.Get("EIO") != "4":
		writeEngineError(w, http.StatusBadRequest, errUnsupportedProtocol, "Unsupported protocol version")
		return
	case !isWebSocketUpgrade(r):
		writeEngineError(w, http.StatusBadRequest, errBadRequest, "Bad request")
		return
	}

	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		writeEngineError(w, http.StatusServiceUnavailable, errBadRequest, "Server shutting down")
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ws, err := s.up.Upgrade(w, r)
	if err != nil {
		s.wg.Done()
		s.log.Debug("socketio: websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := &Conn{s: s, ws: ws}
	c.flushFn = c.flush
	ws.Session().(*connSession).conn = c
	now := s.now()
	c.connectDeadline.Store(now + int64(s.opt.ConnectTimeout))
	c.nextPing.Store(now + int64(s.opt.PingInterval))

	shutting := s.register(c)
	s.m.connections.Inc()
	c.enqueue(EncodeOpen(c.id, s.opt.PingInterval.Milliseconds(), s.opt.PingTimeout.Milliseconds(), s.opt.MaxPayload))
	go ws.ReadLoop()
	if shutting {
		c.closeWith(ReasonShutdown, closeServiceRestart, engineCloseFrame)
	}
}

// register assigns c a unique id, adds it to the registry and starts the
// heartbeat scanner if needed. It reports whether the server is shutting down.
func (s *Server) register(c *Conn) (shutting bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.opt.NewID()
	for i := 0; i < 3; i++ {
		if _, dup := s.conns[id]; !dup {
			break
		}
		id = s.opt.NewID()
	}
	if _, dup := s.conns[id]; dup { // a broken NewID: fall back to the default
		id = NewRandomID()
	}
	c.id = id
	s.conns[id] = c
	if !s.scanning {
		s.scanning = true
		go s.scan()
	}
	return s.shutting
}

func (s *Server) unregister(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.id] == c {
		delete(s.conns, c.id)
	}
}

type scanAction struct {
	c      *Conn
	ping   bool
	reason string
}

// scan is the single heartbeat goroutine: every tick it sends due pings and
// closes connections past their ping or connect deadline. It exits when no
// connection is left (register restarts it).
func (s *Server) scan() {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	var due []scanAction
	for range t.C {
		now := s.now()
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.scanning = false
			s.mu.Unlock()
			return
		}
		for _, c := range s.conns {
			if c.closing.Load() {
				continue
			}
			if cd := c.connectDeadline.Load(); cd != 0 && now >= cd {
				due = append(due, scanAction{c: c, reason: ReasonConnectTimeout})
			} else if pd := c.pingDeadline.Load(); pd != 0 && now >= pd && !c.busy.Load() {
				due = append(due, scanAction{c: c, reason: ReasonPingTimeout})
			} else if now >= c.nextPing.Load() {
				due = append(due, scanAction{c: c, ping: true})
			}
		}
		s.mu.Unlock()
		for i, a := range due {
			if a.ping {
				a.c.nextPing.Store(now + int64(s.opt.PingInterval))
				a.c.pingDeadline.CompareAndSwap(0, now+int64(s.opt.PingTimeout))
				_ = a.c.Send(pingFrame)
			} else {
				s.log.Debug("socketio: closing connection", "conn", a.c.id, "reason", a.reason)
				a.c.closeWith(a.reason, closeNormal, nil)
			}
			due[i] = scanAction{}
		}
		due = due[:0]
	}
}

// Shutdown stops accepting upgrades (they get 503) and closes every
// connection with the Engine.IO close packet `1` followed by a websocket
// close frame 1012 (service restart). It does NOT send the Socket.IO `41`:
// socket.io-client treats `41` as "io server disconnect" and does not
// reconnect, whereas a closed transport ("transport close") makes it
// reconnect, to another node. Handlers see OnDisconnect(c, "server shutting
// down"). Shutdown waits until every connection is closed or ctx ends; in the
// latter case the remaining TCP connections are closed at once and ctx's
// error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	list := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range list {
		c.closeWith(ReasonShutdown, closeServiceRestart, engineCloseFrame)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for _, c := range s.conns {
			c.abort(ReasonShutdown)
		}
		s.mu.Unlock()
		return fmt.Errorf("socketio: shutdown: %w", ctx.Err())
	}
}

// originAllowed reports whether a websocket from origin may connect.
func (s *Server) originAllowed(origin string) bool {
	if s.allowAnyOrigin || origin == "" {
		return true
	}
	n, ok := normalizeOrigin(origin)
	if !ok {
		return false
	}
	_, ok = s.origins[n]
	return ok
}

// normalizeOrigin lower-cases scheme and host and drops the default port,
// giving "scheme://host[:port]".
func normalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" || scheme == "ws") && port == "80" || (scheme == "https" || scheme == "wss") && port == "443" {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, true
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		r.Header.Get("Sec-WebSocket-Key") != ""
}

// gwsLogger adapts slog to gws.Logger.
type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error("socketio: gws: " + fmt.Sprint(v...)) }

// connSession is the gws session of a connection: it only links back to the
// *Conn (smaller than gws's default mutex map).
type connSession struct{ conn *Conn }

func (*connSession) Len() int                     { return 0 }
func (*connSession) Load(string) (any, bool)      { return nil, false }
func (*connSession) Delete(string)                {}
func (*connSession) Store(string, any)            {}
func (*connSession) Range(func(string, any) bool) {}
func connOf(ws *gws.Conn) *Conn                   { return ws.Session().(*connSession).conn }
