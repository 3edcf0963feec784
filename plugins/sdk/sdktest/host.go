// Package sdktest is the plugin author's test kit: a recording fake Host with
// a real embedded Redis (miniredis) behind its Store, a func-field fake
// Directory, helpers to call a plugin with Go values, and StartSubprocess,
// which runs a registered plugin through the host's real re-exec path.
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Emit is one recorded Host.Emit.
type Emit struct {
	To    sdk.Target
	Event string
	Args  []json.RawMessage
}

// Arg decodes argument i into v.
func (e Emit) Arg(i int, v any) error {
	if i >= len(e.Args) {
		return fmt.Errorf("emit %q has %d args, want index %d", e.Event, len(e.Args), i)
	}
	return json.Unmarshal(e.Args[i], v)
}

// RoomCall is one recorded Join or Leave.
type RoomCall struct {
	SocketID string
	Room     string
}

// Publish is one recorded Host.Publish.
type Publish struct {
	Exchange   string
	RoutingKey string
	Body       []byte
}

// Host is a fake sdk.Host that records what the plugin does. Its Store is a
// real Redis (miniredis, in memory); its Directory is a *Directory of func
// fields. Safe for concurrent use. Call Close when done (StartSubprocess does).
type Host struct {
	// Dir is the Directory the plugin sees; set its func fields.
	Dir *Directory
	// PublishFunc, when set, decides the result of Publish (after recording).
	PublishFunc func(ctx context.Context, exchange, routingKey string, body []byte) error
	// Log is the plugin's logger (default: discards).
	Log *slog.Logger
	// ID is the instance id the plugin sees.
	ID string

	mr    *miniredis.Miniredis
	rdb   *redis.Client
	store sdk.Store

	mu          sync.Mutex
	emits       []Emit
	joins       []RoomCall
	leaves      []RoomCall
	disconnects []string
	publishes   []Publish
	rooms       map[string]map[string]bool // room -> socket ids
}

var _ sdk.Host = (*Host)(nil)

// NewHost returns a recording Host with an empty embedded Redis.
func NewHost() *Host {
	h := &Host{
		Dir:   &Directory{},
		Log:   slog.New(slog.DiscardHandler),
		ID:    "test-instance",
		rooms: map[string]map[string]bool{},
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		h.store = errStore{fmt.Errorf("sdktest: start embedded redis: %w", err)}
		return h
	}
	h.mr = mr
	h.rdb = redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: 2, DisableIdentity: true})
	h.store = &redisStore{rdb: h.rdb}
	return h
}

// Close stops the embedded Redis.
func (h *Host) Close() {
	if h.rdb != nil {
		_ = h.rdb.Close()
	}
	if h.mr != nil {
		h.mr.Close()
	}
}

// Redis is the embedded Redis, to inspect or seed state (nil if it failed).
func (h *Host) Redis() *miniredis.Miniredis { return h.mr }

// Emit records an emit; its args are marshalled as the real host does.
func (h *Host) Emit(ctx context.Context, to sdk.Target, event string, args ...any) error {
	raw, err := sdk.MarshalArgs(args)
	if err != nil {
		return fmt.Errorf("emit %q: %w", event, err)
	}
	return h.emitRaw(to, event, raw)
}

func (h *Host) emitRaw(to sdk.Target, event string, args []json.RawMessage) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.emits = append(h.emits, Emit{To: to, Event: event, Args: args})
	return nil
}

// Join records a join (and remembers the membership: see InRoom).
func (h *Host) Join(_ context.Context, socketID, room string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.joins = append(h.joins, RoomCall{socketID, room})
	if h.rooms[room] == nil {
		h.rooms[room] = map[string]bool{}
	}
	h.rooms[room][socketID] = true
	return nil
}

// Leave records a leave.
func (h *Host) Leave(_ context.Context, socketID, room string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaves = append(h.leaves, RoomCall{socketID, room})
	delete(h.rooms[room], socketID)
	return nil
}

// Disconnect records a disconnect.
func (h *Host) Disconnect(_ context.Context, socketID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.disconnects = append(h.disconnects, socketID)
	return nil
}

// Store is the embedded Redis.
func (h *Host) Store() sdk.Store { return h.store }

// Publish records a publish, then returns PublishFunc's verdict (nil if unset).
func (h *Host) Publish(ctx context.Context, exchange, routingKey string, body []byte) error {
	h.mu.Lock()
	h.publishes = append(h.publishes, Publish{exchange, routingKey, slices.Clone(body)})
	f := h.PublishFunc
	h.mu.Unlock()
	if f != nil {
		return f(ctx, exchange, routingKey, body)
	}
	return nil
}

