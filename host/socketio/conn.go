package socketio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// Websocket close codes used by the server.
const (
	closeNormal         uint16 = 1000
	closeProtocolError  uint16 = 1002
	closeUnsupported    uint16 = 1003
	closeInternalError  uint16 = 1011
	closeServiceRestart uint16 = 1012
)

// Shared immutable frames.
var (
	pingFrame        = []byte{EnginePing}
	engineCloseFrame = []byte{EngineClose}
)

// Conn is one Engine.IO connection and its Socket.IO socket on "/" (they
// share the id). Send, Emit, Ack, Disconnect, Close, SetValue and Value are
// safe for concurrent use.
//
// Memory: every idle connection keeps one, so fields are ordered and sized
// to keep it in the 160-byte size class (it was 208): the remote address is
// read from the net.Conn when asked (logs only) instead of kept as a string,
// the writer keeps whether a write failed rather than the error, and the
// small fields share one word.
type Conn struct {
	s       *Server
	ws      *gws.Conn
	id      string
	flushFn func() // c.flush, bound once (see writer.go)

	wmu       sync.Mutex   // guards wq, writing, deferred
	wq        *frameQueue  // frames waiting for the writer; nil when none
	lastWrite atomic.Int64 // server clock (ns) of the last write

	value atomic.Pointer[valueBox]

	pending         atomic.Int64 // frames queued, not yet written
	connected       atomic.Bool  // CONNECT accepted, OnDisconnect owed
	closing         atomic.Bool  // a close was decided; no more sends
	busy            atomic.Bool  // Authenticate running: ping timeout suspended
	nextPing        atomic.Int64 // server clock (ns) of the next ping
	pingDeadline    atomic.Int64 // 0 = no ping outstanding
	connectDeadline atomic.Int64 // 0 = connected (or never again)

	mu         sync.Mutex // guards reason, forceTimer, finalized
	reason     string
	forceTimer *time.Timer

	finalized       bool  // guarded by mu
	writing         bool  // the writer is scheduled or running; guarded by wmu
	deferred        bool  // the batcher will schedule the writer; guarded by wmu
	werr            bool  // a write failed (or a frame was refused); writer only
	connectAttempts uint8 // packet handlers only (one at a time, see handle)
}

type valueBox struct{ v any }

// ID returns the engine id, which is also the Socket.IO socket id.
func (c *Conn) ID() string { return c.id }

