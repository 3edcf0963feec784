package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/push"
	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register("chat", func() sdk.Plugin { return New() })
}

// Socket.IO event names the plugin handles.
const (
	EventSubscribe               = "chat.subscribe"
	EventUnsubscribe             = "chat.unsubscribe"
	EventMessagesSend            = "chat.messages.send"
	EventReactionsSend           = "chat.reactions.send"
	EventSubscriptionsChangedOn  = "chat.subscriptions.changed.on"
	EventSubscriptionsChangedOff = "chat.subscriptions.changed.off"
	EventPinsChangedOn           = "chat.pins.changed.on"
	EventPinsChangedOff          = "chat.pins.changed.off"
	EventUnreadCountRequest      = "chat.unreadCount.request"
	EventUnreadCountSetReadUpTo  = "chat.unreadCount.setReadUpTo"
)

// Bus exchanges and queues.
const (
	ExchangeMessages           = "chat.messages"
	ExchangeReactions          = "chat.reactions"
	QueueMessagesDistribution  = "chat.messages.distribution.{instance}"
	QueueReactionsDistribution = "chat.reactions.distribution.{instance}"
	QueueMessagesWriteback     = "chat.messages.writeback"
	QueueReactionsWriteback    = "chat.reactions.writeback"
)

// Webhook routes.
const (
	RouteSubscriptionChanged = "/chat/subscriptionChanged"
	RoutePinChanged          = "/chat/pinChanged"
	RouteFlagInserted        = "/chat/flag/inserted"
)

// Bounds and timings that are not configurable.
const (
	// publishTimeout bounds one Publish (the host has its own timeout too).
	publishTimeout = 10 * time.Second
	// followUpTimeout bounds one delayed unread-count/notification run.
	followUpTimeout = 30 * time.Second
	// maxPendingFollowUps bounds the delayed runs in flight per instance;
	// beyond it, follow-ups are skipped with a warning.
	maxPendingFollowUps = 4096
	// maxFanout bounds the registrants one message's follow-up resolves.
	maxFanout = 10000
	// socketKeyTTL is the TTL of chat:socket.<id>.chats; live instances
	// refresh it every socketKeyRefresh, so a crashed instance's keys go away.
	socketKeyTTL     = 10 * time.Minute
	socketKeyRefresh = 3 * time.Minute
	// listenersTTL is the TTL of chat:chat.<chatId>.listeners, refreshed on
	// subscribe and by the refresh loop.
	listenersTTL = time.Hour
	// readUpToTTL is the TTL of a read-up-to index, refreshed on every write.
	readUpToTTL = 30 * 24 * time.Hour
	// maxWebhookBody is body-parser's default limit (100 kB).
	maxWebhookBody = 100 << 10
)

// Plugin is the chat plugin. Create it with New.
type Plugin struct {
	sdk.Base

	host sdk.Host
	log  *slog.Logger
	cfg  Config
	now  func() time.Time
	// httpClient is used by the writeback (settable before Start in tests).
	httpClient *http.Client

	mu       sync.Mutex
	limiters map[string]*rate.Limiter       // socket id -> send limiter
	local    map[string]map[string]struct{} // local socket id -> chats it subscribed
	started  bool
	stopped  bool

	ctx     context.Context // canceled by Stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the refresh loop
	tasks   sync.WaitGroup // delayed follow-ups
	pending chan struct{}  // semaphore of follow-ups
	// retryBackoff is the writeback's pause before a requeue.
	retryBackoff time.Duration
	// seen drops distribution messages redelivered after a reconnect.
	seen *recent
	// after runs the bookkeeping of acked sends in the background (send.go).
	after afterRuns
	// rutRefused records read-up-to entries Hasura refused once (entry ->
	// messageSId; readupto.go).
	rutRefused map[string]string
}

// distributionQueueExpiry is how long a per-instance distribution queue
// outlives its last consumer (a dead instance's queue goes away after it).
const distributionQueueExpiry = 5 * time.Minute

var (
	_ sdk.Plugin               = (*Plugin)(nil)
	_ sdk.BatchDeliveryHandler = (*Plugin)(nil)
)

// New returns a chat plugin.
func New() *Plugin {
	return &Plugin{
		now:      time.Now,
		limiters: map[string]*rate.Limiter{},
		local:    map[string]map[string]struct{}{},
		pending:  make(chan struct{}, maxPendingFollowUps),
		seen:     newRecent(20000),
		after:    newAfterRuns(),

		retryBackoff: defaultRetryBackoff,
	}
}

