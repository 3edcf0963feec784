package sdk

// The plugin-side shim: serves pluginv1.PluginServer by calling a Plugin.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/clowdr/realtime/plugins/sdk/proto/v1"
)

// Stream batching limits (both directions).
const (
	// outQueueDepth bounds the messages waiting to be written to the stream.
	outQueueDepth = 8192
	// maxBatch is the most messages coalesced into one stream message.
	maxBatch = 256
	// maxBatchBytes is the approximate payload size after which a batch is sent.
	maxBatchBytes = 1 << 20
)

type grpcServer struct {
	pluginv1.UnimplementedPluginServer

	impl   Plugin
	broker *plugin.GRPCBroker
	logger *slog.Logger
	disp   *dispatcher
	batch  *batching

	// out carries Done and Emit messages to the Channel stream.
	out chan *pluginv1.PluginMessage

	ctx    context.Context // the server's life; cancelled after Stop
	cancel context.CancelFunc

	started   atomic.Bool
	streaming atomic.Bool

	mu       sync.Mutex
	hostConn *grpc.ClientConn

	// Barriers (see barrier): emits counts the emits queued, flushed the
	// count the last finished barrier covered.
	emits, flushed atomic.Uint64
	barrierMu      sync.Mutex
	barrierSeq     uint64
	barriers       map[uint64]chan struct{}
}

var _ pluginv1.PluginServer = (*grpcServer)(nil)

func newGRPCServer(impl Plugin, broker *plugin.GRPCBroker, logger *slog.Logger) *grpcServer {
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &grpcServer{
		impl: impl, broker: broker, logger: logger,
		disp:  newDispatcher(dispatchWorkers, dispatchDepth),
		batch: newBatching(impl, ctx, logger),
		out:   make(chan *pluginv1.PluginMessage, outQueueDepth),
		ctx:   ctx, cancel: cancel,
	}
}

func (s *grpcServer) Describe(context.Context, *pluginv1.DescribeRequest) (*pluginv1.Descriptor, error) {
	var d Descriptor
	if err := safely(s.logger, "Describe", func() error { d = s.impl.Describe(); return nil }); err != nil {
		return nil, toStatus(err)
	}
	if err := s.batch.declare(d); err != nil {
		return nil, toStatus(err)
	}
	return descriptorToProto(d), nil
}

