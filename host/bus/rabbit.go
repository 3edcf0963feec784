package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Tunables of the RabbitMQ backend.
const (
	heartbeat       = 10 * time.Second
	dialTimeout     = 5 * time.Second
	retryMin        = 100 * time.Millisecond
	retryMax        = 2 * time.Second
	publishChannels = 4   // confirm channels in the publish pool
	publishQueueLen = 256 // requests waiting for a publish channel
	// declareTimeout bounds a declaration that the caller's ctx does not bound.
	declareTimeout = 10 * time.Second
)

// rabbitBus is the RabbitMQ backend. It keeps two connections (role "pub"
// and "sub"), each owned by a manager goroutine that dials, redials with
// backoff after any loss, and publishes the live connection as a session.
// The built-in amqp091 recovery is not used: the manager loop is simple,
// covers "recovery gave up" by construction, and lets consumers ack on the
// exact channel that delivered.
type rabbitBus struct {
	url        string
	timeout    time.Duration
	instanceID string
	log        *slog.Logger
	m          *metrics

	// ctx is canceled last in Close and stops the connection managers;
	// handlerCtx is canceled first and is the handlers' context.
	ctx           context.Context
	cancel        context.CancelFunc
	handlerCtx    context.Context
	handlerCancel context.CancelFunc

	pub, sub holder
	wg       sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	exchanges map[string]sdk.Exchange
	exOrder   []string
	consumers map[*rabbitConsumer]struct{}
	tagSeq    int
}

var (
	_ Bus               = (*rabbitBus)(nil)
	_ MetricsRegisterer = (*rabbitBus)(nil)
)

// session is one live connection. done is closed when it is gone.
type session struct {
	conn *amqp.Connection
	done chan struct{}
	reqs chan *pubReq // pub sessions only
	wg   sync.WaitGroup
}

// holder publishes the current session of one role to waiters.
type holder struct {
	mu      sync.Mutex
	cur     *session
	lastErr error
	changed chan struct{}
}

func (h *holder) get() (*session, error, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.cur, h.lastErr, h.changed
}

func (h *holder) set(s *session, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur, h.lastErr = s, err
	if h.changed != nil {
		close(h.changed)
	}
	h.changed = make(chan struct{})
}

// NewRabbit returns a RabbitMQ bus for url. It does not fail when the broker
// is unreachable: it logs, keeps redialling in the background, Ready reports
// the error and Publish fails fast with ErrNotConnected until connected.
// Publishing and consuming use separate connections named
// "realtime <instanceID> pub|sub".
func NewRabbit(ctx context.Context, url string, cfg config.BusConfig, instanceID string, logger *slog.Logger) (Bus, error) {
	if url == "" {
		return nil, fmt.Errorf("%w: empty AMQP url", ErrInvalid)
	}
	if _, err := amqp.ParseURI(url); err != nil {
		return nil, fmt.Errorf("bus: parse AMQP url %s: %w", RedactURL(url), err)
	}
	timeout := cfg.PublishTimeout
	if timeout <= 0 {
		timeout = DefaultPublishTimeout
	}
	b := &rabbitBus{
		url:        url,
		timeout:    timeout,
		instanceID: instanceID,
		log:        orDiscard(logger).With("component", "bus", "backend", "rabbitmq", "url", RedactURL(url)),
		m:          newMetrics("rabbitmq"),
		exchanges:  map[string]sdk.Exchange{},
		consumers:  map[*rabbitConsumer]struct{}{},
	}
	// The connections outlive New's ctx: Close ends them.
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	b.handlerCtx, b.handlerCancel = context.WithCancel(b.ctx)
	notYet := errors.New("connecting")
	b.pub.set(nil, notYet)
	b.sub.set(nil, notYet)
	b.m.setConn("pub", false)
	b.m.setConn("sub", false)
	b.wg.Add(2)
	go b.manage("pub", &b.pub, b.onPubUp)
	go b.manage("sub", &b.sub, nil)
	return b, nil
}

func (b *rabbitBus) Kind() string { return "rabbitmq" }

