package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Handler handles one delivery. Returning nil acks it; an error nacks it with
// requeue, unless the error wraps sdk.ErrDrop, which nacks it without requeue
// (the message is discarded). A panicking handler is recovered, logged and its
// delivery is dropped, so that one poison message cannot loop forever.
type Handler func(ctx context.Context, d sdk.Delivery) error

// AsyncHandler starts handling one delivery and calls settle exactly once,
// from any goroutine, with what a Handler would return (a panic before settle
// drops the delivery). The consumer passes the next delivery as soon as
// AsyncHandler returns, so deliveries start in queue order and up to the
// queue's prefetch are in flight at once: what a consumer that batches needs
// (the chat writeback). A settle after the consumer stopped or its channel
// closed is harmless: the broker redelivers what was not acked.
type AsyncHandler func(ctx context.Context, d sdk.Delivery, settle func(error))

// Bus is a message bus with AMQP exchange/queue/binding semantics. All methods
// are safe for concurrent use.
type Bus interface {
	// DeclareExchange declares an exchange (idempotent). Kind is "topic"
	// (default when empty), "direct" or "fanout". Redeclaring a name with a
	// different kind or durability is an error. A RabbitMQ bus that is not
	// connected records the exchange, returns nil and declares it once
	// connected; declared exchanges are redeclared after every reconnect.
	DeclareExchange(ctx context.Context, ex sdk.Exchange) error
	// Publish sends a persistent message and returns only once the broker
	// confirmed it (publisher confirms), or with an error: broker nack,
	// timeout (config PublishTimeout, or ctx), ErrNoExchange, ErrNotConnected
	// when the connection is down, ErrConnectionLost when it dropped while the
	// message was in flight (the message may or may not have been routed; the
	// caller must treat it as failed). A nil error is never returned for an
	// unconfirmed message. Safe and fast for many concurrent callers.
	Publish(ctx context.Context, exchange, routingKey string, body []byte) error
	// Consume declares q (with "{instance}" in its name replaced by the
	// instance id), binds it to q.Exchange with each of q.Bindings (an empty
	// list binds once with the empty key, which is what fanout needs), and
	// delivers its messages to h with prefetch q.Prefetch (default 50).
	//
	// Deliveries of one Consume call are handled by ONE goroutine, in queue
	// order (chat distribution relies on per-chat order); call Consume several
	// times on the same queue for competing consumers. Delivery is
	// at-least-once: after a reconnect, unacked deliveries come back with
	// Redelivered set, so handlers must be idempotent.
	//
	// The returned stop func stops consuming, waits for the in-flight handler
	// and returns prefetched, unhandled deliveries to the queue. It is
	// idempotent. Handlers get a context that is canceled when the bus closes.
	Consume(ctx context.Context, q sdk.Queue, h Handler) (stop func(), err error)
	// ConsumeAsync is Consume with an AsyncHandler: deliveries start one at a
	// time in queue order, but the next starts without waiting for the
	// previous one's settle, up to q.Prefetch unsettled. stop does not wait
	// for unsettled deliveries (they are redelivered unless settled).
	ConsumeAsync(ctx context.Context, q sdk.Queue, h AsyncHandler) (stop func(), err error)
	// Ready returns nil when the bus is connected (memory: always, until Close).
	Ready() error
	// Kind is "rabbitmq" or "memory".
	Kind() string
	// Close stops all consumers (waiting for their in-flight handlers, whose
	// context is canceled), fails in-flight publishes and closes connections.
	// It is idempotent.
	Close() error
}

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("bus: closed")
	// ErrNotConnected is returned by Publish while the broker connection is down.
	ErrNotConnected = errors.New("bus: not connected to the broker")
	// ErrConnectionLost is returned by Publish when the connection dropped
	// before the broker confirmed the message.
	ErrConnectionLost = errors.New("bus: connection lost before the broker confirmed")
	// ErrNacked is returned by Publish when the broker refused the message.
	ErrNacked = errors.New("bus: broker nacked the message")
	// ErrNoExchange is returned when publishing to, or binding to, an
	// exchange that does not exist.
	ErrNoExchange = errors.New("bus: no such exchange")
	// ErrQueueFull is returned by the memory bus when a target queue holds
	// its maximum number of ready messages.
	ErrQueueFull = errors.New("bus: queue full")
	// ErrInvalid is returned for an invalid exchange or queue definition.
	ErrInvalid = errors.New("bus: invalid argument")
	// ErrInequivalent is returned when an exchange or queue is redeclared
	// with different properties.
	ErrInequivalent = errors.New("bus: redeclared with different properties")
)

