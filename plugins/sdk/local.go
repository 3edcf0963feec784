package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// handlerTimeout bounds one OnConnect/OnEvent/OnDisconnect/OnDelivery call
// (its ctx is cancelled after it).
const handlerTimeout = 30 * time.Second

// NewLocalClient returns a Client that calls p directly, in this process (the
// "inprocess" mode): the same keyed dispatch as a subprocess plugin (one
// socket's calls in order, sockets concurrently), no gRPC. A handler panic is
// recovered and reported as the call's error.
func NewLocalClient(p Plugin) Client {
	ctx, cancel := context.WithCancel(context.Background())
	return &localClient{
		p: p, disp: newDispatcher(dispatchWorkers, localDispatchDepth), batch: newBatching(p, ctx, slog.Default()),
		ctx: ctx, cancel: cancel, logger: slog.Default(),
	}
}

var _ Client = (*localClient)(nil)

type localClient struct {
	p      Plugin
	disp   *dispatcher
	batch  *batching
	ctx    context.Context
	cancel context.CancelFunc
	logger *slog.Logger
	once   sync.Once
}

func (c *localClient) Describe(context.Context) (d Descriptor, err error) {
	err = safely(c.logger, "Describe", func() error { d = c.p.Describe(); return nil })
	if err == nil {
		err = c.batch.declare(d)
	}
	return d, err
}

func (c *localClient) Start(ctx context.Context, host HostServices, config json.RawMessage) error {
	if l := host.Logger(); l != nil {
		c.logger = l
	}
	if err := safely(c.logger, "Start", func() error { return c.p.Start(ctx, NewHost(host), config) }); err != nil {
		return err
	}
	return c.batch.start(host.InstanceID(), c.logger, c.p)
}

func (c *localClient) Connect(s Socket, done func(error)) error {
	return c.disp.trySubmit(s.ID, func() {
		ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
		err := safely(c.logger, "OnConnect", func() error { return c.p.OnConnect(ctx, s) })
		cancel()
		if done != nil {
			done(err)
		}
	})
}

func (c *localClient) Event(e Event, done func([]json.RawMessage, error)) error {
	return c.disp.trySubmit(e.Socket.ID, func() {
		ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
		var ack []any
		err := safely(c.logger, "OnEvent", func() (err error) { ack, err = c.p.OnEvent(ctx, e); return err })
		cancel()
		var raw []json.RawMessage
		if err == nil {
			raw, err = MarshalArgs(ack)
			if err != nil {
				err = fmt.Errorf("event %q: ack: %w", e.Name, err)
			}
		}
		if done != nil {
			done(raw, err)
		}
	})
}

func (c *localClient) Disconnect(s Socket, reason string, done func(error)) error {
	return c.disp.trySubmit(s.ID, func() {
		ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
		err := safely(c.logger, "OnDisconnect", func() error { return c.p.OnDisconnect(ctx, s, reason) })
		cancel()
		if done != nil {
			done(err)
		}
	})
}

func (c *localClient) Deliver(d Delivery, done func(error)) error {
	if ok, err := c.batch.deliver(d, done); ok {
		return err
	}
	return c.disp.trySubmit("q:"+d.Queue, func() {
		ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
		err := safely(c.logger, "OnDelivery", func() error { return c.p.OnDelivery(ctx, d) })
		cancel()
		if done != nil {
			done(err)
		}
	})
}

func (c *localClient) HTTP(ctx context.Context, r HTTPRequest) (resp HTTPResponse, err error) {
	err = safely(c.logger, "OnHTTP", func() (err error) { resp, err = c.p.OnHTTP(ctx, r); return err })
	return resp, err
}

func (c *localClient) Stop(ctx context.Context) error {
	return safely(c.logger, "Stop", func() error { return c.p.Stop(ctx) })
}

func (c *localClient) Done() <-chan struct{} { return c.ctx.Done() }

// Close runs the calls already queued, then cancels the handlers' context.
func (c *localClient) Close() error {
	c.once.Do(func() {
		c.disp.close()
		c.batch.close()
		c.cancel()
	})
	return nil
}

// NewHost adapts HostServices to the Host a plugin sees (in-process mode and
// test kits): Emit marshals its arguments to JSON, in the caller's goroutine,
// so emits keep the order in which they were made.
func NewHost(svc HostServices) Host { return localHost{svc} }

var _ Host = localHost{}

type localHost struct{ svc HostServices }

func (h localHost) Emit(ctx context.Context, to Target, event string, args ...any) error {
	raw, err := MarshalArgs(args)
	if err != nil {
		return fmt.Errorf("emit %q: %w", event, err)
	}
	return h.svc.Emit(ctx, to, event, raw)
}
func (h localHost) Join(ctx context.Context, socketID, room string) error {
	return h.svc.Join(ctx, socketID, room)
}
func (h localHost) Leave(ctx context.Context, socketID, room string) error {
	return h.svc.Leave(ctx, socketID, room)
}
func (h localHost) Disconnect(ctx context.Context, socketID string) error {
	return h.svc.Disconnect(ctx, socketID)
}
func (h localHost) Store() Store { return h.svc.Store() }
func (h localHost) Publish(ctx context.Context, exchange, routingKey string, body []byte) error {
	return h.svc.Publish(ctx, exchange, routingKey, body)
}
func (h localHost) Directory() Directory { return h.svc.Directory() }
func (h localHost) Logger() *slog.Logger { return h.svc.Logger() }
func (h localHost) InstanceID() string   { return h.svc.InstanceID() }
