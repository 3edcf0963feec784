package sdk

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// ProtocolVersion is the version of the host<->plugin contract (the gRPC service
// in proto/). Bump it when a change is not backwards compatible.
const ProtocolVersion = 1

// Socket is one connected, authenticated Socket.IO client as a plugin sees it.
type Socket struct {
	// ID is the Socket.IO id (unique across instances; also a room name).
	ID string `json:"id"`
	// UserID is the verified user id from the token (never from the client's payloads).
	UserID string `json:"userId"`
	// ConferenceSlugs are the conferences the user may see, resolved by the directory
	// before the CONNECT was answered.
	ConferenceSlugs []string `json:"conferenceSlugs"`
}

// HasConference reports whether slug is among the socket's conferences.
func (s Socket) HasConference(slug string) bool {
	for _, c := range s.ConferenceSlugs {
		if c == slug {
			return true
		}
	}
	return false
}

// Event is one Socket.IO EVENT packet from a client: 42["name", args...].
type Event struct {
	Socket Socket
	Name   string
	// Args are the raw JSON arguments after the event name, positional.
	Args []json.RawMessage
}

// Route is an HTTP route a plugin serves through the host's HTTP server.
type Route struct {
	// Method is GET, POST, ... ("" = any method).
	Method string `json:"method"`
	// Path is matched exactly (e.g. "/summary"), or as a prefix when it ends in "/".
	Path string `json:"path"`
}

// Exchange is a bus exchange a plugin publishes to.
type Exchange struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"` // "topic" (default), "direct", "fanout"
	Durable bool   `json:"durable"`
}

// Queue is a bus queue a plugin consumes. Deliveries reach Plugin.OnDelivery
// (or BatchDeliveryHandler.OnDeliveries when BatchMax > 0) and are acked
// when it returns nil.
type Queue struct {
	// Name of the queue. "{instance}" in the name is replaced by the host's
	// instance id, for queues that each instance needs its own copy of.
	Name       string   `json:"name"`
	Exchange   string   `json:"exchange"`
	Bindings   []string `json:"bindings"` // routing-key patterns (topic: * and #)
	Durable    bool     `json:"durable"`
	AutoDelete bool     `json:"autoDelete"`
	Exclusive  bool     `json:"exclusive"`
	Prefetch   int      `json:"prefetch"`
	// ExpiresMs, when > 0, deletes the queue after it has had no consumer
	// for that long (RabbitMQ x-expires). A per-instance queue that is
	// neither exclusive nor auto-delete but expires survives a dropped
	// connection (nothing published meanwhile is lost) and still goes away
	// when its instance dies.
	ExpiresMs int64 `json:"expiresMs,omitempty"`
	// BatchMax, when > 0, hands the queue's deliveries to the plugin's
	// BatchDeliveryHandler in batches of up to BatchMax instead of one at a
	// time to OnDelivery. It needs Prefetch >= BatchMax (a consumer never
	// holds more than Prefetch unanswered deliveries).
	BatchMax int `json:"batchMax,omitempty"`
	// BatchWait is how long a batch that is not full may wait for more
	// deliveries, counted from the arrival of its oldest (0: take what is
	// waiting). See BatchDeliveryHandler.
	BatchWait time.Duration `json:"batchWait,omitempty"`
}

// Descriptor is what a plugin declares about itself.
type Descriptor struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Events are the Socket.IO event names the plugin handles. A name claimed by
	// two enabled plugins is a start-up error.
	Events    []string   `json:"events"`
	Routes    []Route    `json:"routes"`
	Exchanges []Exchange `json:"exchanges"`
	Queues    []Queue    `json:"queues"`

	// SkipConnect, SkipReplay and SkipDisconnect turn off the socket calls
	// the plugin does not need. Every call is one more message across the
	// process boundary on each connect, so a connect costs less the fewer
	// plugins take it. All false (the zero value, and what a plugin built
	// before these fields sends) gets every call.
	//
	// A plugin that embeds Base and overrides neither OnConnect nor
	// OnDisconnect sets all three. A plugin whose OnConnect only reloads
	// what the Store holds for a socket (a new socket has nothing there; a
	// socket it saw before a restart does) sets SkipConnect alone.

	// SkipConnect: no OnConnect for a new socket; the plugin first hears of
	// it from one of its events or from OnDisconnect. OnDisconnect (unless
	// skipped) then comes for every socket that leaves while the plugin runs,
	// including sockets it never heard of.
	SkipConnect bool `json:"skipConnect,omitempty"`
	// SkipReplay: no OnConnect replayed for the live sockets after a
	// restart of the plugin's process.
	SkipReplay bool `json:"skipReplay,omitempty"`
	// SkipDisconnect: no OnDisconnect.
	SkipDisconnect bool `json:"skipDisconnect,omitempty"`
}