// RemoteAddr returns the remote address of the connection (the upgrade
// request's), "" if unknown. It is not stored: only logs ask for it.
func (c *Conn) RemoteAddr() string {
	if a := c.ws.NetConn().RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// SetValue stores the host's per-socket state.
func (c *Conn) SetValue(v any) { c.value.Store(&valueBox{v}) }

// Value returns what SetValue stored, or nil.
func (c *Conn) Value() any {
	if b := c.value.Load(); b != nil {
		return b.v
	}
	return nil
}

// Connected reports whether the Socket.IO CONNECT was accepted and the socket
// is not closed yet.
func (c *Conn) Connected() bool { return c.connected.Load() && !c.closing.Load() }

// Send enqueues an already encoded Engine.IO text frame (for example from
// EncodeEvent). It never blocks. The frame is not modified and may be shared
// between connections; it must not be modified until written (in practice:
// never). When more than Options.OutboundQueue frames are pending the
// connection is closed as a slow consumer and ErrSlowConsumer is returned;
// after close it returns ErrClosed.
func (c *Conn) Send(frame []byte) error { return c.send(frame, false) }

// SendBatched is Send for room fan-out: when the connection wrote within the
// last Options.BatchDelay, the frame waits (at most BatchDelay) so that it
// shares one write with the frames that follow it. Frames stay in order with
// Send's, and a Send writes the waiting frames at once.
func (c *Conn) SendBatched(frame []byte) error { return c.send(frame, true) }

func (c *Conn) send(frame []byte, batched bool) error {
	if c.closing.Load() {
		return ErrClosed
	}
	if c.pending.Add(1) > int64(c.s.opt.OutboundQueue) {
		c.pending.Add(-1)
		c.s.m.slowConsumers.Inc()
		c.s.log.Warn("socketio: slow consumer, closing", "conn", c.id, "pending", c.pending.Load())
		c.abort(ReasonSlowConsumer)
		return ErrSlowConsumer
	}
	c.push(frame, batched)
	return nil
}

// enqueue queues a frame without the closing and queue-limit checks (used for
// protocol frames that must precede a close).
func (c *Conn) enqueue(frame []byte) {
	c.pending.Add(1)
	c.push(frame, false)
}

// Emit encodes and sends an EVENT (see EncodeEvent and Send).
func (c *Conn) Emit(event string, args ...any) error {
	frame, err := EncodeEvent(event, args...)
	if err != nil {
		return err
	}
	return c.Send(frame)
}

// Ack answers the client's EVENT that carried ack id id.
func (c *Conn) Ack(id int64, args []json.RawMessage) error {
	return c.Send(EncodeAck(id, args))
}

// Disconnect is a server namespace disconnect: it sends `41` (the client will
// not reconnect) and closes the connection. OnDisconnect gets
// "server namespace disconnect".
func (c *Conn) Disconnect() {
	c.closeWith(ReasonServerDisconnect, closeNormal, EncodeDisconnect())
}

// Close closes the connection after the frames already queued (websocket
// close 1000, no `41`, so socket.io-client will reconnect). OnDisconnect gets
// reason.
func (c *Conn) Close(reason string) {
	c.closeWith(reason, closeNormal, nil)
}

// closeWith closes gracefully, once: queue pre (if any) and a websocket close
// frame behind the pending writes, and close the TCP connection after
// closeGrace if they are not written by then.
func (c *Conn) closeWith(reason string, code uint16, pre []byte) {
	if !c.beginClose(reason) {
		return
	}
	if pre != nil {
		c.enqueue(pre)
	}
	c.flushDeferred() // batched frames go before the close frame too
	ws := c.ws
	ws.Async(func() { _ = ws.WriteClose(code, nil) })
	c.mu.Lock()
	if !c.finalized {
		c.forceTimer = time.AfterFunc(closeGrace, func() { _ = ws.NetConn().Close() })
	}
	c.mu.Unlock()
}

// abort closes the TCP connection at once (no close frame): used when the
// write queue cannot be trusted to drain.
func (c *Conn) abort(reason string) {
	c.beginClose(reason)
	_ = c.ws.NetConn().Close()
}

// beginClose marks the conn closing and records reason; false if it already was.
func (c *Conn) beginClose(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return false
	}
	c.reason = reason
	c.closing.Store(true)
	return true
}

// malformed counts and logs a bad packet; the caller decides the outcome.
func (c *Conn) malformed(reason string, frame []byte, err error, closing bool) {
	c.s.m.malformed.WithLabelValues(reason).Inc()
	level := slog.LevelDebug
	if closing {
		level = slog.LevelWarn
	}
	if c.s.log.Enabled(context.Background(), level) {
		attrs := []any{"conn", c.id, "reason", reason, "frame", truncate(frame, logFrameBytes), "closing", closing}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		c.s.log.Log(context.Background(), level, "socketio: malformed packet", attrs...)
	}
}

// protocolClose logs, counts and closes for a bad frame.
func (c *Conn) protocolClose(reason string, frame []byte, err error, code uint16) {
	c.malformed(reason, frame, err, true)
	c.closeWith(ReasonParseError, code, nil)
}

// wsHandler adapts the Server to gws.Event.
type wsHandler struct{ s *Server }

func (wsHandler) OnOpen(*gws.Conn) {}

func (wsHandler) OnPing(ws *gws.Conn, _ []byte) { _ = ws.WritePong(nil) }

func (wsHandler) OnPong(ws *gws.Conn, _ []byte) { connOf(ws).pingDeadline.Store(0) }

