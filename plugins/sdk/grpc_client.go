package sdk

// The host-side shim: implements Client by calling a plugin process over gRPC.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginv1 "github.com/clowdr/realtime/plugins/sdk/proto/v1"
)

type grpcClient struct {
	client pluginv1.PluginClient
	broker *plugin.GRPCBroker

	ctx    context.Context // done when the process exits, the stream breaks or Close
	cancel context.CancelFunc

	seq atomic.Uint64
	out chan *pluginv1.HostMessage

	mu      sync.Mutex
	closed  bool
	pending map[uint64]func(*pluginv1.Done) // called with nil when the plugin is gone
	// emitted holds the pending deliveries whose handler has emitted.
	emitted map[uint64]bool
	host    HostServices
	hostSrv *grpc.Server
	logger  *slog.Logger
	wg      sync.WaitGroup // stream goroutines
}

var _ Client = (*grpcClient)(nil)

// newGRPCClient wraps conn; doneCtx is done when the plugin process exits.
func newGRPCClient(doneCtx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) *grpcClient {
	ctx, cancel := context.WithCancel(doneCtx)
	return &grpcClient{
		client:  pluginv1.NewPluginClient(conn),
		broker:  broker,
		ctx:     ctx,
		cancel:  cancel,
		out:     make(chan *pluginv1.HostMessage, outQueueDepth),
		pending: make(map[uint64]func(*pluginv1.Done)),
		emitted: make(map[uint64]bool),
		logger:  slog.Default(),
	}
}

func (c *grpcClient) Describe(ctx context.Context) (Descriptor, error) {
	d, err := c.client.Describe(ctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return Descriptor{}, fromStatus("describe", err, ErrPluginUnavailable)
	}
	return descriptorFromProto(d), nil
}

// Start serves the host services through the broker (once), opens the
// Channel stream, then calls the plugin's Start with the broker id.
func (c *grpcClient) Start(ctx context.Context, host HostServices, config json.RawMessage) error {
	c.mu.Lock()
	if c.host != nil || c.closed {
		c.mu.Unlock()
		return errors.New("start: client already started or closed")
	}
	c.host = host
	if l := host.Logger(); l != nil {
		c.logger = l
	}
	c.mu.Unlock()

	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := newGRPCServerWithLimits(opts)
		pluginv1.RegisterHostServicesServer(s, &hostServicesServer{host: host})
		c.mu.Lock()
		c.hostSrv = s
		closed := c.closed
		c.mu.Unlock()
		if closed {
			s.Stop()
		}
		return s
	})

	stream, err := c.client.Channel(c.ctx)
	if err != nil {
		return fromStatus("open channel", err, ErrPluginUnavailable)
	}
	c.wg.Add(2)
	go c.sendLoop(stream)
	go c.recvLoop(stream)

	if _, err := c.client.Start(ctx, &pluginv1.StartRequest{Config: config, BrokerId: id, InstanceId: host.InstanceID()}); err != nil {
		return fromStatus("start", err, ErrPluginUnavailable)
	}
	return nil
}

func (c *grpcClient) sendLoop(stream pluginv1.Plugin_ChannelClient) {
	defer c.wg.Done()
	batch := make([]*pluginv1.HostMessage, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-c.out:
			batch = append(batch, m)
		case <-c.ctx.Done():
			return
		}
		size := hostMessageSize(batch[0])
	fill:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case m := <-c.out:
				batch = append(batch, m)
				size += hostMessageSize(m)
			default:
				break fill
			}
		}
		if err := stream.Send(&pluginv1.HostBatch{Messages: batch}); err != nil {
			c.fail(fmt.Errorf("send to plugin: %w", err))
			return
		}
		clear(batch)
	}
}

func hostMessageSize(m *pluginv1.HostMessage) int {
	n := 64
	switch x := m.GetMsg().(type) {
	case *pluginv1.HostMessage_Event:
		for _, a := range x.Event.GetArgs() {
			n += len(a)
		}
	case *pluginv1.HostMessage_Delivery:
		n += len(x.Delivery.GetBody())
	}
	return n
}

func (c *grpcClient) recvLoop(stream pluginv1.Plugin_ChannelClient) {
	defer c.wg.Done()
	for {
		batch, err := stream.Recv()
		if err != nil {
			c.fail(fmt.Errorf("receive from plugin: %w", err))
			return
		}
		for _, m := range batch.GetMessages() {
			switch x := m.GetMsg().(type) {
			case *pluginv1.PluginMessage_Done:
				c.mu.Lock()
				cb := c.pending[x.Done.GetSeq()]
				delete(c.pending, x.Done.GetSeq())
				c.mu.Unlock()
				if cb != nil {
					cb(x.Done)
				}
			case *pluginv1.PluginMessage_Emit:
				e := x.Emit
				if seq := e.GetDeliverySeq(); seq != 0 {
					c.mu.Lock()
					if _, ok := c.pending[seq]; ok {
						c.emitted[seq] = true
					}
					c.mu.Unlock()
				}
				kind, err := targetKindFromProto(e.GetTargetKind())
				if err != nil {
					c.logger.Warn("plugin emit dropped", "event", e.GetEvent(), "error", err)
					continue
				}
				if err := c.host.Emit(c.ctx, Target{Kind: kind, ID: e.GetTargetId()}, e.GetEvent(), bytesToRaw(e.GetArgs())); err != nil {
					c.logger.Debug("plugin emit failed", "event", e.GetEvent(), "target", e.GetTargetId(), "error", err)
				}
			case *pluginv1.PluginMessage_Barrier:
				// Every earlier message of this stream has been applied above.
				done := &pluginv1.HostMessage{Msg: &pluginv1.HostMessage_BarrierDone{BarrierDone: &pluginv1.BarrierDone{Id: x.Barrier.GetId()}}}
				select {
				case c.out <- done:
				case <-c.ctx.Done():
					return
				}
			}
		}
	}
}

