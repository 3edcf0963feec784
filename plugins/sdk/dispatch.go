package sdk

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
)

// Dispatch sizing, shared by the plugin side of the gRPC shim and the
// in-process client.
const (
	// dispatchWorkers is the number of keyed workers: calls whose keys hash to
	// the same worker run one after the other, in order.
	dispatchWorkers = 64
	// dispatchDepth bounds each worker's queue in a plugin process (a full
	// queue holds the stream back, and the host's own queue absorbs bursts).
	dispatchDepth = 256
	// localDispatchDepth bounds each worker's queue in-process, where a full
	// queue fails the call with ErrOverloaded.
	localDispatchDepth = 1024
)

// dispatcher runs funcs on a fixed pool of workers keyed by a string (a socket
// id, or "q:"+queue for deliveries): funcs with the same key run in submission
// order, funcs with different keys usually run concurrently.
type dispatcher struct {
	mu     sync.RWMutex // held for reading by submitters, for writing by close
	closed bool
	queues []chan func()
	quit   chan struct{}
	wg     sync.WaitGroup
}

func newDispatcher(workers, depth int) *dispatcher {
	d := &dispatcher{queues: make([]chan func(), workers), quit: make(chan struct{})}
	for i := range d.queues {
		q := make(chan func(), depth)
		d.queues[i] = q
		d.wg.Add(1)
		go d.work(q)
	}
	return d
}

func (d *dispatcher) work(q chan func()) {
	defer d.wg.Done()
	for {
		select {
		case f := <-q:
			f()
		case <-d.quit:
			for {
				select {
				case f := <-q:
					f()
				default:
					return
				}
			}
		}
	}
}

// fnv1a hashes s without allocating.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (d *dispatcher) queue(key string) chan func() {
	return d.queues[fnv1a(key)%uint32(len(d.queues))]
}

// submit queues f, waiting while the key's queue is full. It fails when ctx
// is done or the dispatcher is closed; f then never runs.
func (d *dispatcher) submit(ctx context.Context, key string, f func()) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrPluginUnavailable
	}
	select {
	case d.queue(key) <- f:
		return nil
	default:
	}
	select {
	case d.queue(key) <- f:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dispatch: %w", ctx.Err())
	}
}

// trySubmit queues f if there is room; ErrOverloaded otherwise.
func (d *dispatcher) trySubmit(key string, f func()) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrPluginUnavailable
	}
	select {
	case d.queue(key) <- f:
		return nil
	default:
		return ErrOverloaded
	}
}

// close runs what is queued, then stops the workers. It waits for them.
func (d *dispatcher) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.quit)
	d.wg.Wait()
}

// safely runs f, turning a panic into an error (with the stack logged), so a
// bug in one handler does not take down every socket of the plugin.
func safely(logger interface {
	Error(msg string, args ...any)
}, what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if logger != nil {
				logger.Error("plugin handler panicked", "handler", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
			err = fmt.Errorf("%s: panic: %v", what, r)
		}
	}()
	return f()
}
