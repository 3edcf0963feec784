// Package socketio is a small Engine.IO v4 / Socket.IO v5 server over
// github.com/lxzan/gws, wire-compatible with socket.io-client 4.x using the
// websocket transport (the only one the original service enabled).
//
// Scope: namespace "/" only, websocket transport only, text frames only (no
// binary events), no server-requested acks (the server answers client acks
// with Conn.Ack). Rooms and broadcast live above this package: encode a frame
// once (EncodeEvent) and Conn.Send (or Conn.SendBatched) it to many
// connections.
//
// # Connection life cycle
//
//  1. GET /socket.io/?EIO=4&transport=websocket with a websocket upgrade is
//     upgraded; the server sends the open packet
//     `0{"sid":..,"upgrades":[],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}`.
//  2. The client's `40{auth}` runs Handler.Authenticate while the read
//     goroutine waits (nothing else is read meanwhile, so no event is lost
//     or handled before the CONNECT is answered). nil
//     sends `40{"sid":..}` and calls OnConnected; *ConnectError sends
//     `44{"message":..,"data":..}` (the client may retry, at most 5 CONNECTs
//     per connection); ErrAcceptThenDisconnect sends `40{"sid"}` and `41`.
//  3. `42[...]` / `42<id>[...]` call OnEvent in arrival order.
//  4. OnDisconnect is called exactly once for every socket that got
//     OnConnected, after its last OnEvent.
//
// Every Socket.IO packet (CONNECT, EVENT, ...) is handled on a short-lived
// goroutine while the read goroutine waits for it, so Handler calls for one
// connection still come one at a time and in order. Why: see Memory.
//
// Heartbeat: one goroutine per Server (started with the first connection,
// stopped when none is left) sends `2` every PingInterval and closes a
// connection with reason "ping timeout" when no frame at all arrived within
// PingTimeout after a ping (the ping timeout is suspended while
// Authenticate runs). The same goroutine closes connections that did not
// complete a CONNECT within ConnectTimeout. There is no per-connection
// goroutine besides gws's ReadLoop (and, while they run, a packet's handler
// and an on-demand writer, see below).
//
// # Memory
//
// An idle connection holds its read goroutine (2 KiB stack), gws's Conn and
// read buffer (readBufferSize, 512 bytes), the Conn and the host's state;
// not the upgrade request's headers (nothing read them). Handlers need
// several KiB of stack (token check, JSON, Redis, plugin calls): on the read
// goroutine they grew its stack to 4–16 KiB, and a parked goroutine's stack
// never shrinks below 4 KiB, so each packet runs on a goroutine of its own
// (Conn.handle). That costs ~2 µs per packet (a single socket's pipelined
// events: 1.5 → 3.7 µs each in a loopback benchmark); a pool of reused
// helpers was cheaper (2.3 µs) but its hand-off (mutex, select, sync.Pool)
// grew the read goroutine's stack to 4 KiB by itself. Go starts new
// goroutines at the average stack size the GC saw (adaptivestackstart), so
// during a connect storm, with many deep handlers running, read goroutines
// may still start at 4 KiB (GODEBUG=adaptivestackstart=0 avoids that, but
// gave no RSS gain in the connect bench; BENCHMARKS.md, connect).
//
// # Writes (writer.go)
//
// Send appends the frame to the connection's queue and, if no writer is
// scheduled, schedules one (a gws Async job: one goroutine start per batch,
// not per frame). The writer frames everything queued into one buffer and
// writes it with one syscall, until the queue is empty; under load frames
// pile up while it writes, so batches grow by themselves. Frames keep their
// Send order; the payload bytes are written unchanged.
//
// SendBatched (used by host/hub for rooms of 100+ local members) may hold a
// frame back: when the connection wrote less than BatchDelay (30ms) ago, the
// frame waits until that last write + BatchDelay, so that a busy room costs
// each member at most one write per BatchDelay however many messages it
// carries. A connection idle for BatchDelay writes at once, and a Send or a
// close writes the waiting frames at once (in order). One batcher
// goroutine per Server runs while frames wait. At 1,000 subscribers and
// 200 msgs/s this roughly halved the server's CPU per delivery (4–9 to
// 2–4 µs) and the client's reads fell alike (BENCHMARKS.md, chat). The
// default was 10ms; on a VM whose system calls cost several times more it
// missed 200,000 deliveries/s at p99 50 ms (p99 0.1–0.3 s), which 30ms meets
// (p99 38–51 ms), at the price of p99 ~38 instead of ~18 ms at 50 msgs/s.
//
// Back-pressure: a connection with more than OutboundQueue unwritten frames
// (queued, waiting or being written) is closed at once (TCP close, no close
// frame) with reason "slow consumer". A write error closes the TCP
// connection (reason "transport error"); a frame that is not valid UTF-8 or
// larger than 16 MiB is not written and closes the connection with 1001
// (as gws did). Graceful closes queue a websocket close frame behind pending
// frames and close the TCP connection after 2s if the frame could not be
// written.
//
// # HTTP answers (engine.io error codes)
//
//	transport missing or not "websocket"  400 {"code":0,"message":"Transport unknown"}
//	?sid= present (polling upgrade)        400 {"code":1,"message":"Session ID unknown"}
//	method not GET                         400 {"code":2,"message":"Bad handshake method"}
//	Origin not allowed                     403 {"code":4,"message":"Forbidden"}
//	EIO missing or not 4                   400 {"code":5,"message":"Unsupported protocol version"}
//	not a websocket upgrade                400 {"code":3,"message":"Bad request"}
//	after Shutdown began                   503 {"code":3,"message":"Server shutting down"}
//
// Checks run in that order (engine.io's order: transport, sid, method,
// allowRequest, protocol version). A 403 for a refused Origin is what
// engine.io answers when allowRequest refuses. Requests without an Origin
// header (non-browser clients) are allowed; origins are compared on
// lower-cased scheme://host[:port] with default ports dropped.
//
// # Bad input
//
// Every case below is counted in realtime_socketio_malformed_packets_total
// with the given reason label and logged with the connection id and the first
// 128 bytes of the frame: at debug level when ignored, at warn when the
// connection is closed. "close" means a websocket close frame with the given
// code and disconnect reason "parse error". socket.io itself closes the
// connection on every packet its parser rejects, and so do we.
//
//	input                                          reason label               outcome
//	binary websocket frame                         binary_frame               close 1003
//	empty text frame                               engine_empty               close 1002
//	Engine.IO type not 1-6 (incl. client "0")      engine_unknown_type        close 1002
//	Engine.IO "5" upgrade (no upgrades offered)    engine_unexpected_upgrade  ignore
//	Engine.IO "2" ping from client                 -                          answered "3"+payload
//	Engine.IO "1" close                            -                          close 1000, reason "transport close"
//	Socket.IO packet empty ("4")                   empty                      close 1002
//	unknown Socket.IO type                         unknown_type               close 1002
//	BINARY_EVENT / BINARY_ACK (5, 6)               binary_unsupported         close 1002
//	ack id overflowing int64, ack id on CONNECT/
//	  DISCONNECT/CONNECT_ERROR, ACK without id     bad_ack_id                 close 1002
//	invalid UTF-8                                  invalid_utf8               close (gws: 1007)
//	JSON nested deeper than 32                     too_deep                   close 1002
//	invalid JSON                                   bad_json                   close 1002
//	payload shape wrong for the type (EVENT not a
//	  non-empty array, CONNECT not an object, ...)  bad_payload                close 1002
//	EVENT whose first element is not a string      event_name_not_string      close 1002
//	CONNECT to a namespace other than "/"          invalid_namespace          answer 44/ns,{"message":"Invalid namespace"}
//	other packet on a namespace other than "/"     wrong_namespace            ignore
//	EVENT before a successful CONNECT              event_before_connect       ignore
//	DISCONNECT before CONNECT                      disconnect_before_connect  ignore
//	second CONNECT when connected                  duplicate_connect          ignore
//	more than 5 CONNECT attempts                   too_many_connect_attempts  close 1002
//	ACK from client (server never asks for acks)   unexpected_ack             ignore
//	CONNECT_ERROR from client                      unexpected_connect_error   ignore
//	frame larger than MaxPayload                   too_large                  close (gws: 1009), reason "transport error"
//	websocket protocol violation                   ws_protocol_error          close (gws: 1002), reason "transport error"
//
// A panic in a Handler method is recovered, logged, and closes the
// connection (1011, reason "internal error"); gws's Recovery guards the rest.
//
// # Drain (Server.Shutdown)
//
// Shutdown refuses new upgrades with 503, then for every connection queues
// the Engine.IO close packet `1` and a websocket close frame 1012 (service
// restart) behind its pending frames; OnDisconnect gets "server shutting
// down". It deliberately does not send the Socket.IO DISCONNECT `41`:
// socket.io-client handles `41` as "io server disconnect", destroys the
// socket and does not reconnect, whereas a closed transport is reported as
// "transport close" and triggers the Manager's automatic reconnection, which
// the load balancer sends to another node. (engine.io-client ignores the `1`
// packet on the websocket transport; it is sent for other clients.)
// Shutdown waits until every connection has closed, or until its context
// ends, in which case the remaining TCP connections are closed at once.
package socketio