func (b *rabbitBus) RegisterMetrics(reg prometheus.Registerer) error { return b.m.register(reg) }

func (b *rabbitBus) Ready() error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	var errs []error
	for _, r := range []struct {
		role string
		h    *holder
	}{{"pub", &b.pub}, {"sub", &b.sub}} {
		if s, err, _ := r.h.get(); s == nil {
			errs = append(errs, fmt.Errorf("bus: %s connection down: %w", r.role, err))
		}
	}
	return errors.Join(errs...)
}

// manage owns one connection role until Close.
func (b *rabbitBus) manage(role string, h *holder, onUp func(*session)) {
	defer b.wg.Done()
	log := b.log.With("role", role)
	delay := retryMin
	failures := 0
	for b.ctx.Err() == nil {
		conn, err := amqp.DialConfig(b.url, amqp.Config{
			Heartbeat:  heartbeat,
			Locale:     "en_US",
			Dial:       amqp.DefaultDial(dialTimeout),
			Properties: amqp.Table{"connection_name": fmt.Sprintf("realtime %s %s", b.instanceID, role)},
		})
		if err != nil {
			failures++
			h.set(nil, fmt.Errorf("dial: %w", err))
			if failures == 1 || failures%60 == 0 {
				log.Warn("bus: cannot connect to RabbitMQ; retrying", "err", err, "attempts", failures)
			}
			jitter := time.Duration(rand.Int64N(int64(delay)/4 + 1))
			if !sleepCtx(delay+jitter, b.ctx.Done()) {
				return
			}
			delay = min(delay*2, retryMax)
			continue
		}
		if failures > 0 {
			log.Info("bus: connected to RabbitMQ", "after_attempts", failures)
		}
		failures, delay = 0, retryMin

		s := &session{conn: conn, done: make(chan struct{})}
		closeCh := conn.NotifyClose(make(chan *amqp.Error, 1))
		blockCh := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
		if onUp != nil {
			onUp(s)
		}
		h.set(s, nil)
		b.m.setConn(role, true)

		lost := b.watch(log, closeCh, blockCh)
		h.set(nil, fmt.Errorf("connection lost: %w", lost))
		b.m.setConn(role, false)
		close(s.done)
		// Close before waiting for the workers, so that none stays stuck
		// in a write to a blocked connection.
		_ = conn.CloseDeadline(time.Now().Add(dialTimeout))
		s.wg.Wait()
		// Drain what the library may still send; both channels get closed
		// when the connection is torn down.
		go drain(closeCh)
		go drain(blockCh)
	}
}

// watch blocks until the connection closes (returning why) or the bus closes.
func (b *rabbitBus) watch(log *slog.Logger, closeCh chan *amqp.Error, blockCh chan amqp.Blocking) error {
	for {
		select {
		case e, ok := <-closeCh:
			if !ok || e == nil {
				log.Warn("bus: connection closed")
				return errors.New("closed")
			}
			log.Warn("bus: connection lost; reconnecting", "err", e)
			return e
		case bl, ok := <-blockCh:
			if !ok {
				blockCh = nil
				continue
			}
			if bl.Active {
				log.Warn("bus: broker blocked publishing (resource alarm)", "reason", bl.Reason)
			} else {
				log.Info("bus: broker unblocked publishing")
			}
		case <-b.ctx.Done():
			return ErrClosed
		}
	}
}

func drain[T any](ch chan T) {
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			return
		}
	}
}

// onPubUp redeclares the known exchanges and starts the publish workers.
func (b *rabbitBus) onPubUp(s *session) {
	b.mu.Lock()
	exs := make([]sdk.Exchange, 0, len(b.exOrder))
	for _, n := range b.exOrder {
		exs = append(exs, b.exchanges[n])
	}
	b.mu.Unlock()
	for _, ex := range exs {
		if err := declareExchange(s.conn, ex); err != nil {
			b.log.Error("bus: redeclare exchange failed", "exchange", ex.Name, "err", err)
		}
	}
	s.reqs = make(chan *pubReq, publishQueueLen)
	s.wg.Add(publishChannels)
	for range publishChannels {
		go b.pubWorker(s)
	}
}