// Defaults.
const (
	// DefaultPrefetch is the prefetch used when sdk.Queue.Prefetch is 0.
	DefaultPrefetch = 50
	// DefaultPublishTimeout bounds Publish when config PublishTimeout is 0.
	DefaultPublishTimeout = 5 * time.Second
	// DefaultMaxQueueLength is the memory bus's per-queue bound on ready messages.
	DefaultMaxQueueLength = 100_000
	// instancePlaceholder in a queue name is replaced by the instance id.
	instancePlaceholder = "{instance}"
	// requeueDelay pauses a consumer after a requeue so a failing handler
	// does not spin on the same message.
	requeueDelay = 50 * time.Millisecond
)

// ResolveURL returns the AMQP URL that cfg selects, or "" for the in-memory
// bus: cfg.URL (env CLOUDAMQP_URL) when set; else, when cfg.Username is set,
// amqp://Username[:Password]@Host:Port/ with the credentials escaped (Host
// defaults to localhost and Port to 5672, as in the original service).
func ResolveURL(cfg config.BusConfig) string {
	if cfg.URL != "" {
		return cfg.URL
	}
	if cfg.Username == "" {
		return ""
	}
	host := cfg.Host
	if host == "" {
		host = "localhost"
	}
	port := cfg.PortNum
	if port == 0 {
		port = 5672
	}
	u := url.URL{Scheme: "amqp", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/"}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.Username, cfg.Password)
	} else {
		u.User = url.User(cfg.Username)
	}
	return u.String()
}

// RedactURL returns u with any password replaced, for logs.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable amqp url>"
	}
	return p.Redacted()
}

