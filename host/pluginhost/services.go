package pluginhost

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Services is what the host application gives the plugin host: the sockets,
// rooms, store, bus and directory that plugins reach through sdk.Host.
type Services interface {
	// Emit sends event(args...) from plugin to the target.
	Emit(ctx context.Context, plugin string, to sdk.Target, event string, args []json.RawMessage) error
	Join(ctx context.Context, socketID, room string) error
	Leave(ctx context.Context, socketID, room string) error
	Disconnect(ctx context.Context, socketID string) error
	Store() sdk.Store
	Publish(ctx context.Context, exchange, routingKey string, body []byte) error
	DeclareExchange(ctx context.Context, ex sdk.Exchange) error
	// Consume delivers the queue's messages to h until stop is called; h's nil
	// acks, an error nacks (without requeue when it wraps sdk.ErrDrop).
	Consume(ctx context.Context, q sdk.Queue, h func(ctx context.Context, d sdk.Delivery) error) (stop func(), err error)
	// ConsumeAsync is Consume for a plugin that batches (q.BatchMax > 0): h
	// returns once it handed the delivery on and calls settle with the
	// answer later; up to q.Prefetch deliveries are in flight.
	ConsumeAsync(ctx context.Context, q sdk.Queue, h func(ctx context.Context, d sdk.Delivery, settle func(error))) (stop func(), err error)
	Directory() sdk.Directory
	Logger() *slog.Logger
	InstanceID() string
	// LiveSockets lists the connected sockets, for replaying OnConnect after a
	// plugin restart.
	LiveSockets() []sdk.Socket
}

// pluginServices is sdk.HostServices for one plugin, over Services.
type pluginServices struct {
	name   string
	svc    Services
	logger *slog.Logger
}

var _ sdk.HostServices = (*pluginServices)(nil)

func (p *pluginServices) Emit(ctx context.Context, to sdk.Target, event string, args []json.RawMessage) error {
	return p.svc.Emit(ctx, p.name, to, event, args)
}
func (p *pluginServices) Join(ctx context.Context, socketID, room string) error {
	return p.svc.Join(ctx, socketID, room)
}
func (p *pluginServices) Leave(ctx context.Context, socketID, room string) error {
	return p.svc.Leave(ctx, socketID, room)
}
func (p *pluginServices) Disconnect(ctx context.Context, socketID string) error {
	return p.svc.Disconnect(ctx, socketID)
}
func (p *pluginServices) Store() sdk.Store { return p.svc.Store() }
func (p *pluginServices) Publish(ctx context.Context, exchange, routingKey string, body []byte) error {
	return p.svc.Publish(ctx, exchange, routingKey, body)
}
func (p *pluginServices) Directory() sdk.Directory { return p.svc.Directory() }
func (p *pluginServices) Logger() *slog.Logger     { return p.logger }
func (p *pluginServices) InstanceID() string       { return p.svc.InstanceID() }
