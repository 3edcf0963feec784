package push

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register(Name, func() sdk.Plugin { return New() })
}

// HTTP routes the plugin serves (§8.3).
const (
	// RouteVAPIDPublicKey answers the Hasura action vapidPublicKey.
	RouteVAPIDPublicKey = "/vapid/publicKey"
	// RouteSubscriptionChanged is the Hasura event trigger on
	// PushNotificationSubscription.
	RouteSubscriptionChanged = "/pushNotificationSubscription/changed"
)

const (
	// maxWebhookBody mirrors body-parser's default 100 kB limit.
	maxWebhookBody = 100 << 10
	// sendTimeout bounds one request to a push service.
	sendTimeout = 10 * time.Second
	// maxSubscriptionsPerSend bounds the subscriptions one delivery sends to.
	maxSubscriptionsPerSend = 32
	// sendParallelism bounds the concurrent requests of one delivery.
	sendParallelism = 8
	// retryStateTTL is how long a message's retry bookkeeping is kept.
	retryStateTTL = time.Hour
	// maxEndpointBytes bounds a subscription endpoint URL.
	maxEndpointBytes = 2048
)

// Plugin is the push plugin. Safe for concurrent use after Start.
type Plugin struct {
	sdk.Base
	host       sdk.Host
	log        *slog.Logger
	cfg        Config
	subscriber string // VAPID subject in webpush-go's form
	client     webpushClient
	gqlClient  *http.Client // reaches graphql_url (settable before Start in tests)
	loads      flightGroup  // Hasura lookups in flight, by user

	keyMu sync.Mutex
	vapid *vapidKeys // nil until configured or loaded
}

// webpushClient sends a request to a push service (an *http.Client).
type webpushClient interface {
	Do(*http.Request) (*http.Response, error)
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns a push plugin.
func New() *Plugin { return &Plugin{} }

// Describe declares the routes, the notifications exchange and the shared
// push.notifications queue.
func (p *Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    Name,
		Version: "1.0.0",
		Routes: []sdk.Route{
			{Method: http.MethodPost, Path: RouteVAPIDPublicKey},
			{Method: http.MethodPost, Path: RouteSubscriptionChanged},
		},
		Exchanges: []sdk.Exchange{Exchange()},
		Queues: []sdk.Queue{{
			Name: QueueName, Exchange: ExchangeName, Bindings: []string{"#"},
			Durable: true, Prefetch: 16,
		}},
		// No OnConnect/OnDisconnect (sdk.Base's): spare every connect the calls.
		SkipConnect: true, SkipReplay: true, SkipDisconnect: true,
	}
}

// Start parses the config. Generated VAPID keys are loaded (or created) now
// if the Store answers, else on first use.
func (p *Plugin) Start(ctx context.Context, host sdk.Host, raw json.RawMessage) error {
	cfg, err := parseConfig(raw)
	if err != nil {
		return err
	}
	sub, err := librarySubscriber(cfg.VAPIDSubject)
	if err != nil {
		return fmt.Errorf("push config: key \"vapid_subject\": %w", err)
	}
	p.host, p.cfg, p.subscriber = host, cfg, sub
	p.log = host.Logger()
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.client == nil {
		p.client = &http.Client{
			Timeout: sendTimeout,
			// A push service answers; it does not redirect. Not following
			// redirects keeps the endpoint the only address we POST to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if p.gqlClient == nil {
		p.gqlClient = &http.Client{Timeout: hasuraTimeout}
	}
	if cfg.VAPIDPublicKey != "" {
		p.vapid = &vapidKeys{Public: cfg.VAPIDPublicKey, Private: cfg.VAPIDPrivateKey}
		return nil
	}
	if _, err := p.keys(ctx); err != nil {
		p.log.Warn("push: VAPID keys not loaded yet; retrying on first use", "err", err)
	}
	return nil
}

// checkSecret compares the x-hasura-event-secret header with event_secret in
// constant time. An empty event_secret refuses everything.
func (p *Plugin) checkSecret(h http.Header) bool { return kit.EventSecretOK(h, p.cfg.EventSecret) }

// OnHTTP serves POST /vapid/publicKey and POST /pushNotificationSubscription/changed.
func (p *Plugin) OnHTTP(ctx context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	if r.Path != RouteVAPIDPublicKey && r.Path != RouteSubscriptionChanged {
		return kit.TextResponse(http.StatusNotFound, "Not found"), nil
	}
	if !p.checkSecret(r.Header) {
		p.log.Warn("push: request with a missing or wrong event secret", "path", r.Path, "remote", r.RemoteAddr)
		return sdk.HTTPResponse{Status: http.StatusUnauthorized, Header: kit.JSONHeader(), Body: []byte("{}")}, nil
	}
	if r.Method != http.MethodPost {
		return kit.TextResponse(http.StatusMethodNotAllowed, "Method not allowed"), nil
	}
	if len(r.Body) > maxWebhookBody {
		return kit.TextResponse(http.StatusRequestEntityTooLarge, "Payload too large"), nil
	}
	if r.Path == RouteVAPIDPublicKey {
		k, err := p.keys(ctx)
		if err != nil {
			p.log.Error("push: VAPID keys", "err", err)
			return kit.TextResponse(http.StatusInternalServerError, "Failed to get VAPID public key"), nil
		}
		body, err := json.Marshal(map[string]string{"key": k.Public})
		if err != nil {
			return kit.TextResponse(http.StatusInternalServerError, "Failed to get VAPID public key"), nil
		}
		return sdk.HTTPResponse{Status: http.StatusOK, Header: kit.JSONHeader(), Body: body}, nil
	}
	return p.subscriptionChanged(ctx, r.Body), nil
}