// New returns the bus cfg selects (see ResolveURL): RabbitMQ when a URL
// resolves, else the in-memory bus. "{instance}" in queue names is replaced
// by instanceID. A RabbitMQ bus does not fail when the broker is down.
func New(ctx context.Context, cfg config.BusConfig, instanceID string, logger *slog.Logger) (Bus, error) {
	u := ResolveURL(cfg)
	if u == "" {
		return newMemory(logger, instanceID, DefaultMaxQueueLength), nil
	}
	return NewRabbit(ctx, u, cfg, instanceID, logger)
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// normalizeExchange validates ex and fills the default kind.
func normalizeExchange(ex sdk.Exchange) (sdk.Exchange, error) {
	if ex.Name == "" {
		return ex, fmt.Errorf("%w: exchange name is empty", ErrInvalid)
	}
	switch ex.Kind {
	case "":
		ex.Kind = "topic"
	case "topic", "direct", "fanout":
	default:
		return ex, fmt.Errorf("%w: exchange %q: kind %q (want topic, direct or fanout)", ErrInvalid, ex.Name, ex.Kind)
	}
	return ex, nil
}

// normalizeQueue validates q, substitutes the instance id and fills defaults.
func normalizeQueue(q sdk.Queue, instanceID string) (sdk.Queue, error) {
	q.Name = strings.ReplaceAll(q.Name, instancePlaceholder, instanceID)
	if q.Name == "" {
		return q, fmt.Errorf("%w: queue name is empty", ErrInvalid)
	}
	if q.Prefetch < 0 || q.Prefetch > 65535 {
		return q, fmt.Errorf("%w: queue %q: prefetch %d out of range 0..65535", ErrInvalid, q.Name, q.Prefetch)
	}
	if q.Prefetch == 0 {
		q.Prefetch = DefaultPrefetch
	}
	if q.Exchange == "" && len(q.Bindings) > 0 {
		return q, fmt.Errorf("%w: queue %q has bindings but no exchange", ErrInvalid, q.Name)
	}
	if q.Exchange != "" && len(q.Bindings) == 0 {
		q.Bindings = []string{""}
	}
	q.Bindings = append([]string(nil), q.Bindings...)
	return q, nil
}

// outcome is what happens to a delivery after its handler ran.
type outcome string

const (
	outcomeAck     outcome = "ack"
	outcomeRequeue outcome = "requeue"
	outcomeDrop    outcome = "drop"
)

// syncHandler runs h to completion inside the AsyncHandler call, so a
// consumer loop that calls it handles one delivery at a time.
func syncHandler(h Handler) AsyncHandler {
	return func(ctx context.Context, d sdk.Delivery, settle func(error)) { settle(h(ctx, d)) }
}

// runAsync starts h on d; settle gets the outcome exactly once (drop if h
// panics before settling).
func runAsync(ctx context.Context, log *slog.Logger, h AsyncHandler, d sdk.Delivery, settle func(outcome)) {
	var once sync.Once
	defer func() {
		if r := recover(); r != nil {
			log.Error("bus: handler panicked; dropping the delivery", "queue", d.Queue, "routing_key", d.RoutingKey, "panic", r)
			once.Do(func() { settle(outcomeDrop) })
		}
	}()
	h(ctx, d, func(err error) {
		once.Do(func() { settle(classifyResult(log, d, err)) })
	})
}

// classifyResult maps a handler's error to what happens to its delivery.
func classifyResult(log *slog.Logger, d sdk.Delivery, err error) outcome {
	switch {
	case err == nil:
		return outcomeAck
	case errors.Is(err, sdk.ErrDrop):
		log.Debug("bus: handler dropped a delivery", "queue", d.Queue, "routing_key", d.RoutingKey, "err", err)
		return outcomeDrop
	default:
		log.Warn("bus: handler failed; requeueing", "queue", d.Queue, "routing_key", d.RoutingKey, "redelivered", d.Redelivered, "err", err)
		return outcomeRequeue
	}
}

// sleepCtx waits d or until one of the channels closes; it reports whether
// the full duration elapsed.
func sleepCtx(d time.Duration, stop ...<-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var s0, s1 <-chan struct{}
	if len(stop) > 0 {
		s0 = stop[0]
	}
	if len(stop) > 1 {
		s1 = stop[1]
	}
	select {
	case <-t.C:
		return true
	case <-s0:
	case <-s1:
	}
	return false
}

// topicMatch reports whether an AMQP topic pattern matches a routing key:
// words are separated by '.', '*' matches exactly one word and '#' zero or
// more words.
func topicMatch(pattern, key string) bool {
	return matchWords(strings.Split(pattern, "."), strings.Split(key, "."))
}

// matchWords is a dynamic programme over (pattern word, key word) positions,
// O(len(p)*len(k)), so hostile keys cannot make matching exponential.
func matchWords(p, k []string) bool {
	// cur[j] reports whether p[:i] matches k[:j].
	cur := make([]bool, len(k)+1)
	next := make([]bool, len(k)+1)
	cur[0] = true
	for i := range p {
		clear(next)
		switch p[i] {
		case "#":
			seen := false
			for j := 0; j <= len(k); j++ {
				seen = seen || cur[j]
				next[j] = seen
			}
		case "*":
			for j := 1; j <= len(k); j++ {
				next[j] = cur[j-1]
			}
		default:
			for j := 1; j <= len(k); j++ {
				next[j] = cur[j-1] && k[j-1] == p[i]
			}
		}
		cur, next = next, cur
	}
	return cur[len(k)]
}
