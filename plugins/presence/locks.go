package presence

import (
	"context"
	"slices"
	"sync"
)

// listLocks serialises, per list, a script that can change who is on the
// list and the emit of the deltas it returned, so this instance emits each
// list's deltas in the order Redis applied them (RELIABILITY.md finding 6).
// Lists are locked one by one, never all at once, so unrelated lists do not
// wait on each other.
type listLocks struct {
	mu sync.Mutex
	m  map[string]*listLock
}

// listLock is one list's lock: a one-slot channel, so a waiter can give up
// when its context ends (a Redis that hangs must not pile up goroutines).
type listLock struct {
	ch   chan struct{}
	refs int // holders and waiters; the entry is dropped at 0
}

// lock locks every list of ids, in sorted order so that two callers locking
// several lists cannot deadlock, and returns the function that unlocks them.
// It fails only when ctx ends first (then nothing stays locked).
func (ll *listLocks) lock(ctx context.Context, ids ...string) (unlock func(), err error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	ll.mu.Lock()
	if ll.m == nil {
		ll.m = map[string]*listLock{}
	}
	locks := make([]*listLock, len(ids))
	for i, id := range ids {
		l := ll.m[id]
		if l == nil {
			l = &listLock{ch: make(chan struct{}, 1)}
			ll.m[id] = l
		}
		l.refs++
		locks[i] = l
	}
	ll.mu.Unlock()
	release := func(held int) {
		for _, l := range locks[:held] {
			<-l.ch
		}
		ll.mu.Lock()
		for i, l := range locks {
			if l.refs--; l.refs == 0 {
				delete(ll.m, ids[i])
			}
		}
		ll.mu.Unlock()
	}
	for i, l := range locks {
		select {
		case l.ch <- struct{}{}:
		case <-ctx.Done():
			release(i)
			return nil, ctx.Err()
		}
	}
	return func() { release(len(locks)) }, nil
}

// size is the number of lists locked or waited for (tests).
func (ll *listLocks) size() int {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	return len(ll.m)
}
