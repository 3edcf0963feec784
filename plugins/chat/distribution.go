package chat

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"

	"github.com/clowdr/realtime/plugins/sdk"
)

// eventSuffix maps an op to the broadcast event's suffix.
var eventSuffix = map[string]string{opInsert: "receive", opUpdate: "update", opDelete: "delete"}

// OnDelivery handles the distribution queues (emit to local room members) and,
// when enabled, the writeback queues.
func (p *Plugin) OnDelivery(ctx context.Context, d sdk.Delivery) error {
	switch {
	case strings.HasPrefix(d.Queue, "chat.messages.distribution"):
		return p.distribute(ctx, d, kindMessage)
	case strings.HasPrefix(d.Queue, "chat.reactions.distribution"):
		return p.distribute(ctx, d, kindReaction)
	case d.Queue == QueueMessagesWriteback && p.cfg.Writeback:
		return p.writeback(ctx, d, kindMessage)
	case d.Queue == QueueReactionsWriteback && p.cfg.Writeback:
		return p.writeback(ctx, d, kindReaction)
	}
	p.log.Error("chat: delivery from an unexpected queue dropped", "queue", d.Queue)
	return fmt.Errorf("chat: unexpected queue %q: %w", d.Queue, sdk.ErrDrop)
}

// distribute emits one published action to this instance's members of the
// chat's room (each instance consumes its own copy).
func (p *Plugin) distribute(ctx context.Context, d sdk.Delivery, k kind) error {
	a, err := parseAction(k, d.Body)
	if err != nil {
		p.log.Error("chat: invalid distribution message dropped", "queue", d.Queue, "err", err)
		return fmt.Errorf("chat: distribution: %w: %w", err, sdk.ErrDrop)
	}
	// The published data, byte for byte (parseAction checked it is an object).
	data := a.fields["data"]
	// After a reconnect the broker redelivers what was not acked yet; some
	// of it was emitted already. Skip what this process has distributed.
	key := d.Queue + "|" + a.Op + "|" + a.SID + "|" + string(data)
	if !p.seen.firstTime(key) {
		p.log.Debug("chat: redelivered message already distributed", "sId", a.SID)
		return nil
	}
	prefix := "chat.messages."
	if k == kindReaction {
		prefix = "chat.reactions."
	}
	if err := p.host.Emit(ctx, sdk.LocalRoomTarget(chatRoom(a.ChatID)), prefix+eventSuffix[a.Op], data); err != nil {
		// Requeueing would re-send to the members that already got it; the
		// original acked before processing too.
		p.log.Error("chat: distribution emit failed", "chat", a.ChatID, "sId", a.SID, "err", err)
	}
	return nil
}

// recent remembers the last n keys, to drop redelivered duplicates.
type recent struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

func newRecent(n int) *recent {
	return &recent{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// firstTime records key and reports whether it was not among the last n.
func (r *recent) firstTime(key string) bool {
	sum := sha256.Sum256([]byte(key))
	k := string(sum[:16])
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.set[k]; dup {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = k
	r.next = (r.next + 1) % len(r.ring)
	r.set[k] = struct{}{}
	return true
}
