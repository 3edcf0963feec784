package presence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// TestDeltaOrder is RELIABILITY.md finding 6: on one instance the removal of
// a user's old socket (-> "left"), by the sweeper (the socket's instance
// died) or by its disconnect, races an enter of the same user's new socket
// (-> "entered") on the same page. Whatever order Redis ran the two scripts
// in, the last delta the page's observers got must match who is on the page
// afterwards. Emits are delayed at random so that, without the per-list
// serialisation, they swap often.
func TestDeltaOrder(t *testing.T) {
	for _, b := range []backend{miniredisBackend(), realRedisBackend()} {
		for _, sweep := range []bool{true, false} {
			name := b.name + "/disconnect"
			if sweep {
				name = b.name + "/sweep"
			}
			t.Run(name, func(t *testing.T) { testDeltaOrder(t, b, sweep) })
		}
	}
}

func testDeltaOrder(t *testing.T, b backend, sweep bool) {
	const iterations = 200
	clk := newClock()
	h := b.newHost(t)
	dead := peer(t, h) // the instance that died, leaving expired sockets
	pDead := startPlugin(t, dead, clk, nil)
	p := startPlugin(t, h, clk, nil)
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	h.emitDelay = func() {
		rmu.Lock()
		d := time.Duration(rng.IntN(300)) * time.Microsecond
		rmu.Unlock()
		time.Sleep(d)
	}
	ctx := context.Background()
	both := 0
	for i := range iterations {
		user := fmt.Sprintf("u%d", i)
		old := sdktest.Socket("old-"+user, user, "c1")
		live := sdktest.Socket("live-"+user, user, "c1")
		if sweep {
			connect(t, pDead, old)
			event(t, pDead, old, EvEnterPage, roomPath)
			clk.Advance(46 * time.Second) // old's deadline has passed
		} else {
			connect(t, p, old)
			event(t, p, old, EvEnterPage, roomPath)
		}
		h.Reset()

		var wg sync.WaitGroup
		wg.Go(func() {
			if sweep {
				p.sweep(ctx)
			} else {
				disconnect(t, p, old)
			}
		})
		wg.Go(func() {
			rmu.Lock()
			d := time.Duration(rng.IntN(400)) * time.Microsecond
			rmu.Unlock()
			time.Sleep(d)
			event(t, p, live, EvEnterPage, roomPath)
		})
		wg.Wait()

		ds := h.deltas(t, EvEntered)
		lefts := h.deltas(t, EvLeft)
		var got []string
		for _, e := range h.Emits() {
			got = append(got, e.Event)
		}
		present := len(smembers(t, h.Store(), ListKeyPrefix+roomList)) == 1
		if !present {
			t.Fatalf("iteration %d: %s not on the page after entering", i, user)
		}
		switch {
		case len(ds) == 0 && len(lefts) == 0:
			// enter ran first: no transition at all.
		case len(ds) == 1 && len(lefts) == 1:
			both++
			if got[len(got)-1] != EvEntered {
				t.Fatalf("iteration %d: observers got %v, but %s is present", i, got, user)
			}
		default:
			t.Fatalf("iteration %d: entered %v, left %v", i, ds, lefts)
		}
		disconnect(t, p, live)
		h.Reset()
	}
	t.Logf("%d of %d iterations had both deltas", both, iterations)
	if both == 0 {
		t.Fatal("the race never produced both deltas; the test checks nothing")
	}
}
