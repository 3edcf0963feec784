package handraise

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register("handraise", func() sdk.Plugin { return New() })
}

// Socket.IO event names the plugin handles (client to server).
const (
	EventRaise     = "event.handRaise.raise"
	EventLower     = "event.handRaise.lower"
	EventFetch     = "event.handRaise.fetch"
	EventAccept    = "event.handRaise.accept"
	EventReject    = "event.handRaise.reject"
	EventObserve   = "event.handRaise.observe"
	EventUnobserve = "event.handRaise.unobserve"
)

// Socket.IO event names the plugin emits (server to client).
const (
	EmitRaised   = "event.handRaise.raised"
	EmitLowered  = "event.handRaise.lowered"
	EmitListing  = "event.handRaise.listing"
	EmitAccepted = "event.handRaise.accepted"
	EmitRejected = "event.handRaise.rejected"
)

// RouteEventEnded is the Hasura action webhook that clears an event's hands.
const RouteEventEnded = "/event/ended"

// Bounds that are not configurable.
const (
	// maxUserIDLen bounds a targetUserId (Auth0 ids are far shorter).
	maxUserIDLen = 256
	// maxWebhookBody is body-parser's default limit (100 kB).
	maxWebhookBody = 100 << 10
	// maxListing bounds the user ids one listing carries.
	maxListing = 10000
)

// HandsKey is the sorted set of an event's raised hands (score = raise time
// in ms, member = user id).
func HandsKey(eventID string) string { return "event:event." + eventID + ".handRaise.users" }

// Room is the room of an event's hand-raise observers.
func Room(eventID string) string { return "event:event." + eventID + ".handRaise.update" }

// Change is the payload of raised, lowered and rejected.
type Change struct {
	EventID string `json:"eventId"`
	UserID  string `json:"userId"`
}

// Listing is the payload of listing.
type Listing struct {
	EventID string   `json:"eventId"`
	UserIDs []string `json:"userIds"`
}

// Accepted is the payload of accepted. EventPerson is null when the plugin
// has no graphql_url.
type Accepted struct {
	EventID     string       `json:"eventId"`
	UserID      string       `json:"userId"`
	EventPerson *EventPerson `json:"eventPerson"`
}

// EventPerson is the schedule_EventProgramPerson row accept created.
type EventPerson struct {
	ID       string          `json:"id"`
	EventID  string          `json:"eventId"`
	RoleName string          `json:"roleName"`
	Person   json.RawMessage `json:"person"`
}

// Plugin is the hand-raise plugin. Create it with New.
type Plugin struct {
	sdk.Base

	host sdk.Host
	log  *slog.Logger
	cfg  Config
	now  func() time.Time
	// httpClient reaches graphql_url (settable before Start in tests).
	httpClient *http.Client

	mu      sync.Mutex
	started bool
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns a hand-raise plugin.
func New() *Plugin { return &Plugin{now: time.Now} }

// Describe declares the plugin's events and route.
func (p *Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "handraise",
		Version: "1.0.0",
		Events:  []string{EventRaise, EventLower, EventFetch, EventAccept, EventReject, EventObserve, EventUnobserve},
		Routes:  []sdk.Route{{Method: http.MethodPost, Path: RouteEventEnded}},
		// No OnConnect/OnDisconnect (sdk.Base's): spare every connect the calls.
		SkipConnect: true, SkipReplay: true, SkipDisconnect: true,
	}
}

// Start validates the config and keeps the host services.
func (p *Plugin) Start(_ context.Context, host sdk.Host, raw json.RawMessage) error {
	if host == nil {
		return errors.New("handraise: start: nil host")
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("handraise: started twice")
	}
	p.started = true
	p.host, p.cfg = host, cfg
	p.log = host.Logger()
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.EventSecret == "" {
		p.log.Warn("handraise: no event_secret: POST /event/ended answers 401")
	}
	return nil
}