// declareExchange declares ex on a short-lived channel of conn.
func declareExchange(conn *amqp.Connection, ex sdk.Exchange) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(ex.Name, ex.Kind, ex.Durable, false, false, false, nil); err != nil {
		return classify(err, ex.Name)
	}
	return nil
}

// classify maps broker errors to the package's sentinels.
func classify(err error, exchange string) error {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.NotFound:
			if exchange != "" && strings.Contains(ae.Reason, "exchange '"+exchange+"'") {
				return fmt.Errorf("%w: %s", ErrNoExchange, ae.Reason)
			}
		case amqp.PreconditionFailed:
			return fmt.Errorf("%w: %s", ErrInequivalent, ae.Reason)
		}
	}
	return err
}

func (b *rabbitBus) DeclareExchange(ctx context.Context, ex sdk.Exchange) error {
	ex, err := normalizeExchange(ex)
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	old, known := b.exchanges[ex.Name]
	if known && old != ex {
		b.mu.Unlock()
		return fmt.Errorf("%w: exchange %q already declared as %s durable=%v", ErrInequivalent, ex.Name, old.Kind, old.Durable)
	}
	if !known {
		// Record first, so a reconnect racing with this call redeclares it.
		b.exchanges[ex.Name] = ex
		b.exOrder = append(b.exOrder, ex.Name)
	}
	b.mu.Unlock()

	s, _, _ := b.pub.get()
	if s == nil {
		return nil
	}
	err = runBounded(ctx, func() error { return declareExchange(s.conn, ex) })
	if err == nil || s.conn.IsClosed() {
		// A lost connection redeclares it once back.
		return nil
	}
	if !known {
		b.mu.Lock()
		delete(b.exchanges, ex.Name)
		b.exOrder = slices.DeleteFunc(b.exOrder, func(n string) bool { return n == ex.Name })
		b.mu.Unlock()
	}
	return fmt.Errorf("bus: declare exchange %q: %w", ex.Name, err)
}

// runBounded runs f (a blocking broker call) and waits for it at most until
// ctx is done or declareTimeout passes. A late f finishes in the background.
func runBounded(ctx context.Context, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, declareTimeout)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- f() }()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pubReq is one Publish waiting for a publish channel.
type pubReq struct {
	ctx        context.Context
	exchange   string
	key        string
	body       []byte
	res        chan pubResult // capacity 1
	publishing amqp.Publishing
}

type pubResult struct {
	dc  *amqp.DeferredConfirmation
	err error
	pc  *pubChan
}

// pubChan is a confirm-mode channel owned by one worker goroutine. dead is
// closed (after err is set) once the worker saw the channel close.
type pubChan struct {
	ch      *amqp.Channel
	closeCh chan *amqp.Error
	dead    chan struct{}
	err     *amqp.Error
}

func openPubChan(conn *amqp.Connection) (*pubChan, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open publish channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable confirms: %w", err)
	}
	pc := &pubChan{ch: ch, closeCh: make(chan *amqp.Error, 1), dead: make(chan struct{})}
	ch.NotifyClose(pc.closeCh)
	return pc, nil
}

// pubWorker owns one confirm channel: it writes the publishes handed to it
// and gives each caller its DeferredConfirmation, so many publishes are in
// flight per channel while callers wait for their own confirms. A channel
// the broker closes (e.g. publish to a missing exchange) is replaced.
func (b *rabbitBus) pubWorker(s *session) {
	defer s.wg.Done()
	var pc *pubChan
	defer func() {
		if pc != nil {
			_ = pc.ch.Close()
		}
	}()
	for {
		if pc == nil {
			var err error
			if pc, err = openPubChan(s.conn); err != nil {
				pc = nil
				if s.conn.IsClosed() {
					return
				}
				b.log.Warn("bus: publish channel", "err", err)
				if !sleepCtx(retryMin, s.done) {
					return
				}
				continue
			}
		}
		select {
		case <-s.done:
			return
		case e := <-pc.closeCh:
			pc.markDead(e)
			pc = nil
		case req := <-s.reqs:
			if err := req.ctx.Err(); err != nil {
				req.res <- pubResult{err: err}
				continue
			}
			dc, err := pc.ch.PublishWithDeferredConfirmWithContext(req.ctx, req.exchange, req.key, false, false, req.publishing)
			req.res <- pubResult{dc: dc, err: err, pc: pc}
			if err != nil && pc.ch.IsClosed() {
				select {
				case e := <-pc.closeCh:
					pc.markDead(e)
				case <-s.done:
					return
				}
				pc = nil
			}
		}
	}
}

