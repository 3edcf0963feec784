package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis channel names used for cross-instance delivery.
const (
	roomChannelPrefix     = "rt:room:"
	instanceChannelPrefix = "rt:inst:"
)

// RedisRemote is the Remote over Redis pub/sub. Room frames are published as
// "<origin instance>|<frame>"; instance messages as JSON InstanceMessage.
// Publishes are queued and pipelined by one goroutine, so they keep their
// order and an emit never waits for a Redis round trip.
type RedisRemote struct {
	client   redis.UniversalClient
	instance string
	hub      *Hub
	log      *slog.Logger

	ps *redis.PubSub

	mu      sync.Mutex
	waiters map[string][]chan struct{} // channel -> waiting Subscribe calls

	out     chan outMsg
	dropped func() // called when the publish queue is full
	done    chan struct{}
	wg      sync.WaitGroup
}

type outMsg struct {
	channel string
	payload []byte
}

// NewRedisRemote subscribes to this instance's channel and starts the
// receive and publish loops. Call Close to stop them.
func NewRedisRemote(ctx context.Context, client redis.UniversalClient, h *Hub, logger *slog.Logger) (*RedisRemote, error) {
	if logger == nil {
		logger = slog.Default()
	}
	r := &RedisRemote{
		client:   client,
		instance: h.InstanceID(),
		hub:      h,
		log:      logger,
		waiters:  make(map[string][]chan struct{}),
		out:      make(chan outMsg, 65536),
		dropped:  func() {},
		done:     make(chan struct{}),
	}
	r.ps = client.Subscribe(ctx)
	ch := r.ps.ChannelWithSubscriptions(redis.WithChannelSize(8192), redis.WithChannelSendTimeout(time.Second))
	r.wg.Add(2)
	go r.receive(ch)
	go r.publishLoop()
	if err := r.subscribe(ctx, instanceChannelPrefix+r.instance); err != nil {
		// Redis may be down at start; go-redis resubscribes when it is back.
		r.log.Warn("hub: instance channel not subscribed yet", "err", err)
	}
	return r, nil
}

// OnDrop sets a callback for publishes dropped because the queue was full.
func (r *RedisRemote) OnDrop(f func()) { r.dropped = f }

func (r *RedisRemote) subscribe(ctx context.Context, channel string) error {
	w := make(chan struct{})
	r.mu.Lock()
	r.waiters[channel] = append(r.waiters[channel], w)
	r.mu.Unlock()
	if err := r.ps.Subscribe(ctx, channel); err != nil {
		r.dropWaiter(channel, w)
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		r.dropWaiter(channel, w)
		return fmt.Errorf("waiting for Redis to confirm SUBSCRIBE %s: %w", channel, ctx.Err())
	}
}

func (r *RedisRemote) dropWaiter(channel string, w chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.waiters[channel]
	for i, x := range ws {
		if x == w {
			r.waiters[channel] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(r.waiters[channel]) == 0 {
		delete(r.waiters, channel)
	}
}

// Subscribe implements Remote.
func (r *RedisRemote) Subscribe(ctx context.Context, room string) error {
	return r.subscribe(ctx, roomChannelPrefix+room)
}

// Unsubscribe implements Remote.
func (r *RedisRemote) Unsubscribe(ctx context.Context, room string) error {
	return r.ps.Unsubscribe(ctx, roomChannelPrefix+room)
}

// PublishRoom implements Remote.
func (r *RedisRemote) PublishRoom(_ context.Context, room string, frame []byte) error {
	p := make([]byte, 0, len(r.instance)+1+len(frame))
	p = append(p, r.instance...)
	p = append(p, '|')
	p = append(p, frame...)
	return r.enqueue(roomChannelPrefix+room, p)
}

// PublishInstance implements Remote.
func (r *RedisRemote) PublishInstance(_ context.Context, instance string, m InstanceMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return r.enqueue(instanceChannelPrefix+instance, b)
}

// ErrPublishQueueFull is returned when Redis can't keep up with emits.
var ErrPublishQueueFull = errors.New("hub: cross-instance publish queue full")

func (r *RedisRemote) enqueue(channel string, payload []byte) error {
	select {
	case r.out <- outMsg{channel, payload}:
		return nil
	case <-r.done:
		return errors.New("hub: remote closed")
	default:
		r.dropped()
		return ErrPublishQueueFull
	}
}

func (r *RedisRemote) publishLoop() {
	defer r.wg.Done()
	batch := make([]outMsg, 0, 256)
	for {
		select {
		case <-r.done:
			// Flush what was queued before Close.
			batch = batch[:0]
			for {
				select {
				case m := <-r.out:
					batch = append(batch, m)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				r.flush(batch)
			}
			return
		case m := <-r.out:
			batch = append(batch[:0], m)
		more:
			for len(batch) < cap(batch) {
				select {
				case m := <-r.out:
					batch = append(batch, m)
				default:
					break more
				}
			}
			r.flush(batch)
		}
	}
}

func (r *RedisRemote) flush(batch []outMsg) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var err error
	if len(batch) == 1 {
		err = r.client.Publish(ctx, batch[0].channel, batch[0].payload).Err()
	} else {
		_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, m := range batch {
				p.Publish(ctx, m.channel, m.payload)
			}
			return nil
		})
	}
	if err != nil {
		r.log.Warn("hub: cross-instance publish failed; other instances miss these emits", "count", len(batch), "err", err)
	}
}

func (r *RedisRemote) receive(ch <-chan any) {
	defer r.wg.Done()
	ctx := context.Background()
	for v := range ch {
		switch m := v.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			r.mu.Lock()
			ws := r.waiters[m.Channel]
			delete(r.waiters, m.Channel)
			r.mu.Unlock()
			for _, w := range ws {
				close(w)
			}
		case *redis.Message:
			r.handle(ctx, m)
		}
	}
}

func (r *RedisRemote) handle(ctx context.Context, m *redis.Message) {
	switch {
	case len(m.Channel) > len(roomChannelPrefix) && m.Channel[:len(roomChannelPrefix)] == roomChannelPrefix:
		room := m.Channel[len(roomChannelPrefix):]
		payload := []byte(m.Payload)
		i := bytes.IndexByte(payload, '|')
		if i < 0 {
			r.log.Warn("hub: malformed room message", "channel", m.Channel)
			return
		}
		if string(payload[:i]) == r.instance {
			return // our own publish; delivered locally already
		}
		r.hub.DeliverLocal(room, payload[i+1:])
	case m.Channel == instanceChannelPrefix+r.instance:
		var im InstanceMessage
		if err := json.Unmarshal([]byte(m.Payload), &im); err != nil {
			r.log.Warn("hub: malformed instance message", "err", err)
			return
		}
		if im.Op == "emit" {
			r.hub.HandleInstanceMessage(ctx, im)
			return
		}
		// Room changes may SUBSCRIBE, whose confirmation this very goroutine
		// must read: apply them off the receive loop.
		go r.hub.HandleInstanceMessage(ctx, im)
	}
}

// Close stops the loops and the subscription.
func (r *RedisRemote) Close() error {
	select {
	case <-r.done:
		return nil
	default:
	}
	close(r.done)
	err := r.ps.Close()
	r.wg.Wait()
	return err
}
