package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

const (
	// DefaultCacheTTL is the cache TTL when the config gives none.
	DefaultCacheTTL = 5 * time.Minute
	// DefaultTimeout bounds one GraphQL request.
	DefaultTimeout = 5 * time.Second
	// DefaultRefetchInterval is the least time between two forced refetches
	// of one cache entry (after a negative answer).
	DefaultRefetchInterval = 10 * time.Second
	// maxNegativeTTL caps how long a "not found" is cached.
	maxNegativeTTL = 30 * time.Second
	// maxResponse bounds a GraphQL response body.
	maxResponse = 4 << 20
	// maxUserID bounds a user id (ids are used in cache keys).
	maxUserID = 256
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// validUUID reports whether id can be a Hasura uuid; other ids are answered
// "not found" without a request (Hasura would reject the variable).
func validUUID(id string) bool { return uuidRE.MatchString(id) }

func validUser(id string) bool { return id != "" && len(id) <= maxUserID }

// Hasura is the directory backed by Clowdr's Hasura GraphQL API (the
// original's queries, sent with x-hasura-admin-secret), with answers cached
// in the Store at caches:<Name>:<key> (see cache.go). Safe for concurrent use.
type Hasura struct {
	endpoint     string
	secret       string
	client       *http.Client
	store        sdk.Store
	logger       *slog.Logger
	ttl          time.Duration
	negTTL       time.Duration
	refetchEvery time.Duration
	timeout      time.Duration
	flight       flightGroup
	metrics      *metrics

	// breaker fails requests at once while Hasura keeps failing (breaker.go).
	breaker         *breaker
	breakerFailures uint32
	breakerOpenFor  time.Duration

	// health is the outcome of the latest query, for /readyz.
	healthMu   sync.Mutex
	lastErr    error
	lastFailed time.Time
}

var _ sdk.Directory = (*Hasura)(nil)

// HasuraOption adjusts a Hasura directory.
type HasuraOption func(*Hasura)

// WithHTTPClient sets the HTTP client (tests, proxies). Requests are also
// bounded by the request timeout.
func WithHTTPClient(c *http.Client) HasuraOption {
	return func(h *Hasura) {
		if c != nil {
			h.client = c
		}
	}
}

// WithTimeout bounds one GraphQL request (default DefaultTimeout).
func WithTimeout(d time.Duration) HasuraOption {
	return func(h *Hasura) {
		if d > 0 {
			h.timeout = d
		}
	}
}

// WithRefetchInterval sets the least time between two forced refetches of one
// entry (default DefaultRefetchInterval).
func WithRefetchInterval(d time.Duration) HasuraOption {
	return func(h *Hasura) {
		if d > 0 {
			h.refetchEvery = d
		}
	}
}

// NewHasura builds the Hasura directory. Found answers are cached for
// cfg.CacheTTL (DefaultCacheTTL when 0), "not found" for a fifth of it, at
// most 30 s.
func NewHasura(cfg config.DirectoryConfig, store sdk.Store, logger *slog.Logger, opts ...HasuraOption) (*Hasura, error) {
	if store == nil {
		return nil, errors.New("directory: hasura backend needs a store for its cache")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Hasura{
		secret:       cfg.AdminSecret,
		store:        store,
		logger:       logger,
		ttl:          cfg.CacheTTL,
		refetchEvery: DefaultRefetchInterval,
		timeout:      DefaultTimeout,
		metrics:      newMetrics(),

		breakerFailures: DefaultBreakerFailures,
		breakerOpenFor:  DefaultBreakerOpenFor,
	}
	if cfg.GraphQLDomain != "" {
		if strings.Contains(cfg.GraphQLDomain, "/") {
			return nil, fmt.Errorf("directory: graphql_domain %q must be host[:port], without scheme or path", cfg.GraphQLDomain)
		}
		scheme := "http"
		if cfg.GraphQLSecure {
			scheme = "https"
		}
		h.endpoint = scheme + "://" + cfg.GraphQLDomain + "/v1/graphql"
	}
	for _, o := range opts {
		o(h)
	}
	if h.endpoint == "" {
		return nil, errors.New("directory: hasura backend needs directory.graphql_domain (GRAPHQL_API_DOMAIN)")
	}
	if h.client == nil {
		h.client = &http.Client{Timeout: h.timeout}
	}
	if h.ttl <= 0 {
		h.ttl = DefaultCacheTTL
	}
	h.negTTL = min(h.ttl/5, maxNegativeTTL)
	if h.negTTL < time.Millisecond {
		h.negTTL = time.Millisecond
	}
	h.breaker = newBreaker(h.breakerFailures, h.breakerOpenFor, h.logger)
	return h, nil
}

// Name returns "hasura".
func (h *Hasura) Name() string { return BackendHasura }

// graphQLError is one entry of a GraphQL response's errors.
type graphQLError struct {
	Message string `json:"message"`
}

// Ready reports whether the latest Hasura query succeeded (nil before the
// first), and whether the circuit breaker is open. It sends nothing: a probe
// per /readyz request would load Hasura, and a failed query is what users
// meet anyway. Cached answers keep working while Hasura is down, so the host
// reports this check without failing readiness on it.
func (h *Hasura) Ready(context.Context) error {
	open := h.breaker.status()
	h.healthMu.Lock()
	lastErr, lastFailed := h.lastErr, h.lastFailed
	h.healthMu.Unlock()
	switch {
	case lastErr == nil && open == "":
		return nil
	case lastErr == nil:
		return errors.New(open)
	}
	failed := fmt.Errorf("the latest Hasura query failed %s ago: %w", time.Since(lastFailed).Round(time.Second), lastErr)
	if open != "" {
		return fmt.Errorf("%s; %w", open, failed)
	}
	return failed
}

// query posts one GraphQL operation, decodes its data into out and records
// the outcome for Ready and the metrics. A query the circuit breaker refused
// sent nothing: it leaves Ready on the latest real failure.
func (h *Hasura) query(ctx context.Context, op, doc string, vars map[string]any, out any) error {
	err := h.post(ctx, op, doc, vars, out)
	h.metrics.queried(op, err)
	if errors.Is(err, ErrHasuraUnavailable) {
		return err
	}
	h.healthMu.Lock()
	h.lastErr = err
	if err != nil {
		h.lastFailed = time.Now()
	}
	h.healthMu.Unlock()
	return err
}

// post sends one GraphQL operation through the circuit breaker and decodes
// its data into out.
func (h *Hasura) post(ctx context.Context, op, doc string, vars map[string]any, out any) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	body, err := json.Marshal(map[string]any{"operationName": op, "query": doc, "variables": vars})
	if err != nil {
		return fmt.Errorf("directory: %s: encode request: %w", op, err)
	}
	a, err := h.breaker.do(op, func() (answer, error) { return h.send(ctx, op, body) })
	if err != nil {
		return err
	}
	// Hasura answered: what follows is not a failure of Hasura's, and the
	// breaker counted it a success.
	if len(a.data) > maxResponse {
		return fmt.Errorf("directory: %s: hasura response larger than %d bytes", op, maxResponse)
	}
	if a.code != http.StatusOK {
		return fmt.Errorf("directory: %s: hasura answered %s: %.200s", op, a.status, a.data)
	}
	var envelope struct {
		Data   json.RawMessage `json:"data"`
		Errors []graphQLError  `json:"errors"`
	}
	if err := json.Unmarshal(a.data, &envelope); err != nil {
		return fmt.Errorf("directory: %s: decode hasura response: %w", op, err)
	}
	if len(envelope.Errors) > 0 {
		return fmt.Errorf("directory: %s: hasura error: %s", op, envelope.Errors[0].Message)
	}
	if len(envelope.Data) == 0 || string(envelope.Data) == "null" {
		return fmt.Errorf("directory: %s: hasura response has no data", op)
	}
	if err := json.Unmarshal(envelope.Data, out); err != nil {
		return fmt.Errorf("directory: %s: decode data: %w", op, err)
	}
	return nil
}

// send makes the HTTP request. Its error is what the circuit breaker counts
// as a failure: no answer (transport error, timeout, a body cut short) or an
// answer that says Hasura is in trouble (5xx, 429).
func (h *Hasura) send(ctx context.Context, op string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.endpoint, bytes.NewReader(body))
	if err != nil {
		return answer{}, fmt.Errorf("directory: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if h.secret != "" {
		req.Header.Set("x-hasura-admin-secret", h.secret)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("directory: %s: hasura request: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return answer{}, fmt.Errorf("directory: %s: read hasura response: %w", op, err)
	}
	a := answer{code: resp.StatusCode, status: resp.Status, data: data}
	if resp.StatusCode >= http.StatusInternalServerError || resp.StatusCode == http.StatusTooManyRequests {
		return a, fmt.Errorf("directory: %s: hasura answered %s: %.200s", op, resp.Status, data)
	}
	return a, nil
}

// Cached shapes: the original service's (§7.1), so entries read the same.

type conferenceRef struct {
	ID        string `json:"id"`
	Slug      string `json:"slug"`
	ShortName string `json:"shortName,omitempty"`
}

type itemRef struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	ShortTitle string `json:"shortTitle,omitempty"`
}

type person struct {
	RegistrantID string `json:"registrantId"`
	UserID       string `json:"userId,omitempty"`
}

type roomInfo struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	ManagementMode string   `json:"managementMode"`
	People         []person `json:"people"`
}