// HTTPRequest is an HTTP request forwarded by the host to a plugin route.
type HTTPRequest struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	// RemoteAddr is the client address as the host saw it.
	RemoteAddr string
}

// HTTPResponse is a plugin's answer to an HTTPRequest.
type HTTPResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// Delivery is one message from a bus queue the plugin declared.
type Delivery struct {
	Queue       string
	Exchange    string
	RoutingKey  string
	Body        []byte
	Redelivered bool
}

// Plugin is a realtime feature. Embed Base to get no-op defaults for the
// methods you don't need.
type Plugin interface {
	// Describe tells the host what the plugin handles. Called before Start.
	Describe() Descriptor
	// Start is called once per process start with the plugin's config subtree
	// (plugins.<name>.config, as JSON) and the host services. After a restart of a
	// subprocess plugin the host replays OnConnect for every live socket.
	Start(ctx context.Context, host Host, config json.RawMessage) error
	// OnConnect is called for every new socket before any of its events.
	OnConnect(ctx context.Context, s Socket) error
	// OnEvent handles one event the plugin declared. The returned values (may be
	// nil) answer the client's ack callback if it sent one.
	OnEvent(ctx context.Context, e Event) ([]any, error)
	// OnDisconnect is called once when the socket is gone.
	OnDisconnect(ctx context.Context, s Socket, reason string) error
	// OnHTTP serves one of the plugin's routes.
	OnHTTP(ctx context.Context, r HTTPRequest) (HTTPResponse, error)
	// OnDelivery handles one bus message; nil acks it, an error nacks it (requeued
	// unless it wraps ErrDrop). If the process dies during the call after it
	// emitted with ctx, the host acks the message (see ErrEmittedBeforeExit).
	OnDelivery(ctx context.Context, d Delivery) error
	// Stop releases resources; the host calls it before it kills the process.
	Stop(ctx context.Context) error
}

// BatchDeliveryHandler is implemented by a plugin that handles the
// deliveries of its queues with BatchMax > 0 in batches.
//
// OnDeliveries gets the deliveries of one queue, in queue order, at most
// BatchMax of them; the next batch of that queue starts after it returned.
// It returns one error per delivery, in the same order: nil acks it, an
// error nacks and requeues it, an error wrapping ErrDrop nacks it without
// requeue. A missing result requeues its delivery; a panic requeues the
// whole batch. Queues without BatchMax still go to OnDelivery.
type BatchDeliveryHandler interface {
	OnDeliveries(ctx context.Context, ds []Delivery) []error
}

// Target says who an Emit goes to.
type Target struct {
	Kind TargetKind `json:"kind"`
	ID   string     `json:"id"`
}

// TargetKind is the kind of an Emit target.
type TargetKind int

const (
	// ToSocket targets one socket by id.
	ToSocket TargetKind = iota
	// ToRoom targets every socket in a room, on every instance.
	ToRoom
	// ToUser targets every socket of a user, on every instance.
	ToUser
	// ToLocalRoom targets the room's members on this instance only: for a
	// plugin that consumes a per-instance bus queue and fans out locally, so
	// each member gets a message once however many instances consume it.
	ToLocalRoom
)

// SocketTarget, RoomTarget and UserTarget build Targets.
func SocketTarget(id string) Target      { return Target{Kind: ToSocket, ID: id} }
func RoomTarget(room string) Target      { return Target{Kind: ToRoom, ID: room} }
func UserTarget(userID string) Target    { return Target{Kind: ToUser, ID: userID} }
func LocalRoomTarget(room string) Target { return Target{Kind: ToLocalRoom, ID: room} }

// Host is what the host offers a plugin. Safe for concurrent use.
type Host interface {
	// Emit sends event(args...) to the target. Args are marshalled to JSON
	// (json.RawMessage passes through). Emits from one plugin are delivered in
	// the order they were made.
	Emit(ctx context.Context, to Target, event string, args ...any) error
	// Join and Leave change a socket's rooms; they return once applied on every
	// instance's routing, so an Emit made after Join reaches the socket.
	Join(ctx context.Context, socketID, room string) error
	Leave(ctx context.Context, socketID, room string) error
	// Disconnect closes a socket's namespace (the client sees "io server disconnect").
	Disconnect(ctx context.Context, socketID string) error
	// Store is the shared state (Redis semantics).
	Store() Store
	// Publish sends body to exchange with routingKey and returns once the broker
	// confirmed it (or with an error).
	Publish(ctx context.Context, exchange, routingKey string, body []byte) error
	// Directory answers who a user is and what they may see.
	Directory() Directory
	// Logger logs with the plugin's name attached.
	Logger() *slog.Logger
	// InstanceID is the id of the host instance (unique per process start).
	InstanceID() string
}
