package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clowdr/realtime/plugins/sdk"
)

// rabbitConsumer is one Consume call: a goroutine that, on every live "sub"
// session, opens a channel, declares the queue and its bindings, sets QoS,
// consumes and handles deliveries one at a time, acking on the channel that
// delivered them.
type rabbitConsumer struct {
	b      *rabbitBus
	q      sdk.Queue
	h      AsyncHandler
	async  bool // h settles later: no pause in the loop after a requeue
	tag    string
	log    *slog.Logger
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once
	// first receives the result of the first setup attempt.
	first     chan error
	firstSent bool
}

// Consume declares q and its bindings and delivers its messages to h (see Bus).
// When the broker is down, it returns at once and the consumer starts when
// the connection comes up; topology and consumer are restored after every
// reconnect.
func (b *rabbitBus) Consume(ctx context.Context, q sdk.Queue, h Handler) (func(), error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalid)
	}
	return b.consume(ctx, q, syncHandler(h), false)
}

// ConsumeAsync is Consume with deliveries in flight concurrently (see Bus).
func (b *rabbitBus) ConsumeAsync(ctx context.Context, q sdk.Queue, h AsyncHandler) (func(), error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalid)
	}
	return b.consume(ctx, q, h, true)
}

func (b *rabbitBus) consume(ctx context.Context, q sdk.Queue, h AsyncHandler, async bool) (func(), error) {
	q, err := normalizeQueue(q, b.instanceID)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	b.tagSeq++
	c := &rabbitConsumer{
		b: b, q: q, h: h, async: async,
		tag:    fmt.Sprintf("realtime-%s-%d", b.instanceID, b.tagSeq),
		log:    b.log.With("queue", q.Name),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		first:  make(chan error, 1),
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()

	s, _, _ := b.sub.get()
	go c.run()
	if s == nil {
		c.log.Warn("bus: not connected; the consumer starts once connected")
		return c.stop, nil
	}
	// Connected: report declaration errors (missing exchange, inequivalent
	// queue) to the caller. If the connection drops meanwhile, the consumer
	// keeps trying in the background.
	timer := time.NewTimer(declareTimeout)
	defer timer.Stop()
	select {
	case err := <-c.first:
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("bus: consume %q: %w", q.Name, err)
		}
	case <-ctx.Done():
		c.stop()
		return nil, fmt.Errorf("bus: consume %q: %w", q.Name, ctx.Err())
	case <-timer.C:
	}
	return c.stop, nil
}

func (c *rabbitConsumer) stop() {
	c.once.Do(func() {
		close(c.stopCh)
		<-c.done
		c.b.mu.Lock()
		delete(c.b.consumers, c)
		c.b.mu.Unlock()
	})
}

func (c *rabbitConsumer) stopped() bool {
	select {
	case <-c.stopCh:
		return true
	default:
		return false
	}
}

func (c *rabbitConsumer) reportFirst(err error) {
	if !c.firstSent {
		c.firstSent = true
		c.first <- err
	}
}

func (c *rabbitConsumer) run() {
	defer close(c.done)
	delay := retryMin
	failures := 0
	for !c.stopped() {
		s, _, changed := c.b.sub.get()
		if s == nil {
			select {
			case <-changed:
				continue
			case <-c.stopCh:
				return
			}
		}
		setupOK, err := c.session(s)
		if c.stopped() {
			return
		}
		if setupOK {
			delay, failures = retryMin, 0
		} else {
			failures++
		}
		if failures == 1 || failures%30 == 0 {
			c.log.Warn("bus: consumer interrupted; restarting", "err", err, "setup_failures", failures)
		}
		if !sleepCtx(delay, c.stopCh) {
			return
		}
		delay = min(delay*2, retryMax)
	}
}

// session consumes on one channel of s until the channel or connection
// closes or the consumer stops. setupOK reports whether consuming started.
func (c *rabbitConsumer) session(s *session) (setupOK bool, err error) {
	ch, err := s.conn.Channel()
	if err != nil {
		c.reportFirst(fmt.Errorf("open channel: %w", err))
		return false, fmt.Errorf("open channel: %w", err)
	}
	// Closing the channel returns unacked deliveries to the queue.
	defer func() { _ = ch.Close() }()
	closeCh := ch.NotifyClose(make(chan *amqp.Error, 1))
	defer func() { go drain(closeCh) }()

	deliveries, err := c.setup(ch)
	c.reportFirst(err)
	if err != nil {
		return false, err
	}
	for {
		select {
		case <-c.stopCh:
			return true, nil
		case <-s.done:
			return true, ErrConnectionLost
		case e := <-closeCh:
			return true, fmt.Errorf("channel closed: %w", errOrClosed(e))
		case d, ok := <-deliveries:
			if !ok {
				return true, errors.New("delivery channel closed")
			}
			if c.stopped() {
				// Stop wins: the unacked delivery is requeued when the
				// channel closes.
				return true, nil
			}
			c.handle(d)
		}
	}
}

func errOrClosed(e *amqp.Error) error {
	if e == nil {
		return amqp.ErrClosed
	}
	return e
}

func (c *rabbitConsumer) setup(ch *amqp.Channel) (<-chan amqp.Delivery, error) {
	q := c.q
	if err := ch.Qos(q.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	if q.Exchange != "" {
		c.b.mu.Lock()
		ex, known := c.b.exchanges[q.Exchange]
		c.b.mu.Unlock()
		if known {
			if err := ch.ExchangeDeclare(ex.Name, ex.Kind, ex.Durable, false, false, false, nil); err != nil {
				return nil, fmt.Errorf("declare exchange %q: %w", ex.Name, classify(err, ex.Name))
			}
		}
	}
	var args amqp.Table
	if q.ExpiresMs > 0 {
		args = amqp.Table{"x-expires": q.ExpiresMs}
	}
	if _, err := ch.QueueDeclare(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, args); err != nil {
		return nil, fmt.Errorf("declare queue: %w", classify(err, ""))
	}
	if q.Exchange != "" {
		for _, key := range q.Bindings {
			if err := ch.QueueBind(q.Name, key, q.Exchange, false, nil); err != nil {
				return nil, fmt.Errorf("bind to exchange %q key %q: %w", q.Exchange, key, classify(err, q.Exchange))
			}
		}
	}
	deliveries, err := ch.Consume(q.Name, c.tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	return deliveries, nil
}

// handle starts the handler and settles d on the channel that delivered it
// when the handler is done (before handle returns, unless async). A failed
// ack/nack means the channel is gone; the broker redelivers.
func (c *rabbitConsumer) handle(d amqp.Delivery) {
	sd := sdk.Delivery{Queue: c.q.Name, Exchange: d.Exchange, RoutingKey: d.RoutingKey, Body: d.Body, Redelivered: d.Redelivered}
	runAsync(c.b.handlerCtx, c.b.log, c.h, sd, func(o outcome) {
		c.b.m.delivered(c.q.Name, o)
		var err error
		switch o {
		case outcomeAck:
			err = d.Ack(false)
		case outcomeDrop:
			err = d.Nack(false, false)
		default:
			err = d.Nack(false, true)
			if !c.async {
				sleepCtx(requeueDelay, c.stopCh)
			}
		}
		if err != nil {
			c.log.Debug("bus: settling a delivery failed; the broker will redeliver it", "outcome", string(o), "err", err)
		}
	})
}
