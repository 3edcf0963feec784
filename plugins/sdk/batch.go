package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// maxBatchWait bounds Queue.BatchWait: a batch holds its deliveries
// unanswered while it waits.
const maxBatchWait = 10 * time.Second

// batching hands the deliveries of the queues declared with BatchMax > 0 to
// the plugin's BatchDeliveryHandler, one batcher (one goroutine) per queue,
// in both the plugin process and the in-process client. Other queues keep
// going through the keyed dispatcher to OnDelivery.
type batching struct {
	handler BatchDeliveryHandler // nil when the plugin does not implement it
	ctx     context.Context      // the handlers' base context

	mu       sync.Mutex
	logger   *slog.Logger
	declared []Queue // BatchMax > 0, names as declared
	instance string  // replaces "{instance}" in declared names
	active   map[string]*batcher
	closed   bool
}

func newBatching(p Plugin, ctx context.Context, logger *slog.Logger) *batching {
	h, _ := p.(BatchDeliveryHandler)
	return &batching{handler: h, ctx: ctx, logger: logger, active: map[string]*batcher{}}
}

// declare validates the batch settings of d's queues and records them. The
// host calls Describe again after Start, so the last answer wins (batchers
// are created on the first delivery, which comes after it).
func (b *batching) declare(d Descriptor) error {
	var qs []Queue
	for _, q := range d.Queues {
		if err := validateBatch(q, b.handler != nil); err != nil {
			return err
		}
		if q.BatchMax > 0 {
			qs = append(qs, q)
		}
	}
	b.mu.Lock()
	b.declared = qs
	b.mu.Unlock()
	return nil
}

func validateBatch(q Queue, implemented bool) error {
	switch {
	case q.BatchMax < 0:
		return fmt.Errorf("queue %q: batchMax %d is negative", q.Name, q.BatchMax)
	case q.BatchWait < 0 || q.BatchWait > maxBatchWait:
		return fmt.Errorf("queue %q: batchWait %v is outside [0, %v]", q.Name, q.BatchWait, maxBatchWait)
	case q.BatchMax == 0:
		return nil
	case !implemented:
		return fmt.Errorf("queue %q: batchMax needs a plugin that implements BatchDeliveryHandler", q.Name)
	case q.Prefetch < q.BatchMax:
		return fmt.Errorf("queue %q: prefetch %d is below batchMax %d (a consumer holds at most prefetch deliveries)", q.Name, q.Prefetch, q.BatchMax)
	}
	return nil
}

// start records what a successful Start gives: the instance id the host
// puts in queue names, the logger, and the queues as described after Start
// (the host describes the plugin again too; this does not depend on it).
func (b *batching) start(instance string, logger *slog.Logger, p Plugin) error {
	b.mu.Lock()
	b.instance = instance
	if logger != nil {
		b.logger = logger
	}
	l := b.logger
	b.mu.Unlock()
	var d Descriptor
	if err := safely(l, "Describe", func() error { d = p.Describe(); return nil }); err != nil {
		return err
	}
	return b.declare(d)
}

// deliver queues d on its queue's batcher and reports true, or reports
// false when d's queue is not batched. done runs once with d's outcome.
func (b *batching) deliver(d Delivery, done func(error)) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.declared) == 0 {
		return false, nil
	}
	if b.closed {
		return true, ErrPluginUnavailable
	}
	t := b.active[d.Queue]
	if t == nil {
		for _, q := range b.declared {
			if strings.ReplaceAll(q.Name, "{instance}", b.instance) == d.Queue {
				t = newBatcher(b, q, b.logger)
				b.active[d.Queue] = t
				break
			}
		}
		if t == nil {
			return false, nil
		}
	}
	t.add(d, done)
	return true, nil
}

// close answers every queued delivery (without waiting for fuller
// batches), then stops the batchers. It waits for them.
func (b *batching) close() {
	b.mu.Lock()
	b.closed = true
	ts := make([]*batcher, 0, len(b.active))
	for _, t := range b.active {
		ts = append(ts, t)
	}
	b.mu.Unlock()
	for _, t := range ts {
		t.stop()
	}
}