func (r *roomInfo) hasUser(userID string) bool {
	return r != nil && slices.ContainsFunc(r.People, func(p person) bool { return p.UserID == userID })
}

type chatInfo struct {
	RestrictToAdmins bool          `json:"restrictToAdmins"`
	Conference       conferenceRef `json:"conference"`
	Items            []itemRef     `json:"items"`
	Rooms            []roomInfo    `json:"rooms"`
}

type eventInfo struct {
	Conference conferenceRef `json:"conference"`
	Room       *roomInfo     `json:"room"`
}

type userPermission struct {
	Slug           string `json:"slug"`
	PermissionName string `json:"permission_name"`
}

type registrantInfo struct {
	UserID       string `json:"userId,omitempty"`
	DisplayName  string `json:"displayName"`
	ConferenceID string `json:"conferenceId,omitempty"`
}

// GraphQL result shapes.

type gqlRegistrantRef struct {
	ID     string  `json:"id"`
	UserID *string `json:"userId"`
}

type gqlRoom struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	ManagementModeName string `json:"managementModeName"`
	RoomPeople         []struct {
		Registrant *gqlRegistrantRef `json:"registrant"`
	} `json:"roomPeople"`
}

func (r gqlRoom) info() roomInfo {
	ri := roomInfo{ID: r.ID, Name: r.Name, ManagementMode: r.ManagementModeName, People: []person{}}
	for _, p := range r.RoomPeople {
		if p.Registrant == nil {
			continue
		}
		pp := person{RegistrantID: p.Registrant.ID}
		if p.Registrant.UserID != nil {
			pp.UserID = *p.Registrant.UserID
		}
		ri.People = append(ri.People, pp)
	}
	return ri
}