// OnEvent handles one client event. As the original, it never answers an
// ack callback and never tells the client about a refusal: bad input,
// refusals and failures are logged only (§4.0).
func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	eventID, ok := p.eventIDArg(e)
	if !ok {
		return nil, nil
	}
	var err error
	switch e.Name {
	case EventRaise:
		err = p.raise(ctx, e.Socket, eventID)
	case EventLower:
		err = p.lower(ctx, e.Socket, eventID)
	case EventFetch:
		err = p.fetch(ctx, e.Socket, eventID)
	case EventAccept, EventReject:
		target, st := argString(e.Args, 1)
		switch {
		case st == argFalsy:
			return nil, nil
		case st == argNotString || len(target) > maxUserIDLen:
			p.log.Warn("handraise: bad targetUserId ignored", "event", e.Name, "socket", e.Socket.ID)
			return nil, nil
		}
		if e.Name == EventAccept {
			err = p.accept(ctx, e.Socket, eventID, target)
		} else {
			err = p.reject(ctx, e.Socket, eventID, target)
		}
	case EventObserve:
		err = p.observe(ctx, e.Socket, eventID)
	case EventUnobserve:
		if err = p.host.Leave(ctx, e.Socket.ID, Room(eventID)); err != nil {
			err = fmt.Errorf("leave: %w", err)
		}
	default:
		p.log.Warn("handraise: unexpected event", "event", e.Name)
		return nil, nil
	}
	switch {
	case errors.Is(err, errRefused):
		p.log.Info("handraise: refused", "event", e.Name, "socket", e.Socket.ID, "user", e.Socket.UserID, "eventId", eventID, "why", err)
	case err != nil:
		p.log.Error("handraise: event failed", "event", e.Name, "socket", e.Socket.ID, "eventId", eventID, "err", err)
	}
	return nil, nil
}

// errRefused marks a permission refusal (logged at info).
var errRefused = errors.New("refused")

// eventIDArg reads and validates the eventId argument, logging bad input.
func (p *Plugin) eventIDArg(e sdk.Event) (string, bool) {
	id, st := argString(e.Args, 0)
	switch {
	case st == argFalsy:
		return "", false // the original's truthiness guard: silently ignored
	case st == argNotString:
		p.log.Warn("handraise: non-string eventId ignored", "event", e.Name, "socket", e.Socket.ID)
		return "", false
	case !kit.ValidUUID(id):
		p.log.Warn("handraise: eventId is not a UUID; ignored", "event", e.Name, "socket", e.Socket.ID, "len", len(id))
		return "", false
	}
	return id, true
}

// canAccess asks the directory whether s may see the event.
func (p *Plugin) canAccess(ctx context.Context, s sdk.Socket, eventID string) error {
	ok, err := p.host.Directory().CanAccessEvent(ctx, s, eventID)
	if err != nil {
		return fmt.Errorf("can access event: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: no access to the event", errRefused)
	}
	return nil
}

// canModerate checks access and, with require_chair, the chair role.
func (p *Plugin) canModerate(ctx context.Context, s sdk.Socket, eventID string) error {
	if err := p.canAccess(ctx, s, eventID); err != nil {
		return err
	}
	if !p.cfg.requireChair() {
		return nil
	}
	ok, err := p.host.Directory().IsEventChair(ctx, s, eventID)
	if err != nil {
		return fmt.Errorf("is event chair: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: not a chair of the event", errRefused)
	}
	return nil
}

// raise adds the user's hand (keeping the first raise time when already
// raised) and tells the observers.
func (p *Plugin) raise(ctx context.Context, s sdk.Socket, eventID string) error {
	if err := p.canAccess(ctx, s, eventID); err != nil {
		return err
	}
	key := HandsKey(eventID)
	res, err := p.host.Store().Pipeline(ctx, [][]any{
		{"ZADD", key, "NX", p.now().UnixMilli(), s.UserID},
		{"PEXPIRE", key, p.cfg.HandTTL.D.Milliseconds()},
	})
	if err := pipelineErr(res, err); err != nil {
		return fmt.Errorf("raise: %w", err)
	}
	return p.broadcast(ctx, eventID, EmitRaised, Change{EventID: eventID, UserID: s.UserID})
}

// lower removes the user's own hand and tells the observers.
func (p *Plugin) lower(ctx context.Context, s sdk.Socket, eventID string) error {
	if err := p.canAccess(ctx, s, eventID); err != nil {
		return err
	}
	if _, err := p.host.Store().Do(ctx, "ZREM", HandsKey(eventID), s.UserID); err != nil {
		return fmt.Errorf("lower: %w", err)
	}
	return p.broadcast(ctx, eventID, EmitLowered, Change{EventID: eventID, UserID: s.UserID})
}

