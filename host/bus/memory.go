package bus

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/plugins/sdk"
)

// memoryBus is the in-process bus: AMQP exchange/queue/binding semantics
// without a broker. Everything is guarded by one mutex; handlers run in one
// goroutine per consumer, outside the lock.
type memoryBus struct {
	log        *slog.Logger
	instanceID string
	maxLen     int
	m          *metrics
	ctx        context.Context // canceled by Close; handlers' context
	cancel     context.CancelFunc

	mu        sync.Mutex
	closed    bool
	exchanges map[string]*memExchange
	queues    map[string]*memQueue
	consumers map[*memConsumer]struct{}
}

type memExchange struct {
	def      sdk.Exchange
	bindings []memBinding
}

type memBinding struct {
	key   string
	queue *memQueue
}

type memQueue struct {
	def         sdk.Queue
	ready       *list.List // of memMsg
	consumers   []*memConsumer
	rr          int
	hadConsumer bool
	deleted     bool
}

type memMsg struct {
	exchange, key string
	body          []byte
	redelivered   bool
}

type memConsumer struct {
	b        *memoryBus
	q        *memQueue
	h        AsyncHandler
	async    bool // h settles later: no pause in the loop after a requeue
	prefetch int
	unacked  int  // guarded by b.mu: messages in inbox plus the one in the handler
	stopping bool // guarded by b.mu
	inbox    chan memMsg
	stopCh   chan struct{}
	done     chan struct{}
	once     sync.Once
}

var (
	_ Bus               = (*memoryBus)(nil)
	_ MetricsRegisterer = (*memoryBus)(nil)
)

// NewMemory returns an in-process bus with the same exchange, queue and
// binding semantics as RabbitMQ (topic, direct and fanout exchanges; AMQP
// topic matching; competing consumers served round-robin up to their
// prefetch; nack+requeue redelivers with Redelivered set; unrouted messages
// are dropped). Each queue holds at most DefaultMaxQueueLength ready
// messages; Publish fails with ErrQueueFull beyond that. "{instance}" in queue
// names becomes "local".
func NewMemory(logger *slog.Logger) Bus {
	return newMemory(logger, "local", DefaultMaxQueueLength)
}

func newMemory(logger *slog.Logger, instanceID string, maxLen int) *memoryBus {
	ctx, cancel := context.WithCancel(context.Background())
	b := &memoryBus{
		log:        orDiscard(logger).With("component", "bus", "backend", "memory"),
		instanceID: instanceID,
		maxLen:     maxLen,
		m:          newMetrics("memory"),
		ctx:        ctx,
		cancel:     cancel,
		exchanges:  map[string]*memExchange{},
		queues:     map[string]*memQueue{},
		consumers:  map[*memConsumer]struct{}{},
	}
	b.m.setConn("pub", true)
	b.m.setConn("sub", true)
	return b
}

func (b *memoryBus) Kind() string { return "memory" }

func (b *memoryBus) RegisterMetrics(reg prometheus.Registerer) error { return b.m.register(reg) }

func (b *memoryBus) Ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

func (b *memoryBus) DeclareExchange(_ context.Context, ex sdk.Exchange) error {
	ex, err := normalizeExchange(ex)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if old, ok := b.exchanges[ex.Name]; ok {
		if old.def.Kind != ex.Kind || old.def.Durable != ex.Durable {
			return fmt.Errorf("%w: exchange %q exists as %s durable=%v", ErrInequivalent, ex.Name, old.def.Kind, old.def.Durable)
		}
		return nil
	}
	b.exchanges[ex.Name] = &memExchange{def: ex}
	return nil
}

func (b *memoryBus) Publish(ctx context.Context, exchange, routingKey string, body []byte) (err error) {
	start := time.Now()
	defer func() { b.m.published(err, start) }()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: publish to %q: %w", exchange, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	targets, err := b.route(exchange, routingKey)
	if err != nil {
		return err
	}
	for _, q := range targets {
		if q.ready.Len() >= b.maxLen {
			return fmt.Errorf("bus: publish to %q key %q: queue %q: %w (%d ready messages)", exchange, routingKey, q.def.Name, ErrQueueFull, q.ready.Len())
		}
	}
	for _, q := range targets {
		q.ready.PushBack(memMsg{exchange: exchange, key: routingKey, body: append([]byte(nil), body...)})
		b.dispatch(q)
	}
	return nil
}

// route returns the distinct queues a message reaches. b.mu is held.
func (b *memoryBus) route(exchange, key string) ([]*memQueue, error) {
	if exchange == "" {
		// The AMQP default exchange routes to the queue named by the key.
		if q, ok := b.queues[key]; ok {
			return []*memQueue{q}, nil
		}
		return nil, nil
	}
	ex, ok := b.exchanges[exchange]
	if !ok {
		return nil, fmt.Errorf("bus: publish to %q: %w", exchange, ErrNoExchange)
	}
	var out []*memQueue
	seen := map[*memQueue]bool{}
	for _, bd := range ex.bindings {
		if seen[bd.queue] {
			continue
		}
		var match bool
		switch ex.def.Kind {
		case "fanout":
			match = true
		case "direct":
			match = bd.key == key
		default:
			match = topicMatch(bd.key, key)
		}
		if match {
			seen[bd.queue] = true
			out = append(out, bd.queue)
		}
	}
	return out, nil
}

