package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
)

// Errors a Client reports. Callers branch on them with errors.Is.
var (
	// ErrPluginUnavailable means the plugin is not running (not started yet,
	// crashed, restarting or stopped); the call was not delivered.
	ErrPluginUnavailable = errors.New("plugin unavailable")
	// ErrEmittedBeforeExit is Deliver's answer when the plugin died while
	// handling the delivery but after OnDelivery had emitted: its visible
	// work reached the host, so the host acks the delivery instead of
	// having it redelivered (and emitted twice). It wraps
	// ErrPluginUnavailable.
	ErrEmittedBeforeExit = fmt.Errorf("%w: it exited after its delivery handler emitted", ErrPluginUnavailable)
	// ErrOverloaded means the plugin's bounded queue is full; the call was not
	// delivered.
	ErrOverloaded = errors.New("plugin overloaded")
)

// HostServices is the host's side of Host: what the plugin host implements for
// one plugin. It differs from Host in that Emit takes the arguments as raw
// JSON (they arrive that way from a subprocess), and it is what both the gRPC
// shim and the in-process mode call.
type HostServices interface {
	// Emit sends event(args...) to the target. It should not block for long:
	// the gRPC shim calls it in stream order.
	Emit(ctx context.Context, to Target, event string, args []json.RawMessage) error
	Join(ctx context.Context, socketID, room string) error
	Leave(ctx context.Context, socketID, room string) error
	Disconnect(ctx context.Context, socketID string) error
	Store() Store
	Publish(ctx context.Context, exchange, routingKey string, body []byte) error
	Directory() Directory
	// Logger is the plugin's logger (with its name attached).
	Logger() *slog.Logger
	InstanceID() string
}

// Client is the host's handle on one started plugin, whatever its mode: the
// gRPC shim (subprocess) and the in-process client both implement it.
//
// Connect, Event, Disconnect and Deliver are asynchronous: they queue the call
// and return at once (an error means it was not queued and done is never
// called); done is called exactly once, from another goroutine, when the
// plugin's handler returned. done must not block: the answers of all sockets
// (and the plugin's emits) are processed one after the other. Calls concerning one socket are handled in the
// order they were queued; calls for different sockets run concurrently.
// Deliveries are ordered per queue name.
type Client interface {
	// Describe returns the plugin's Descriptor.
	Describe(ctx context.Context) (Descriptor, error)
	// Start starts the plugin with its config subtree (JSON) and the host
	// services it may call. Call it once, before anything below.
	Start(ctx context.Context, host HostServices, config json.RawMessage) error
	Connect(s Socket, done func(err error)) error
	Event(e Event, done func(ack []json.RawMessage, err error)) error
	Disconnect(s Socket, reason string, done func(err error)) error
	Deliver(d Delivery, done func(err error)) error
	// HTTP forwards one request to the plugin.
	HTTP(ctx context.Context, r HTTPRequest) (HTTPResponse, error)
	// Stop asks the plugin to release its resources (Plugin.Stop).
	Stop(ctx context.Context) error
	// Done is closed when the plugin is gone: its process exited, its stream
	// broke, or Close was called. Pending calls then fail with
	// ErrPluginUnavailable.
	Done() <-chan struct{}
	// Close releases the client's resources (it does not stop the plugin's
	// process: that is the launcher's job). Don't call it from a done
	// callback: it waits for the goroutine that runs them.
	Close() error
}