// Directory is Dir.
func (h *Host) Directory() sdk.Directory { return h.Dir }

// Logger is Log.
func (h *Host) Logger() *slog.Logger { return h.Log }

// InstanceID is ID.
func (h *Host) InstanceID() string { return h.ID }

// Emits returns the recorded emits, oldest first.
func (h *Host) Emits() []Emit { h.mu.Lock(); defer h.mu.Unlock(); return slices.Clone(h.emits) }

// Joins returns the recorded joins.
func (h *Host) Joins() []RoomCall { h.mu.Lock(); defer h.mu.Unlock(); return slices.Clone(h.joins) }

// Leaves returns the recorded leaves.
func (h *Host) Leaves() []RoomCall { h.mu.Lock(); defer h.mu.Unlock(); return slices.Clone(h.leaves) }

// Disconnects returns the recorded disconnects.
func (h *Host) Disconnects() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.disconnects)
}

// Publishes returns the recorded publishes.
func (h *Host) Publishes() []Publish {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.publishes)
}

// InRoom reports whether socketID joined room (and did not leave it).
func (h *Host) InRoom(socketID, room string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[room][socketID]
}

// Reset forgets the recorded calls (not the Store's content).
func (h *Host) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.emits, h.joins, h.leaves, h.disconnects, h.publishes = nil, nil, nil, nil, nil
	h.rooms = map[string]map[string]bool{}
}

// Services adapts h to sdk.HostServices, the interface the host side of the
// plugin contract uses (for sdk.NewLocalClient or a subprocess client).
func (h *Host) Services() sdk.HostServices { return services{h} }

type services struct{ h *Host }

var _ sdk.HostServices = services{}

func (s services) Emit(_ context.Context, to sdk.Target, event string, args []json.RawMessage) error {
	return s.h.emitRaw(to, event, args)
}
func (s services) Join(ctx context.Context, id, room string) error  { return s.h.Join(ctx, id, room) }
func (s services) Leave(ctx context.Context, id, room string) error { return s.h.Leave(ctx, id, room) }
func (s services) Disconnect(ctx context.Context, id string) error  { return s.h.Disconnect(ctx, id) }
func (s services) Store() sdk.Store                                 { return s.h.Store() }
func (s services) Publish(ctx context.Context, ex, key string, body []byte) error {
	return s.h.Publish(ctx, ex, key, body)
}
func (s services) Directory() sdk.Directory { return s.h.Directory() }
func (s services) Logger() *slog.Logger     { return s.h.Logger() }
func (s services) InstanceID() string       { return s.h.InstanceID() }

// ---- Store over go-redis ----

type redisStore struct{ rdb *redis.Client }

var _ sdk.Store = (*redisStore)(nil)

func convReply(v any, err error) (any, error) {
	if errors.Is(err, redis.Nil) {
		return nil, sdk.ErrNil
	}
	if err != nil {
		return nil, err
	}
	return convValue(v), nil
}

func convValue(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = convValue(e)
		}
		return out
	case redis.Error:
		return errors.New(x.Error())
	}
	return v
}

func (s *redisStore) Do(ctx context.Context, args ...any) (any, error) {
	return convReply(s.rdb.Do(ctx, args...).Result())
}

func (s *redisStore) Pipeline(ctx context.Context, cmds [][]any) ([]sdk.Reply, error) {
	pipe := s.rdb.Pipeline()
	rs := make([]*redis.Cmd, len(cmds))
	for i, c := range cmds {
		rs[i] = pipe.Do(ctx, c...)
	}
	_, _ = pipe.Exec(ctx) // per-command errors are in the replies
	out := make([]sdk.Reply, len(rs))
	for i, r := range rs {
		out[i].Value, out[i].Err = convReply(r.Result())
	}
	return out, nil
}

func (s *redisStore) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	return convReply(redis.NewScript(script).Run(ctx, s.rdb, keys, args...).Result())
}

type errStore struct{ err error }

func (e errStore) Do(context.Context, ...any) (any, error) { return nil, e.err }
func (e errStore) Pipeline(context.Context, [][]any) ([]sdk.Reply, error) {
	return nil, e.err
}
func (e errStore) Eval(context.Context, string, []string, ...any) (any, error) { return nil, e.err }

// ---- Directory ----