func (h wsHandler) OnClose(ws *gws.Conn, err error) {
	c := connOf(ws)
	c.mu.Lock()
	c.finalized = true
	c.closing.Store(true)
	if c.forceTimer != nil {
		c.forceTimer.Stop()
		c.forceTimer = nil
	}
	reason := c.reason
	c.mu.Unlock()
	if reason == "" {
		reason = h.closeReason(c, err)
	}
	h.s.unregister(c)
	h.s.m.connections.Dec()
	if c.connected.Swap(false) {
		h.s.safeCall(c, "OnDisconnect", func() { h.s.h.OnDisconnect(c, reason) })
	}
	h.s.log.Debug("socketio: connection closed", "conn", c.id, "reason", reason, "err", err)
	h.s.wg.Done()
}

// closeReason maps a close not decided by the server to a Socket.IO reason.
func (h wsHandler) closeReason(c *Conn, err error) string {
	var ce *gws.CloseError
	if err == nil || errors.As(err, &ce) || errors.Is(err, io.EOF) {
		return ReasonTransportClose
	}
	if errors.Is(err, gws.ErrTextEncoding) {
		c.malformed(ReasonInvalidUTF8, nil, err, true)
		return ReasonTransportError
	}
	// gws read errors carry the websocket status code they closed with.
	if sc, ok := err.(interface{ Uint16() uint16 }); ok {
		switch sc.Uint16() {
		case 1009:
			c.malformed("too_large", nil, err, true)
		case 1007:
			c.malformed(ReasonInvalidUTF8, nil, err, true)
		case 1002:
			c.malformed("ws_protocol_error", nil, err, true)
		}
	} else if strings.HasPrefix(err.Error(), "gws: unexpected opcode") {
		// gws unwraps this protocol error (a reserved opcode) before
		// OnClose, losing the status code; it closed with 1002 all the same.
		c.malformed("ws_protocol_error", nil, err, true)
	}
	return ReasonTransportError
}

func (h wsHandler) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	c := connOf(ws)
	h.s.m.framesIn.Inc()
	if c.closing.Load() {
		return
	}
	c.pingDeadline.Store(0) // any frame proves liveness
	data := msg.Bytes()
	if msg.Opcode != gws.OpcodeText {
		c.protocolClose("binary_frame", data, nil, closeUnsupported)
		return
	}
	if len(data) == 0 {
		c.protocolClose("engine_empty", data, nil, closeProtocolError)
		return
	}
	switch data[0] {
	case EngineMessage:
		c.handle(bytes.Clone(data[1:]))
	case EnginePong, EngineNoop:
	case EnginePing:
		// The v4 client never pings; answer anyway (probes: "2probe").
		pong := append([]byte{EnginePong}, data[1:]...)
		_ = c.Send(pong)
	case EngineClose:
		c.closeWith(ReasonTransportClose, closeNormal, nil)
	case EngineUpgrade:
		c.malformed("engine_unexpected_upgrade", data, nil, false)
	default:
		c.protocolClose("engine_unknown_type", data, nil, closeProtocolError)
	}
}

// handle runs onSocketIO on a short-lived goroutine and waits for it. The
// handler calls (token check, directory, hub, JSON, plugins) need several KiB
// of stack; run on the read goroutine they would grow its stack, which every
// idle connection then keeps (a stack grows by doubling and shrinks, at GC,
// only while it is mostly unused: a parked read goroutine never gets back
// from 4 to 2 KiB). Waiting keeps the packets in order and reads nothing
// meanwhile, as before: no event is handled before its CONNECT was answered.
// A reused helper pool was tried: its mutex/select/sync.Pool calls alone
// grew the read goroutine's stack to 4 KiB.
func (c *Conn) handle(raw []byte) {
	done := make(chan struct{})
	go c.handleOn(raw, done)
	<-done
}

func (c *Conn) handleOn(raw []byte, done chan<- struct{}) {
	defer close(done)
	// The handler calls have safeCall; this guards the packet code itself,
	// which gws's Recovery covered when it ran on the read goroutine (a
	// panic on this goroutine would take down the process).
	c.s.safeCall(c, "packet", func() { c.onSocketIO(raw) })
}