func (s *grpcServer) Start(ctx context.Context, req *pluginv1.StartRequest) (*pluginv1.Empty, error) {
	if !s.started.CompareAndSwap(false, true) {
		return nil, status.Error(codes.FailedPrecondition, "plugin already started")
	}
	conn, err := s.broker.DialWithOptions(req.GetBrokerId(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial host services (broker id %d): %v", req.GetBrokerId(), err)
	}
	s.mu.Lock()
	s.hostConn = conn
	s.mu.Unlock()
	host := &remoteHost{
		client:     pluginv1.NewHostServicesClient(conn),
		srv:        s,
		instanceID: req.GetInstanceId(),
	}
	if err := safely(s.logger, "Start", func() error { return s.impl.Start(ctx, host, req.GetConfig()) }); err != nil {
		return nil, toStatus(err)
	}
	if err := s.batch.start(req.GetInstanceId(), nil, s.impl); err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.Empty{}, nil
}

func (s *grpcServer) HTTP(ctx context.Context, req *pluginv1.HTTPRequest) (*pluginv1.HTTPResponse, error) {
	var resp HTTPResponse
	err := safely(s.logger, "OnHTTP", func() (err error) { resp, err = s.impl.OnHTTP(ctx, httpRequestFromProto(req)); return err })
	if err != nil {
		return nil, toStatus(err)
	}
	return httpResponseToProto(resp), nil
}

// Stop calls Plugin.Stop, lets the queued handlers finish, then waits
// (bounded by ctx) until the messages they queued reached the stream. The
// server handles no further calls afterwards.
func (s *grpcServer) Stop(ctx context.Context, _ *pluginv1.Empty) (*pluginv1.Empty, error) {
	err := safely(s.logger, "Stop", func() error { return s.impl.Stop(ctx) })
	closed := make(chan struct{})
	go func() { s.disp.close(); s.batch.close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for len(s.out) > 0 && s.ctx.Err() == nil { // until flushed, or the stream is gone
		select {
		case <-ctx.Done():
			return nil, toStatus(ctx.Err())
		case <-t.C:
		}
	}
	s.cancel()
	s.mu.Lock()
	if s.hostConn != nil {
		_ = s.hostConn.Close()
		s.hostConn = nil
	}
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.Empty{}, nil
}

// Channel is the one ordered stream with the host; a process serves one.
func (s *grpcServer) Channel(stream pluginv1.Plugin_ChannelServer) error {
	if !s.streaming.CompareAndSwap(false, true) {
		return status.Error(codes.FailedPrecondition, "channel already open")
	}
	// One stream per process: when it ends the host is gone (or done with
	// this process), so the handlers' context is cancelled and the workers
	// stop once the queued calls ran.
	defer func() { go func() { s.cancel(); s.disp.close(); s.batch.close() }() }()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.sendLoop(ctx, stream); err != nil && ctx.Err() == nil {
			s.logger.Debug("plugin channel send ended", "error", err)
			cancel()
		}
	}()
	defer wg.Wait()
	for {
		batch, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, m := range batch.GetMessages() {
			if err := s.dispatch(ctx, m); err != nil {
				return status.Error(codes.Canceled, err.Error())
			}
		}
	}
}

func (s *grpcServer) sendLoop(ctx context.Context, stream pluginv1.Plugin_ChannelServer) error {
	batch := make([]*pluginv1.PluginMessage, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-s.out:
			batch = append(batch, m)
		case <-ctx.Done():
			return ctx.Err()
		}
		size := pluginMessageSize(batch[0])
	fill:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case m := <-s.out:
				batch = append(batch, m)
				size += pluginMessageSize(m)
			default:
				break fill
			}
		}
		if err := stream.Send(&pluginv1.PluginBatch{Messages: batch}); err != nil {
			return fmt.Errorf("send to host: %w", err)
		}
		clear(batch)
	}
}

func pluginMessageSize(m *pluginv1.PluginMessage) int {
	n := 32
	switch x := m.GetMsg().(type) {
	case *pluginv1.PluginMessage_Emit:
		for _, a := range x.Emit.GetArgs() {
			n += len(a)
		}
	case *pluginv1.PluginMessage_Done:
		for _, a := range x.Done.GetAckArgs() {
			n += len(a)
		}
	}
	return n
}

// enqueue queues a message for the host, waiting while the queue is full.
func (s *grpcServer) enqueue(ctx context.Context, m *pluginv1.PluginMessage) error {
	select {
	case s.out <- m:
		return nil
	default:
	}
	select {
	case s.out <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrHostUnavailable
	}
}

func (s *grpcServer) done(seq uint64, err error, ack [][]byte, drop bool) {
	d := &pluginv1.Done{Seq: seq, AckArgs: ack, Drop: drop}
	if err != nil {
		d.Error = err.Error()
	}
	// Never give up on a Done while the server lives: the host waits for it.
	_ = s.enqueue(s.ctx, &pluginv1.PluginMessage{Msg: &pluginv1.PluginMessage_Done{Done: d}})
}