// fetchers

func (h *Hasura) conferenceSlugs(ctx context.Context, userID string) (result, error) {
	return h.get(ctx, CacheConferenceSlugs, userID, false, func(ctx context.Context) (any, bool, error) {
		var data struct {
			Conferences []struct {
				Slug string `json:"slug"`
			} `json:"conference_Conference"`
		}
		if err := h.query(ctx, "GetUserConferenceSlugs", queryConferenceSlugs, map[string]any{"userId": userID}, &data); err != nil {
			return nil, false, err
		}
		slugs := make([]string, 0, len(data.Conferences))
		for _, c := range data.Conferences {
			if c.Slug != "" && !slices.Contains(slugs, c.Slug) {
				slugs = append(slugs, c.Slug)
			}
		}
		// None is cached as "not found", i.e. for the shorter TTL: a user who
		// just registered should not wait long.
		return slugs, len(slugs) > 0, nil
	})
}

func (h *Hasura) userPermissions(ctx context.Context, userID string, force bool) ([]userPermission, bool, error) {
	r, err := h.get(ctx, CacheUserPermission, userID, force, func(ctx context.Context) (any, bool, error) {
		var data struct {
			Perms []struct {
				Slug           *string `json:"slug"`
				PermissionName *string `json:"permission_name"`
			} `json:"FlatUserPermission"`
		}
		if err := h.query(ctx, "UserPermissions", queryUserPermissions, map[string]any{"userId": userID}, &data); err != nil {
			return nil, false, err
		}
		out := make([]userPermission, 0, len(data.Perms))
		for _, p := range data.Perms {
			if p.Slug != nil && p.PermissionName != nil && *p.Slug != "" && *p.PermissionName != "" {
				out = append(out, userPermission{Slug: *p.Slug, PermissionName: *p.PermissionName})
			}
		}
		// As the original: no permissions is "not found".
		return out, len(out) > 0, nil
	})
	if err != nil {
		return nil, false, err
	}
	var perms []userPermission
	if err := decode(r, &perms); err != nil {
		return nil, false, err
	}
	return perms, r.fresh, nil
}

