package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register("analytics", func() sdk.Plugin { return New() })
}

// EventViewCount is the Socket.IO event the plugin handles.
const EventViewCount = "analytics.view.count"

// Content types of a view (ViewCountContentType in the original).
const (
	ContentItem      = "Item"
	ContentElement   = "Element"
	ContentHLSStream = "Room.HLSStream"
)

// CountPrefix starts every view counter key (the original's name, so counts
// left by the Node service are written back too).
const CountPrefix = "analytics.view.count:"

// CountKey is the counter of one content's views not yet written back.
func CountKey(contentType, identifier string) string {
	return CountPrefix + contentType + ":" + identifier
}

// maxSeenPerSocket bounds the dedupe entries of one socket; a view that
// would need more is not counted.
const maxSeenPerSocket = 512

// View is the payload of analytics.view.count.
type View struct {
	Identifier  string `json:"identifier"`
	ContentType string `json:"contentType"`
}

// Plugin is the analytics plugin. Create it with New.
type Plugin struct {
	sdk.Base

	host sdk.Host
	log  *slog.Logger
	cfg  Config
	now  func() time.Time
	// httpClient reaches graphql_url (settable before Start in tests).
	httpClient *http.Client
	// noLoop keeps Start from starting the writeback loop (tests drive
	// writebackRound themselves).
	noLoop bool
	// afterRound, when set, is called by the loop after each round (tests).
	afterRound func(error)

	mu      sync.Mutex
	sockets map[string]*socketState
	started bool
	stopped bool

	cancel context.CancelFunc
	wg     sync.WaitGroup // the writeback loop
}

// socketState is the per-socket rate limiter and dedupe memory.
type socketState struct {
	limiter *rate.Limiter
	seen    map[string]time.Time // count key -> when it was last counted
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns an analytics plugin.
func New() *Plugin {
	return &Plugin{now: time.Now, sockets: map[string]*socketState{}}
}

// Describe declares the plugin's one event.
func (p *Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name: "analytics", Version: "1.0.0", Events: []string{EventViewCount},
		// Its per-socket state is made by the socket's first event and
		// forgotten in OnDisconnect; it has no OnConnect.
		SkipConnect: true, SkipReplay: true,
	}
}

// Start validates the config and, with graphql_url, starts the writeback
// loop, whose first round runs at once (retrying what an earlier process
// left in flight).
func (p *Plugin) Start(_ context.Context, host sdk.Host, raw json.RawMessage) error {
	if host == nil {
		return errors.New("analytics: start: nil host")
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("analytics: started twice")
	}
	p.started = true
	p.host, p.cfg = host, cfg
	p.log = host.Logger()
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.GraphQLURL == "" {
		p.log.Info("analytics: no graphql_url: view counts stay in Redis (no writeback)")
		return nil
	}
	if p.noLoop {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go p.writebackLoop(ctx)
	return nil
}

// Stop ends the writeback loop (a round in progress is canceled; what it
// had in flight is retried by the next round of any instance).
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.started || p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("analytics: stop: %w", ctx.Err())
	}
}

// OnDisconnect forgets the socket's limiter and dedupe memory.
func (p *Plugin) OnDisconnect(_ context.Context, s sdk.Socket, _ string) error {
	p.mu.Lock()
	delete(p.sockets, s.ID)
	p.mu.Unlock()
	return nil
}

// OnEvent counts one view. As the original, it never answers an ack
// callback; refused or invalid views are logged only (§4.0).
func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	if e.Name != EventViewCount {
		p.log.Warn("analytics: unexpected event", "event", e.Name)
		return nil, nil
	}
	if len(e.Args) == 0 || falsy(e.Args[0]) {
		return nil, nil // the original's truthiness guard
	}
	v, err := parseView(e.Args[0])
	if err != nil {
		p.log.Warn("analytics: invalid view ignored", "socket", e.Socket.ID, "err", err)
		return nil, nil
	}
	if len(e.Socket.ConferenceSlugs) == 0 {
		p.log.Info("analytics: view from a socket without a conference refused", "socket", e.Socket.ID, "user", e.Socket.UserID)
		return nil, nil
	}
	key := CountKey(v.ContentType, v.Identifier)
	if why := p.admit(e.Socket.ID, key); why != "" {
		p.log.Debug("analytics: view not counted", "socket", e.Socket.ID, "key", key, "why", why)
		return nil, nil
	}
	if _, err := p.host.Store().Do(ctx, "INCR", key); err != nil {
		p.forget(e.Socket.ID, key) // so a retry by the client can count
		p.log.Error("analytics: count view", "key", key, "err", err)
	}
	return nil, nil
}

// admit applies the dedupe window and the rate limit; "" means count it.
func (p *Plugin) admit(socketID, key string) string {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.sockets[socketID]
	if !ok {
		st = &socketState{
			limiter: rate.NewLimiter(rate.Limit(p.cfg.ViewsPerSecond), p.cfg.ViewBurst),
			seen:    map[string]time.Time{},
		}
		p.sockets[socketID] = st
	}
	window := p.cfg.DedupeWindow.D
	if window > 0 {
		if at, ok := st.seen[key]; ok && now.Sub(at) < window {
			return "duplicate within dedupe_window"
		}
		if len(st.seen) >= maxSeenPerSocket {
			for k, at := range st.seen {
				if now.Sub(at) >= window {
					delete(st.seen, k)
				}
			}
			if len(st.seen) >= maxSeenPerSocket {
				return "too many distinct views in dedupe_window"
			}
		}
	}
	if !st.limiter.AllowN(now, 1) {
		return "rate limited"
	}
	if window > 0 {
		st.seen[key] = now
	}
	return ""
}

// forget removes a dedupe entry (after a failed INCR).
func (p *Plugin) forget(socketID, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.sockets[socketID]; ok {
		delete(st.seen, key)
	}
}

// errInvalid marks a payload that fails validation.
var errInvalid = errors.New("invalid view")

// parseView checks raw with typescript-is semantics: an object whose keys
// identifier (a uuid@8-valid UUID string) and contentType (exactly one of
// the three types) are present; other keys are allowed and ignored. The
// identifier is lower-cased so that one content has one counter.
func parseView(raw json.RawMessage) (View, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return View{}, fmt.Errorf("%w: not an object", errInvalid)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return View{}, fmt.Errorf("%w: %w", errInvalid, err)
	}
	id, ok := kit.JSONString(m["identifier"])
	if !ok {
		return View{}, fmt.Errorf("%w: identifier must be a string", errInvalid)
	}
	if !kit.ValidUUID(id) {
		return View{}, fmt.Errorf("%w: identifier is not a UUID", errInvalid)
	}
	ct, ok := kit.JSONString(m["contentType"])
	if !ok || !validContentType(ct) {
		return View{}, fmt.Errorf("%w: contentType must be Item, Element or Room.HLSStream", errInvalid)
	}
	return View{Identifier: strings.ToLower(id), ContentType: ct}, nil
}

func validContentType(ct string) bool {
	return ct == ContentItem || ct == ContentElement || ct == ContentHLSStream
}

// falsy reports JavaScript falsiness of a JSON value (null, false, 0, "").
func falsy(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "", "null", "false", `""`:
		return true
	}
	var f float64
	return json.Unmarshal(raw, &f) == nil && f == 0
}