// fail marks the client gone and fails every pending call.
func (c *grpcClient) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	pending := c.pending
	c.pending = nil
	srv := c.hostSrv
	c.mu.Unlock()
	if c.ctx.Err() == nil && err != nil {
		c.logger.Debug("plugin channel closed", "error", err)
	}
	c.cancel()
	if srv != nil {
		srv.Stop()
	}
	for _, cb := range pending {
		cb(nil)
	}
}

// send registers cb under a new seq and queues the message built for it.
func (c *grpcClient) send(build func(seq uint64) *pluginv1.HostMessage, cb func(*pluginv1.Done)) error {
	seq := c.seq.Add(1)
	c.mu.Lock()
	if c.closed || c.host == nil {
		c.mu.Unlock()
		return ErrPluginUnavailable
	}
	c.pending[seq] = cb
	c.mu.Unlock()
	select {
	case c.out <- build(seq):
		return nil
	default:
		c.mu.Lock()
		_, mine := c.pending[seq]
		delete(c.pending, seq)
		c.mu.Unlock()
		if !mine { // fail() took it and already called cb
			return nil
		}
		return ErrOverloaded
	}
}

func remoteError(d *pluginv1.Done) error {
	if d == nil {
		return ErrPluginUnavailable
	}
	if d.GetError() == "" {
		return nil
	}
	if d.GetDrop() {
		return fmt.Errorf("%w: %s", ErrDrop, d.GetError())
	}
	return errors.New(d.GetError())
}

func doneErr(done func(error)) func(*pluginv1.Done) {
	return func(d *pluginv1.Done) {
		if done != nil {
			done(remoteError(d))
		}
	}
}

func (c *grpcClient) Connect(s Socket, done func(error)) error {
	return c.send(func(seq uint64) *pluginv1.HostMessage {
		return &pluginv1.HostMessage{Msg: &pluginv1.HostMessage_Connect{Connect: &pluginv1.Connect{Seq: seq, Socket: socketToProto(s)}}}
	}, doneErr(done))
}

func (c *grpcClient) Event(e Event, done func([]json.RawMessage, error)) error {
	return c.send(func(seq uint64) *pluginv1.HostMessage {
		return &pluginv1.HostMessage{Msg: &pluginv1.HostMessage_Event{Event: &pluginv1.Event{
			Seq: seq, Socket: socketToProto(e.Socket), Name: e.Name, Args: rawToBytes(e.Args),
		}}}
	}, func(d *pluginv1.Done) {
		if done == nil {
			return
		}
		if err := remoteError(d); err != nil {
			done(nil, err)
			return
		}
		done(bytesToRaw(d.GetAckArgs()), nil)
	})
}

func (c *grpcClient) Disconnect(s Socket, reason string, done func(error)) error {
	return c.send(func(seq uint64) *pluginv1.HostMessage {
		return &pluginv1.HostMessage{Msg: &pluginv1.HostMessage_Disconnect{Disconnect: &pluginv1.Disconnect{Seq: seq, Socket: socketToProto(s), Reason: reason}}}
	}, doneErr(done))
}

func (c *grpcClient) Deliver(d Delivery, done func(error)) error {
	var mySeq uint64
	return c.send(func(seq uint64) *pluginv1.HostMessage {
		mySeq = seq
		return &pluginv1.HostMessage{Msg: &pluginv1.HostMessage_Delivery{Delivery: &pluginv1.Delivery{
			Seq: seq, Queue: d.Queue, Exchange: d.Exchange, RoutingKey: d.RoutingKey, Body: d.Body, Redelivered: d.Redelivered,
		}}}
	}, func(dn *pluginv1.Done) {
		c.mu.Lock()
		emitted := c.emitted[mySeq]
		delete(c.emitted, mySeq)
		c.mu.Unlock()
		if done == nil {
			return
		}
		if dn == nil && emitted {
			done(ErrEmittedBeforeExit)
			return
		}
		done(remoteError(dn))
	})
}

func (c *grpcClient) HTTP(ctx context.Context, r HTTPRequest) (HTTPResponse, error) {
	resp, err := c.client.HTTP(ctx, httpRequestToProto(r))
	if err != nil {
		return HTTPResponse{}, fromStatus("http", err, ErrPluginUnavailable)
	}
	return httpResponseFromProto(resp), nil
}

func (c *grpcClient) Stop(ctx context.Context) error {
	_, err := c.client.Stop(ctx, &pluginv1.Empty{})
	return fromStatus("stop", err, ErrPluginUnavailable)
}

func (c *grpcClient) Done() <-chan struct{} { return c.ctx.Done() }

// Close fails pending calls, closes the stream and stops the host services
// server. It does not kill the process.
func (c *grpcClient) Close() error {
	c.fail(nil)
	c.wg.Wait()
	return nil
}