func (pc *pubChan) markDead(e *amqp.Error) {
	pc.err = e
	close(pc.dead)
	go drain(pc.closeCh)
}

// Publish sends a persistent message and waits for the broker's confirm.
func (b *rabbitBus) Publish(ctx context.Context, exchange, routingKey string, body []byte) (err error) {
	start := time.Now()
	defer func() { b.m.published(err, start) }()
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req := &pubReq{
		ctx: ctx, exchange: exchange, key: routingKey,
		res:        make(chan pubResult, 1),
		publishing: amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body},
	}
	// A publish poisoned by another one on the same channel (the broker
	// closed it for that one's error) never reached an exchange and is
	// retried on a fresh channel.
	for attempt := 0; ; attempt++ {
		retry, err := b.publishOnce(ctx, req)
		if err == nil {
			return nil
		}
		if !retry || attempt >= 2 {
			return fmt.Errorf("bus: publish to %q key %q: %w", exchange, routingKey, err)
		}
		req.res = make(chan pubResult, 1)
	}
}

func (b *rabbitBus) publishOnce(ctx context.Context, req *pubReq) (retry bool, err error) {
	s, lastErr, _ := b.pub.get()
	if s == nil {
		return false, fmt.Errorf("%w (%v)", ErrNotConnected, lastErr)
	}
	lost := func() error {
		if b.ctx.Err() != nil {
			return ErrClosed
		}
		return ErrConnectionLost
	}
	select {
	case s.reqs <- req:
	case <-s.done:
		return false, lost()
	case <-ctx.Done():
		return false, fmt.Errorf("waiting for a publish channel: %w", ctx.Err())
	}
	var r pubResult
	select {
	case r = <-req.res:
	case <-s.done:
		return false, lost()
	case <-ctx.Done():
		return false, fmt.Errorf("waiting for a publish channel: %w", ctx.Err())
	}
	if r.err != nil {
		if s.conn.IsClosed() {
			return false, lost()
		}
		if r.pc != nil && r.pc.ch.IsClosed() {
			return true, r.err
		}
		return false, r.err
	}
	select {
	case <-r.dc.Done():
	case <-ctx.Done():
		return false, fmt.Errorf("waiting for the broker's confirm: %w", ctx.Err())
	}
	if r.dc.Acked() {
		return false, nil
	}
	if s.conn.IsClosed() {
		return false, lost()
	}
	if r.pc.ch.IsClosed() {
		select {
		case <-r.pc.dead:
		case <-s.done:
			return false, lost()
		case <-ctx.Done():
			return false, fmt.Errorf("channel closed: %w", ctx.Err())
		}
		if r.pc.err == nil {
			return true, errors.New("publish channel closed")
		}
		if cerr := classify(r.pc.err, req.exchange); errors.Is(cerr, ErrNoExchange) || errors.Is(cerr, ErrInequivalent) {
			return false, cerr
		}
		return true, fmt.Errorf("publish channel closed: %w", r.pc.err)
	}
	return false, ErrNacked
}

func (b *rabbitBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cs := make([]*rabbitConsumer, 0, len(b.consumers))
	for c := range b.consumers {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	b.handlerCancel()
	for _, c := range cs {
		c.stop()
	}
	b.cancel()
	b.wg.Wait()
	return nil
}