// batcher collects one queue's deliveries and runs OnDeliveries on them,
// one batch at a time, in arrival order.
type batcher struct {
	b      *batching
	max    int
	wait   time.Duration
	logger *slog.Logger
	wake   chan struct{} // a delivery arrived
	quit   chan struct{} // closed by stop
	exited chan struct{}
	once   sync.Once

	mu         sync.Mutex
	pending    []batchItem
	unanswered int // queued or in a running batch, done not called yet
	// pipelined is set once a delivery arrived while another was
	// unanswered: the host hands over several at a time, so waiting for
	// more can fill a batch. A host that waits for each answer would only
	// be slowed down by the wait, so until then batches run at once.
	pipelined bool
}

type batchItem struct {
	d    Delivery
	at   time.Time
	done func(error)
}

func newBatcher(b *batching, q Queue, logger *slog.Logger) *batcher {
	t := &batcher{
		b: b, max: q.BatchMax, wait: q.BatchWait, logger: logger,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), exited: make(chan struct{}),
	}
	go t.loop()
	return t
}

func (t *batcher) add(d Delivery, done func(error)) {
	t.mu.Lock()
	if t.unanswered > 0 {
		t.pipelined = true
	}
	t.unanswered++
	t.pending = append(t.pending, batchItem{d: d, at: time.Now(), done: done})
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *batcher) stop() {
	t.once.Do(func() { close(t.quit) })
	<-t.exited
}

func (t *batcher) stopping() bool {
	select {
	case <-t.quit:
		return true
	default:
		return false
	}
}

func (t *batcher) loop() {
	defer close(t.exited)
	for {
		t.mu.Lock()
		n := len(t.pending)
		if n == 0 {
			t.mu.Unlock()
			if t.stopping() {
				return
			}
			select {
			case <-t.wake:
			case <-t.quit:
			}
			continue
		}
		if n < t.max && t.pipelined && !t.stopping() {
			if left := time.Until(t.pending[0].at.Add(t.wait)); left > 0 {
				t.mu.Unlock()
				timer := time.NewTimer(left)
				select {
				case <-t.wake:
				case <-timer.C:
				case <-t.quit:
				}
				timer.Stop()
				continue // look again: full, expired or stopping
			}
		}
		k := min(n, t.max)
		batch := make([]batchItem, k)
		copy(batch, t.pending)
		t.pending = append(t.pending[:0], t.pending[k:]...)
		t.mu.Unlock()

		errs := t.run(batch)
		// Count the batch answered before answering it: the host may send
		// the next delivery as soon as it has an answer, and that one must
		// not look pipelined.
		t.mu.Lock()
		t.unanswered -= k
		t.mu.Unlock()
		for i, it := range batch {
			if it.done != nil {
				it.done(errs[i])
			}
		}
	}
}

// run calls OnDeliveries and returns exactly one error per item: a panic
// requeues the whole batch, a missing result requeues its delivery.
func (t *batcher) run(batch []batchItem) []error {
	ds := make([]Delivery, len(batch))
	for i, it := range batch {
		ds[i] = it.d
	}
	ctx, cancel := context.WithTimeout(t.b.ctx, handlerTimeout)
	defer cancel()
	var got []error
	err := safely(t.logger, "OnDeliveries", func() error { got = t.b.handler.OnDeliveries(ctx, ds); return nil })
	if err == nil && len(got) != len(ds) && t.logger != nil {
		t.logger.Error("plugin OnDeliveries returned the wrong number of results; the missing ones are requeued",
			"queue", ds[0].Queue, "deliveries", len(ds), "results", len(got))
	}
	out := make([]error, len(ds))
	for i := range out {
		switch {
		case err != nil:
			out[i] = err
		case i < len(got):
			out[i] = got[i]
		default:
			out[i] = fmt.Errorf("OnDeliveries: no result for delivery %d of %d", i+1, len(ds))
		}
	}
	return out
}