// Describe declares the plugin's events, routes, exchanges and queues. The
// writeback queues are declared only when the plugin was started with
// writeback enabled (see the package doc).
func (p *Plugin) Describe() sdk.Descriptor {
	d := sdk.Descriptor{
		Name:    "chat",
		Version: "1.0.0",
		Events: []string{
			EventSubscribe, EventUnsubscribe, EventMessagesSend, EventReactionsSend,
			EventSubscriptionsChangedOn, EventSubscriptionsChangedOff,
			EventPinsChangedOn, EventPinsChangedOff,
			EventUnreadCountRequest, EventUnreadCountSetReadUpTo,
		},
		// OnConnect only reloads the chats Redis holds for the socket: a new
		// socket has none (chat.subscribe tracks it), a socket replayed
		// after a restart does. OnDisconnect reads them from Redis.
		SkipConnect: true,
		Routes: []sdk.Route{
			{Method: http.MethodPost, Path: RouteSubscriptionChanged},
			{Method: http.MethodPost, Path: RoutePinChanged},
			{Method: http.MethodPost, Path: RouteFlagInserted},
		},
		Exchanges: []sdk.Exchange{
			{Name: ExchangeMessages, Kind: "topic", Durable: true},
			{Name: ExchangeReactions, Kind: "topic", Durable: true},
		},
		Queues: []sdk.Queue{
			// Durable, not exclusive or auto-delete: they must outlive a
			// dropped connection and a broker restart (what was confirmed
			// to a sender waits in them, persisted); they expire once their
			// instance is gone.
			{Name: QueueMessagesDistribution, Exchange: ExchangeMessages, Bindings: []string{"*"}, Durable: true, Prefetch: 100, ExpiresMs: distributionQueueExpiry.Milliseconds()},
			{Name: QueueReactionsDistribution, Exchange: ExchangeReactions, Bindings: []string{"*"}, Durable: true, Prefetch: 100, ExpiresMs: distributionQueueExpiry.Milliseconds()},
		},
	}
	p.mu.Lock()
	wb, wp := p.cfg.Writeback, p.cfg.WebPush
	batchMax, batchWait := p.cfg.WritebackBatchMax, p.cfg.WritebackBatchWait.D
	p.mu.Unlock()
	if wp {
		d.Exchanges = append(d.Exchanges, push.Exchange())
	}
	if wb {
		// Batched (OnDeliveries): one GraphQL request per batch. The
		// prefetch must hold a whole batch.
		prefetch := max(100, batchMax)
		d.Queues = append(d.Queues,
			sdk.Queue{Name: QueueMessagesWriteback, Exchange: ExchangeMessages, Bindings: []string{"*"}, Durable: true, Prefetch: prefetch, BatchMax: batchMax, BatchWait: batchWait},
			sdk.Queue{Name: QueueReactionsWriteback, Exchange: ExchangeReactions, Bindings: []string{"*"}, Durable: true, Prefetch: prefetch, BatchMax: batchMax, BatchWait: batchWait},
		)
	}
	return d
}

// Start validates the config and starts the key-refresh loop.
func (p *Plugin) Start(_ context.Context, host sdk.Host, raw json.RawMessage) error {
	if host == nil {
		return errors.New("chat: start: nil host")
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("chat: started twice")
	}
	p.started = true
	p.host = host
	p.cfg = cfg
	p.log = host.Logger()
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{Timeout: 15 * time.Second}
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.refreshLoop()
	if cfg.GraphQLURL != "" {
		// Hasura mode: write the read-up-to indices back (readupto.go).
		p.wg.Add(1)
		go p.readUpToLoop(cfg.ReadUpToWritebackInterval.D)
	}
	return nil
}

// Stop cancels pending follow-ups and waits for them (bounded by ctx).
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.started || p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.cancel()
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); p.tasks.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("chat: stop: %w", ctx.Err())
	}
}

// OnEvent dispatches one client event. Failures are logged (and nacked for
// chat.messages.send); no client ack callback is ever answered, as the
// original.
func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	switch e.Name {
	case EventSubscribe:
		p.subscribe(ctx, e)
	case EventUnsubscribe:
		p.unsubscribe(ctx, e)
	case EventMessagesSend:
		p.send(ctx, e, kindMessage)
	case EventReactionsSend:
		p.send(ctx, e, kindReaction)
	case EventSubscriptionsChangedOn:
		p.registrantRoom(ctx, e, "chat:chat.subscriptions.", true)
	case EventSubscriptionsChangedOff:
		p.registrantRoom(ctx, e, "chat:chat.subscriptions.", false)
	case EventPinsChangedOn:
		p.registrantRoom(ctx, e, "chat:chat.pins.", true)
	case EventPinsChangedOff:
		p.registrantRoom(ctx, e, "chat:chat.pins.", false)
	case EventUnreadCountRequest:
		p.unreadRequest(ctx, e)
	case EventUnreadCountSetReadUpTo:
		p.setReadUpToEvent(ctx, e)
	default:
		return nil, fmt.Errorf("chat: unexpected event %q", e.Name)
	}
	return nil, nil
}

// schedule runs f after the notify delay in its own goroutine, bounded by
// maxPendingFollowUps and canceled by Stop.
func (p *Plugin) schedule(what string, f func(ctx context.Context)) {
	p.mu.Lock()
	if p.stopped || !p.started {
		p.mu.Unlock()
		return
	}
	select {
	case p.pending <- struct{}{}:
	default:
		p.mu.Unlock()
		p.log.Warn("chat: too many pending follow-ups; skipped", "what", what, "limit", maxPendingFollowUps)
		return
	}
	p.tasks.Add(1)
	delay := p.cfg.NotifyDelay.D
	base := p.ctx
	p.mu.Unlock()
	go func() {
		defer p.tasks.Done()
		defer func() { <-p.pending }()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-base.Done():
				t.Stop()
				return
			}
		}
		ctx, cancel := context.WithTimeout(base, followUpTimeout)
		defer cancel()
		f(ctx)
	}()
}

// allowSend takes one token of the socket's send limiter.
func (p *Plugin) allowSend(socketID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.limiters[socketID]
	if !ok {
		l = rate.NewLimiter(rate.Limit(p.cfg.SendsPerSecond), p.cfg.SendBurst)
		p.limiters[socketID] = l
	}
	return l.AllowN(p.now(), 1)
}

// argString returns args[i] when it is a non-empty JSON string (the
// original's is<string> plus truthiness guard).
func argString(args []json.RawMessage, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	s, ok := kit.JSONString(args[i])
	return s, ok && s != ""
}