// dispatch hands one host message to the keyed workers. It only fails when
// ctx (the stream) is done.
func (s *grpcServer) dispatch(ctx context.Context, m *pluginv1.HostMessage) error {
	switch x := m.GetMsg().(type) {
	case *pluginv1.HostMessage_Connect:
		c := x.Connect
		sock := socketFromProto(c.GetSocket())
		return s.disp.submit(ctx, sock.ID, func() {
			hctx, cancel := context.WithTimeout(s.ctx, handlerTimeout)
			err := safely(s.logger, "OnConnect", func() error { return s.impl.OnConnect(hctx, sock) })
			cancel()
			s.done(c.GetSeq(), err, nil, false)
		})
	case *pluginv1.HostMessage_Event:
		ev := x.Event
		e := Event{Socket: socketFromProto(ev.GetSocket()), Name: ev.GetName(), Args: bytesToRaw(ev.GetArgs())}
		return s.disp.submit(ctx, e.Socket.ID, func() {
			hctx, cancel := context.WithTimeout(s.ctx, handlerTimeout)
			var ack []any
			err := safely(s.logger, "OnEvent", func() (err error) { ack, err = s.impl.OnEvent(hctx, e); return err })
			cancel()
			var raw []json.RawMessage
			if err == nil {
				raw, err = MarshalArgs(ack)
				if err != nil {
					err = fmt.Errorf("event %q: ack: %w", e.Name, err)
				}
			}
			s.done(ev.GetSeq(), err, rawToBytes(raw), false)
		})
	case *pluginv1.HostMessage_Disconnect:
		d := x.Disconnect
		sock := socketFromProto(d.GetSocket())
		return s.disp.submit(ctx, sock.ID, func() {
			hctx, cancel := context.WithTimeout(s.ctx, handlerTimeout)
			err := safely(s.logger, "OnDisconnect", func() error { return s.impl.OnDisconnect(hctx, sock, d.GetReason()) })
			cancel()
			s.done(d.GetSeq(), err, nil, false)
		})
	case *pluginv1.HostMessage_Delivery:
		dv := x.Delivery
		del := Delivery{Queue: dv.GetQueue(), Exchange: dv.GetExchange(), RoutingKey: dv.GetRoutingKey(), Body: dv.GetBody(), Redelivered: dv.GetRedelivered()}
		if ok, err := s.batch.deliver(del, func(err error) { s.done(dv.GetSeq(), err, nil, err != nil && errors.Is(err, ErrDrop)) }); ok {
			if err != nil {
				s.done(dv.GetSeq(), err, nil, false)
			}
			return nil
		}
		return s.disp.submit(ctx, "q:"+del.Queue, func() {
			// Emits made while handling it carry its seq (ErrEmittedBeforeExit).
			hctx, cancel := context.WithTimeout(context.WithValue(s.ctx, deliverySeqKey{}, dv.GetSeq()), handlerTimeout)
			err := safely(s.logger, "OnDelivery", func() error { return s.impl.OnDelivery(hctx, del) })
			cancel()
			s.done(dv.GetSeq(), err, nil, err != nil && errors.Is(err, ErrDrop))
		})
	case *pluginv1.HostMessage_BarrierDone:
		s.barrierMu.Lock()
		ch := s.barriers[x.BarrierDone.GetId()]
		delete(s.barriers, x.BarrierDone.GetId())
		s.barrierMu.Unlock()
		if ch != nil {
			close(ch)
		}
	default:
		s.logger.Warn("plugin: unknown host message ignored (newer host?)")
	}
	return nil
}

// barrier returns once the host has applied every emit queued before the
// call. Join, Leave and Disconnect call it first: they are unary calls on
// another connection, and would otherwise overtake emits still in the
// stream (an update sent before a Leave reaching the socket, or one sent
// before a Join reaching it).
func (s *grpcServer) barrier(ctx context.Context) error {
	n := s.emits.Load()
	if s.flushed.Load() >= n {
		return nil // nothing emitted since the last barrier
	}
	s.barrierMu.Lock()
	if s.barriers == nil {
		s.barriers = map[uint64]chan struct{}{}
	}
	s.barrierSeq++
	id := s.barrierSeq
	ch := make(chan struct{})
	s.barriers[id] = ch
	s.barrierMu.Unlock()
	forget := func() {
		s.barrierMu.Lock()
		delete(s.barriers, id)
		s.barrierMu.Unlock()
	}
	if err := s.enqueue(ctx, &pluginv1.PluginMessage{Msg: &pluginv1.PluginMessage_Barrier{Barrier: &pluginv1.Barrier{Id: id}}}); err != nil {
		forget()
		return err
	}
	select {
	case <-ch:
		for {
			f := s.flushed.Load()
			if f >= n || s.flushed.CompareAndSwap(f, n) {
				return nil
			}
		}
	case <-ctx.Done():
		forget()
		return ctx.Err()
	case <-s.ctx.Done():
		forget()
		return ErrHostUnavailable
	}
}