// fetch (re)joins the observers' room, then sends the raised hands, oldest
// first, to this socket only. Joining first means no change made after the
// listing was read can be missed; joining at all is the reconnect fix (the
// 2021 client re-sends only fetch after a reconnect).
func (p *Plugin) fetch(ctx context.Context, s sdk.Socket, eventID string) error {
	if err := p.canAccess(ctx, s, eventID); err != nil {
		return err
	}
	if err := p.host.Join(ctx, s.ID, Room(eventID)); err != nil {
		return fmt.Errorf("fetch: join: %w", err)
	}
	ids, err := sdk.Strings(p.host.Store().Do(ctx, "ZRANGE", HandsKey(eventID), 0, maxListing-1))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if ids == nil {
		ids = []string{}
	}
	if err := p.host.Emit(ctx, sdk.SocketTarget(s.ID), EmitListing, Listing{EventID: eventID, UserIDs: ids}); err != nil {
		return fmt.Errorf("fetch: emit: %w", err)
	}
	return nil
}

// accept makes the target a participant (with graphql_url), removes their
// hand and tells the observers.
func (p *Plugin) accept(ctx context.Context, s sdk.Socket, eventID, target string) error {
	if err := p.canModerate(ctx, s, eventID); err != nil {
		return err
	}
	var person *EventPerson
	if p.cfg.GraphQLURL != "" {
		var err error
		person, err = p.addParticipant(ctx, eventID, target)
		if errors.Is(err, errNoPerson) {
			// As the original: nothing to add, so nothing happens.
			p.log.Info("handraise: accept: the target has no program person or registrant in the conference", "eventId", eventID, "target", target)
			return nil
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
	}
	if _, err := p.host.Store().Do(ctx, "ZREM", HandsKey(eventID), target); err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	return p.broadcast(ctx, eventID, EmitAccepted, Accepted{EventID: eventID, UserID: target, EventPerson: person})
}

// reject removes the target's hand and tells the observers.
func (p *Plugin) reject(ctx context.Context, s sdk.Socket, eventID, target string) error {
	if err := p.canModerate(ctx, s, eventID); err != nil {
		return err
	}
	if _, err := p.host.Store().Do(ctx, "ZREM", HandsKey(eventID), target); err != nil {
		return fmt.Errorf("reject: %w", err)
	}
	return p.broadcast(ctx, eventID, EmitRejected, Change{EventID: eventID, UserID: target})
}

// observe joins the observers' room.
func (p *Plugin) observe(ctx context.Context, s sdk.Socket, eventID string) error {
	if err := p.canAccess(ctx, s, eventID); err != nil {
		return err
	}
	if err := p.host.Join(ctx, s.ID, Room(eventID)); err != nil {
		return fmt.Errorf("observe: join: %w", err)
	}
	return nil
}

func (p *Plugin) broadcast(ctx context.Context, eventID, name string, payload any) error {
	if err := p.host.Emit(ctx, sdk.RoomTarget(Room(eventID)), name, payload); err != nil {
		return fmt.Errorf("emit %s: %w", name, err)
	}
	return nil
}

func pipelineErr(res []sdk.Reply, err error) error {
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
		if e, ok := r.Value.(error); ok {
			return e
		}
	}
	return nil
}

// argState classifies a positional argument.
type argState int

const (
	argOK        argState = iota // a non-empty string
	argFalsy                     // missing, null, false, 0, "" (JavaScript falsy)
	argNotString                 // anything else
)

// argString returns args[i] with the original's truthiness guard and
// is<string> check.
func argString(args []json.RawMessage, i int) (string, argState) {
	if i >= len(args) {
		return "", argFalsy
	}
	raw := bytes.TrimSpace(args[i])
	switch string(raw) {
	case "", "null", "false", `""`:
		return "", argFalsy
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", argNotString
		}
		if s == "" {
			return "", argFalsy
		}
		return s, argOK
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil && f == 0 {
		return "", argFalsy
	}
	return "", argNotString
}