// onSocketIO handles one Socket.IO packet (raw is owned by the conn).
func (c *Conn) onSocketIO(raw []byte) {
	p, err := DecodePacket(raw)
	if err != nil {
		reason := "decode"
		var de *DecodeError
		if errors.As(err, &de) {
			reason = de.Reason
		}
		c.protocolClose(reason, raw, err, closeProtocolError)
		return
	}
	if p.Namespace != DefaultNamespace {
		if p.Type == PacketConnect {
			c.malformed("invalid_namespace", raw, nil, false)
			c.enqueue(encodeConnectErrorNS(p.Namespace, "Invalid namespace", nil))
		} else {
			c.malformed("wrong_namespace", raw, nil, false)
		}
		return
	}
	switch p.Type {
	case PacketConnect:
		c.onConnect(raw, p.Data)
	case PacketDisconnect:
		if !c.connected.Load() {
			c.malformed("disconnect_before_connect", raw, nil, false)
			return
		}
		c.closeWith(ReasonClientDisconnect, closeNormal, nil)
	case PacketEvent:
		if !c.connected.Load() {
			c.malformed("event_before_connect", raw, nil, false)
			return
		}
		name, args, err := DecodeEvent(p)
		if err != nil {
			reason := ReasonEventNotArray
			var de *DecodeError
			if errors.As(err, &de) {
				reason = de.Reason
			}
			c.protocolClose(reason, raw, err, closeProtocolError)
			return
		}
		c.s.safeCall(c, "OnEvent", func() { c.s.h.OnEvent(c, name, args, p.AckID) })
	case PacketAck:
		c.malformed("unexpected_ack", raw, nil, false)
	case PacketConnectError:
		c.malformed("unexpected_connect_error", raw, nil, false)
	}
}

func (c *Conn) onConnect(raw []byte, auth json.RawMessage) {
	if c.connected.Load() {
		c.malformed("duplicate_connect", raw, nil, false)
		return
	}
	if c.connectAttempts >= maxConnectAttempts { // checked first: a uint8
		c.protocolClose("too_many_connect_attempts", raw, nil, closeProtocolError)
		return
	}
	c.connectAttempts++
	s := c.s
	deadline := s.start.Add(time.Duration(c.connectDeadline.Load()))
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	c.busy.Store(true)
	var authErr error
	ok := s.safeCall(c, "Authenticate", func() { authErr = s.h.Authenticate(ctx, c, auth) })
	c.busy.Store(false)
	cancel()
	// Pongs may have waited behind Authenticate: give them time to be read.
	if pd := c.pingDeadline.Load(); pd != 0 {
		c.pingDeadline.CompareAndSwap(pd, max(pd, s.now()+int64(s.opt.PingTimeout)))
	}
	if !ok || c.closing.Load() {
		return
	}
	var ce *ConnectError
	switch {
	case authErr == nil:
		c.connectDeadline.Store(0)
		c.connected.Store(true)
		c.enqueue(EncodeConnect(c.id))
		s.safeCall(c, "OnConnected", func() { s.h.OnConnected(c) })
	case errors.Is(authErr, ErrAcceptThenDisconnect):
		c.connectDeadline.Store(0)
		c.enqueue(EncodeConnect(c.id))
		c.closeWith(ReasonServerDisconnect, closeNormal, EncodeDisconnect())
	case errors.As(authErr, &ce):
		c.enqueue(EncodeConnectError(ce.Message, ce.Data))
	default:
		s.log.Warn("socketio: authenticate failed", "conn", c.id, "err", authErr)
		c.enqueue(EncodeConnectError("Internal server error", nil))
	}
}

// safeCall runs a handler callback, turning a panic into a logged error and
// a close with reason "internal error". It reports whether f returned.
func (s *Server) safeCall(c *Conn, name string, f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("socketio: handler panic", "conn", c.id, "handler", name, "panic", r)
			c.closeWith(ReasonInternalError, closeInternalError, nil)
			ok = false
		}
	}()
	f()
	return true
}
