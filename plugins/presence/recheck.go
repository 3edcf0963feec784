package presence

import (
	"context"
	"time"
)

// Rechecks close the gap RELIABILITY.md finding 6 left across instances.
// One instance emits a list's deltas in Redis's order (locks.go), but a
// delta reaches the observers of its own instance directly and those of the
// others through Redis pub/sub, so instance A's "left" and instance B's
// "entered" of one user on one page, made back to back, can reach B's
// observers swapped, and their view of that user stays wrong.
//
// So every script that sends a delta marks it in Redis
// (PresenceDelta:<listId>:<userId> = the sending host instance's id, for
// Config.RecheckMark), and a transition that finds the previous delta marked
// by another instance schedules a recheck: Config.Recheck later (more than
// the pub/sub latency), under the list's lock, the plugin reads whether the
// user is on the page (marking again, since this re-send races like a
// delta) and sends "entered" or "left" to the page's observers, who then
// agree with Redis. The browser client keeps a Set per page, so a repeated
// delta changes nothing there. Several transitions of one (list, user)
// within the delay make one recheck, after the last of them.

// recheckKey is one user on one list.
type recheckKey struct{ list, user string }

// scheduleRecheck (re)arms the recheck of the user on each list, unless
// rechecks are off or the plugin is stopping.
func (p *Plugin) scheduleRecheck(userID string, lists []string) {
	if len(lists) == 0 || p.cfg.Recheck <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil {
		return
	}
	if p.rechecks == nil {
		p.rechecks = map[recheckKey]*time.Timer{}
	}
	for _, l := range lists {
		k := recheckKey{list: l, user: userID}
		if t := p.rechecks[k]; t != nil {
			t.Reset(p.cfg.Recheck)
			continue
		}
		p.rechecks[k] = time.AfterFunc(p.cfg.Recheck, func() { p.recheck(k) })
	}
}

// recheck re-sends the user's current state on the list to its observers.
func (p *Plugin) recheck(k recheckKey) {
	p.mu.Lock()
	delete(p.rechecks, k)
	ctx := p.bgCtx
	if p.cancel == nil || ctx == nil {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1) // under p.mu while started: Stop's Wait comes after
	p.mu.Unlock()
	defer p.wg.Done()

	ctx, cancel := context.WithTimeout(ctx, bgOpTimeout)
	defer cancel()
	unlock, err := p.order.lock(ctx, k.list)
	if err != nil {
		return // stopping, or the list is stuck behind a Redis that hangs
	}
	on, err := p.present(ctx, k.list, k.user)
	event := EvLeft
	if on {
		event = EvEntered
	}
	var emitErr error
	if err == nil {
		emitErr = p.emitDeltas(ctx, event, k.user, []string{k.list})
	}
	unlock()
	if err != nil {
		p.log.Warn("presence recheck failed", "listId", k.list, "userId", k.user, "err", err)
		return
	}
	p.logEmitErr(event, k.user, emitErr)
	p.log.Debug("presence recheck", "listId", k.list, "userId", k.user, "event", event)
}

// stopRechecks cancels the pending rechecks; the caller holds p.mu.
func (p *Plugin) stopRechecks() {
	for k, t := range p.rechecks {
		t.Stop()
		delete(p.rechecks, k)
	}
}
