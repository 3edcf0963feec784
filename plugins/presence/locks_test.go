package presence

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

func TestListLocks(t *testing.T) {
	t.Parallel()
	var ll listLocks
	ctx := context.Background()

	// Overlapping sets locked in different orders neither deadlock nor
	// let two holders of one list in at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	inside := map[string]int{}
	for i := range 8 {
		wg.Go(func() {
			ids := []string{"a", "b", "c"}
			if i%2 == 1 {
				ids = []string{"c", "b", "a", "c"}
			}
			for range 200 {
				unlock, err := ll.lock(ctx, ids...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, id := range []string{"a", "b", "c"} {
					if inside[id]++; inside[id] > 1 {
						t.Errorf("two holders of %s", id)
					}
				}
				mu.Unlock()
				mu.Lock()
				for _, id := range []string{"a", "b", "c"} {
					inside[id]--
				}
				mu.Unlock()
				unlock()
			}
		})
	}
	wg.Wait()
	if n := ll.size(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}

	// A waiter gives up when its context ends, leaving nothing locked.
	unlock, err := ll.lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ll.lock(cctx, "a", "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with a cancelled context = %v", err)
	}
	unlock()
	if n := ll.size(); n != 0 {
		t.Fatalf("%d lock entries left after a cancelled wait", n)
	}
	unlock, err = ll.lock(ctx, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

// TestRefreshTakesNoListLock: a refresh that changes nobody's presence does
// not wait for the list's lock (so a refresh round stays parallel), while one
// that finds the user missing enters the list under it.
func TestRefreshTakesNoListLock(t *testing.T) {
	t.Parallel()
	clk := newClock()
	h := miniredisBackend().newHost(t)
	p := startPlugin(t, h, clk, nil)
	connect(t, p, alice1)
	event(t, p, alice1, EvEnterPage, roomPath)
	score := func() string {
		v, err := sdk.String(h.Store().Do(context.Background(), "ZSCORE", SocketsKey, alice1.ID))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := score()

	unlock, err := p.order.lock(context.Background(), roomList)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	p.refreshAll(context.Background())
	if after := score(); after == before {
		t.Fatalf("refresh behind a held list lock did not push the deadline (%s)", after)
	}

	// The user is gone from the list (as after a flush): the refresh must
	// wait for the lock to re-enter it.
	if _, err := h.Store().Do(context.Background(), "DEL", ListKeyPrefix+roomList); err != nil {
		t.Fatal(err)
	}
	h.Reset()
	done := make(chan struct{})
	go func() { p.refreshAll(context.Background()); close(done) }()
	select {
	case <-done:
		t.Fatal("refresh re-entered the list without its lock")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	<-done
	wantDeltas(t, h, EvEntered, Delta{roomList, "alice"})
	wantMembers(t, h, roomList, "alice")
	if n := p.order.size(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}