// dispatch hands ready messages to consumers with spare prefetch, round-robin.
// b.mu is held. Sends never block: a consumer's inbox has room for prefetch
// messages and unacked counts everything it holds.
func (b *memoryBus) dispatch(q *memQueue) {
	for q.ready.Len() > 0 {
		var c *memConsumer
		for i := 0; i < len(q.consumers); i++ {
			cand := q.consumers[(q.rr+i)%len(q.consumers)]
			if !cand.stopping && cand.unacked < cand.prefetch {
				c = cand
				q.rr = (q.rr + i + 1) % len(q.consumers)
				break
			}
		}
		if c == nil {
			return
		}
		msg := q.ready.Remove(q.ready.Front()).(memMsg)
		c.unacked++
		c.inbox <- msg
	}
}

func (b *memoryBus) Consume(_ context.Context, qd sdk.Queue, h Handler) (func(), error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalid)
	}
	return b.consume(qd, syncHandler(h), false)
}

// ConsumeAsync is Consume with deliveries in flight concurrently (see Bus):
// the consumer's prefetch bounds its unsettled messages.
func (b *memoryBus) ConsumeAsync(_ context.Context, qd sdk.Queue, h AsyncHandler) (func(), error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalid)
	}
	return b.consume(qd, h, true)
}

func (b *memoryBus) consume(qd sdk.Queue, h AsyncHandler, async bool) (func(), error) {
	qd, err := normalizeQueue(qd, b.instanceID)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	var ex *memExchange
	if qd.Exchange != "" {
		var ok bool
		if ex, ok = b.exchanges[qd.Exchange]; !ok {
			return nil, fmt.Errorf("bus: bind queue %q: exchange %q: %w", qd.Name, qd.Exchange, ErrNoExchange)
		}
	}
	q, ok := b.queues[qd.Name]
	if ok {
		if q.def.Durable != qd.Durable || q.def.AutoDelete != qd.AutoDelete || q.def.Exclusive != qd.Exclusive {
			return nil, fmt.Errorf("%w: queue %q exists with durable=%v autoDelete=%v exclusive=%v", ErrInequivalent, qd.Name, q.def.Durable, q.def.AutoDelete, q.def.Exclusive)
		}
	} else {
		q = &memQueue{def: qd, ready: list.New()}
		b.queues[qd.Name] = q
	}
	if ex != nil {
	bindings:
		for _, key := range qd.Bindings {
			for _, bd := range ex.bindings {
				if bd.queue == q && bd.key == key {
					continue bindings
				}
			}
			ex.bindings = append(ex.bindings, memBinding{key: key, queue: q})
		}
	}
	c := &memConsumer{
		b: b, q: q, h: h, async: async, prefetch: qd.Prefetch,
		inbox:  make(chan memMsg, qd.Prefetch),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
	q.consumers = append(q.consumers, c)
	q.hadConsumer = true
	b.consumers[c] = struct{}{}
	go c.run()
	b.dispatch(q)
	return c.stop, nil
}

func (c *memConsumer) run() {
	defer close(c.done)
	for {
		// Stop wins over pending messages.
		select {
		case <-c.stopCh:
			return
		default:
		}
		select {
		case <-c.stopCh:
			return
		case msg := <-c.inbox:
			d := sdk.Delivery{Queue: c.q.def.Name, Exchange: msg.exchange, RoutingKey: msg.key, Body: msg.body, Redelivered: msg.redelivered}
			runAsync(c.b.ctx, c.b.log, c.h, d, func(o outcome) {
				c.b.m.delivered(c.q.def.Name, o)
				c.settle(msg, o)
				if o == outcomeRequeue && !c.async {
					sleepCtx(requeueDelay, c.stopCh)
				}
			})
		}
	}
}

func (c *memConsumer) settle(msg memMsg, o outcome) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.unacked > 0 { // 0 after stop: an async settle may come later
		c.unacked--
	}
	if o == outcomeRequeue && !c.q.deleted {
		msg.redelivered = true
		c.q.ready.PushFront(msg)
	}
	b.dispatch(c.q)
}

// stop stops the consumer, waits for its handler and returns its prefetched
// messages to the queue head, in order, marked redelivered.
func (c *memConsumer) stop() {
	c.once.Do(func() {
		b := c.b
		b.mu.Lock()
		c.stopping = true
		b.mu.Unlock()
		close(c.stopCh)
		<-c.done

		b.mu.Lock()
		defer b.mu.Unlock()
		q := c.q
		var back []memMsg
		for {
			select {
			case msg := <-c.inbox:
				back = append(back, msg)
				continue
			default:
			}
			break
		}
		for i := len(back) - 1; i >= 0; i-- {
			back[i].redelivered = true
			q.ready.PushFront(back[i])
		}
		c.unacked = 0
		for i, other := range q.consumers {
			if other == c {
				q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
				break
			}
		}
		delete(b.consumers, c)
		if q.def.AutoDelete && q.hadConsumer && len(q.consumers) == 0 {
			b.deleteQueue(q)
			return
		}
		b.dispatch(q)
	})
}

// deleteQueue removes q and its bindings. b.mu is held.
func (b *memoryBus) deleteQueue(q *memQueue) {
	q.deleted = true
	q.ready.Init()
	delete(b.queues, q.def.Name)
	for _, ex := range b.exchanges {
		kept := ex.bindings[:0]
		for _, bd := range ex.bindings {
			if bd.queue != q {
				kept = append(kept, bd)
			}
		}
		clear(ex.bindings[len(kept):])
		ex.bindings = kept
	}
}

func (b *memoryBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cs := make([]*memConsumer, 0, len(b.consumers))
	for c := range b.consumers {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	b.cancel()
	for _, c := range cs {
		c.stop()
	}
	return nil
}

// isTimeout reports whether err is a context deadline or cancellation.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