func (h *Hasura) chatInfo(ctx context.Context, chatID string, force bool) (*chatInfo, bool, error) {
	r, err := h.get(ctx, CacheChatInfo, chatID, force, func(ctx context.Context) (any, bool, error) {
		var data struct {
			Chat *struct {
				RestrictToAdmins bool          `json:"restrictToAdmins"`
				Conference       conferenceRef `json:"conference"`
				Items            []struct {
					ID         string  `json:"id"`
					Title      string  `json:"title"`
					ShortTitle *string `json:"shortTitle"`
				} `json:"items"`
				Rooms []gqlRoom `json:"rooms"`
			} `json:"chat_Chat_by_pk"`
		}
		if err := h.query(ctx, "ChatInfo", queryChatInfo, map[string]any{"chatId": chatID}, &data); err != nil {
			return nil, false, err
		}
		if data.Chat == nil {
			return nil, false, nil
		}
		ci := chatInfo{RestrictToAdmins: data.Chat.RestrictToAdmins, Conference: data.Chat.Conference, Items: []itemRef{}, Rooms: []roomInfo{}}
		for _, it := range data.Chat.Items {
			ir := itemRef{ID: it.ID, Title: it.Title}
			if it.ShortTitle != nil {
				ir.ShortTitle = *it.ShortTitle
			}
			ci.Items = append(ci.Items, ir)
		}
		for _, rm := range data.Chat.Rooms {
			ci.Rooms = append(ci.Rooms, rm.info())
		}
		return ci, true, nil
	})
	if err != nil {
		return nil, false, err
	}
	if !r.found {
		return nil, r.fresh, nil
	}
	var ci chatInfo
	if err := decode(r, &ci); err != nil {
		return nil, false, err
	}
	return &ci, r.fresh, nil
}

func (h *Hasura) eventInfo(ctx context.Context, eventID string, force bool) (*eventInfo, bool, error) {
	r, err := h.get(ctx, CacheEventInfo, eventID, force, func(ctx context.Context) (any, bool, error) {
		var data struct {
			Event *struct {
				Conference conferenceRef `json:"conference"`
				Room       *gqlRoom      `json:"room"`
			} `json:"schedule_Event_by_pk"`
		}
		if err := h.query(ctx, "EventInfo", queryEventInfo, map[string]any{"eventId": eventID}, &data); err != nil {
			return nil, false, err
		}
		if data.Event == nil {
			return nil, false, nil
		}
		ei := eventInfo{Conference: data.Event.Conference}
		if data.Event.Room != nil {
			ri := data.Event.Room.info()
			ei.Room = &ri
		}
		return ei, true, nil
	})
	if err != nil {
		return nil, false, err
	}
	if !r.found {
		return nil, r.fresh, nil
	}
	var ei eventInfo
	if err := decode(r, &ei); err != nil {
		return nil, false, err
	}
	return &ei, r.fresh, nil
}

func (h *Hasura) eventChairs(ctx context.Context, eventID string, force bool) ([]string, bool, error) {
	r, err := h.get(ctx, CacheEventChairs, eventID, force, func(ctx context.Context) (any, bool, error) {
		var data struct {
			People []struct {
				Person *struct {
					Registrant *gqlRegistrantRef `json:"registrant"`
				} `json:"person"`
			} `json:"schedule_EventProgramPerson"`
		}
		if err := h.query(ctx, "EventChairs", queryEventChairs, map[string]any{"eventId": eventID}, &data); err != nil {
			return nil, false, err
		}
		users := []string{}
		for _, p := range data.People {
			if p.Person != nil && p.Person.Registrant != nil && p.Person.Registrant.UserID != nil {
				if u := *p.Person.Registrant.UserID; u != "" && !slices.Contains(users, u) {
					users = append(users, u)
				}
			}
		}
		return users, len(users) > 0, nil
	})
	if err != nil {
		return nil, false, err
	}
	var users []string
	if err := decode(r, &users); err != nil {
		return nil, false, err
	}
	return users, r.fresh, nil
}

func (h *Hasura) registrantInfo(ctx context.Context, id string, force bool) (*registrantInfo, bool, error) {
	r, err := h.get(ctx, CacheRegistrantInfo, id, force, func(ctx context.Context) (any, bool, error) {
		var data struct {
			Registrant *struct {
				UserID       *string `json:"userId"`
				DisplayName  string  `json:"displayName"`
				ConferenceID string  `json:"conferenceId"`
			} `json:"registrant_Registrant_by_pk"`
		}
		if err := h.query(ctx, "RegistrantInfo", queryRegistrantInfo, map[string]any{"registrantId": id}, &data); err != nil {
			return nil, false, err
		}
		if data.Registrant == nil {
			return nil, false, nil
		}
		ri := registrantInfo{DisplayName: data.Registrant.DisplayName, ConferenceID: data.Registrant.ConferenceID}
		if data.Registrant.UserID != nil {
			ri.UserID = *data.Registrant.UserID
		}
		return ri, true, nil
	})
	if err != nil {
		return nil, false, err
	}
	if !r.found {
		return nil, r.fresh, nil
	}
	var ri registrantInfo
	if err := decode(r, &ri); err != nil {
		return nil, false, err
	}
	return &ri, r.fresh, nil
}

func decode(r result, out any) error {
	if !r.found {
		return nil
	}
	if err := json.Unmarshal(r.raw, out); err != nil {
		return fmt.Errorf("directory: decode cached value: %w", err)
	}
	return nil
}