// Directory is a fake sdk.Directory: each method calls its func field, or
// returns zero values (no conferences, false, not found) when it is nil.
type Directory struct {
	ConferenceSlugsFunc func(ctx context.Context, userID string) ([]string, error)
	CanSelectChatFunc   func(ctx context.Context, s sdk.Socket, chatID string) (bool, error)
	CanWriteChatFunc    func(ctx context.Context, s sdk.Socket, chatID, senderRegistrantID string) (bool, error)
	RegistrantFunc      func(ctx context.Context, registrantID string) (sdk.Registrant, bool, error)
	CanAccessEventFunc  func(ctx context.Context, s sdk.Socket, eventID string) (bool, error)
	IsEventChairFunc    func(ctx context.Context, s sdk.Socket, eventID string) (bool, error)
	ChatDetailsFunc     func(ctx context.Context, chatID string) (sdk.ChatDetails, bool, error)
	// MessageModeratorsFunc answers MessageModerators (nil: not found).
	MessageModeratorsFunc func(ctx context.Context, messageSID string) (sdk.ConferenceModerators, bool, error)
}

var _ sdk.Directory = (*Directory)(nil)

func (d *Directory) ConferenceSlugs(ctx context.Context, userID string) ([]string, error) {
	if d.ConferenceSlugsFunc == nil {
		return nil, nil
	}
	return d.ConferenceSlugsFunc(ctx, userID)
}

func (d *Directory) CanSelectChat(ctx context.Context, s sdk.Socket, chatID string) (bool, error) {
	if d.CanSelectChatFunc == nil {
		return false, nil
	}
	return d.CanSelectChatFunc(ctx, s, chatID)
}

func (d *Directory) CanWriteChat(ctx context.Context, s sdk.Socket, chatID, sender string) (bool, error) {
	if d.CanWriteChatFunc == nil {
		return false, nil
	}
	return d.CanWriteChatFunc(ctx, s, chatID, sender)
}

func (d *Directory) Registrant(ctx context.Context, id string) (sdk.Registrant, bool, error) {
	if d.RegistrantFunc == nil {
		return sdk.Registrant{}, false, nil
	}
	return d.RegistrantFunc(ctx, id)
}

func (d *Directory) CanAccessEvent(ctx context.Context, s sdk.Socket, eventID string) (bool, error) {
	if d.CanAccessEventFunc == nil {
		return false, nil
	}
	return d.CanAccessEventFunc(ctx, s, eventID)
}

func (d *Directory) IsEventChair(ctx context.Context, s sdk.Socket, eventID string) (bool, error) {
	if d.IsEventChairFunc == nil {
		return false, nil
	}
	return d.IsEventChairFunc(ctx, s, eventID)
}

func (d *Directory) ChatDetails(ctx context.Context, chatID string) (sdk.ChatDetails, bool, error) {
	if d.ChatDetailsFunc == nil {
		return sdk.ChatDetails{}, false, nil
	}
	return d.ChatDetailsFunc(ctx, chatID)
}

func (d *Directory) MessageModerators(ctx context.Context, messageSID string) (sdk.ConferenceModerators, bool, error) {
	if d.MessageModeratorsFunc == nil {
		return sdk.ConferenceModerators{}, false, nil
	}
	return d.MessageModeratorsFunc(ctx, messageSID)
}

// ---- helpers ----

// Socket builds an sdk.Socket.
func Socket(id, userID string, slugs ...string) sdk.Socket {
	return sdk.Socket{ID: id, UserID: userID, ConferenceSlugs: slugs}
}

// Args marshals Go values into an event's raw JSON arguments (failing t).
func Args(t testing.TB, args ...any) []json.RawMessage {
	t.Helper()
	raw, err := sdk.MarshalArgs(args)
	if err != nil {
		t.Fatalf("sdktest.Args: %v", err)
	}
	return raw
}

// Event calls p.OnEvent with args given as Go values (marshalled to JSON as a
// client's would be).
func Event(t testing.TB, ctx context.Context, p sdk.Plugin, s sdk.Socket, name string, args ...any) ([]any, error) {
	t.Helper()
	return p.OnEvent(ctx, sdk.Event{Socket: s, Name: name, Args: Args(t, args...)})
}

// Start calls p.Start with h and config (any value, marshalled to JSON; nil
// gives "{}"), failing t on error.
func Start(t testing.TB, ctx context.Context, p sdk.Plugin, h sdk.Host, config any) {
	t.Helper()
	raw := json.RawMessage("{}")
	if config != nil {
		b, err := json.Marshal(config)
		if err != nil {
			t.Fatalf("sdktest.Start: config: %v", err)
		}
		raw = b
	}
	if err := p.Start(ctx, h, raw); err != nil {
		t.Fatalf("sdktest.Start: %v", err)
	}
}
