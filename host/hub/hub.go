// Package hub keeps the connected sockets of this instance and their rooms,
// and delivers emits to a socket, a room or all sockets of a user — locally,
// and through Redis pub/sub on every other instance.
//
// Rooms: every socket is in the room named by its own id (as in Socket.IO) and
// in its user's room (UserRoom). Plugins add more with Join/Leave.
//
// Cross-instance delivery (see remote.go): an instance subscribes to the Redis
// channel of a room only while it has a local member, and to its own instance
// channel for emits and room changes addressed to one of its sockets. Socket ids
// start with the id of the instance that owns them, so an emit to a socket on
// another instance goes straight to that instance's channel.
//
// Frames are encoded once per emit and the same bytes are queued to every
// member; each socket's outbound queue is bounded by host/socketio, which
// disconnects a slow consumer rather than buffering without limit. Rooms with
// BatchMinMembers or more local members are sent with SendBatched when the
// Conn has it (a member that wrote within the last few milliseconds gets the
// frame in its next write, shared with the frames that follow); smaller
// rooms and single sockets are written at once.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Conn is the part of a websocket connection the hub needs.
type Conn interface {
	// Send queues an encoded frame; it must not block.
	Send(frame []byte) error
	// Disconnect closes the Socket.IO namespace (the client sees "io server disconnect").
	Disconnect()
}

// BatchConn is a Conn that can let a room frame wait briefly to share a write
// with the next ones (host/socketio.Conn.SendBatched).
type BatchConn interface {
	SendBatched(frame []byte) error
}

// BatchMinMembers is the local room size from which room frames are sent
// batched. A frame to a big room costs one write per member, so a busy big
// room (a chat with 1,000 followers at 200 msgs/s) is where sharing writes
// pays; small rooms (a page's presence observers) and single sockets keep
// writing at once, so their latency is untouched.
const BatchMinMembers = 100

// Encoder turns an event into a wire frame (host/socketio.EncodeEventRaw).
type Encoder func(event string, args []json.RawMessage) []byte

// Remote carries emits and room changes to other instances.
type Remote interface {
	// Subscribe and Unsubscribe follow the rooms that have local members; they
	// return once Redis confirmed.
	Subscribe(ctx context.Context, room string) error
	Unsubscribe(ctx context.Context, room string) error
	// PublishRoom sends a frame to the room's members on other instances.
	PublishRoom(ctx context.Context, room string, frame []byte) error
	// PublishInstance sends a message to one other instance.
	PublishInstance(ctx context.Context, instance string, msg InstanceMessage) error
}

// InstanceMessage is addressed to one socket on another instance.
type InstanceMessage struct {
	Op       string `json:"op"` // "emit", "join", "leave", "disconnect"
	SocketID string `json:"socket"`
	Room     string `json:"room,omitempty"`
	Frame    []byte `json:"frame,omitempty"`
}

// ErrUnknownSocket is returned for a socket id this instance doesn't have.
var ErrUnknownSocket = errors.New("hub: unknown socket")

// UserRoom is the room every socket of a user is in.
func UserRoom(userID string) string { return userRoomPrefix + userID }

const userRoomPrefix = "rt:user:"

// Socket is a connected socket.
//
// Memory: an idle socket is in two rooms (its own id and its user's), so
// its room set is a slice, not a map (a map with one group costs ~200 bytes;
// 10,000 sockets × two maps were the hub's largest per-socket cost). Its own
// room is a flag instead of a one-member room in Hub.rooms: nothing is ever
// shared through it but the socket itself (see ownRoom). A socket in many
// rooms pays a linear scan per Join/Leave, which at the tens of rooms a
// client follows costs less than hashing.
type Socket struct {
	Info sdk.Socket
	conn Conn
	// Guarded by Hub.mu:
	rooms   []*roomState // rooms other than its own id's
	inOwn   bool         // in the room named by its own id
	removed bool
}

// roomState is a room with local members. Sockets point at it, so its name is
// stored once however many members it has.
type roomState struct {
	name    string
	members map[*Socket]struct{}
}

// Hub is the registry of this instance's sockets and rooms.
type Hub struct {
	instance string
	encode   Encoder
	log      *slog.Logger

	mu      sync.RWMutex
	sockets map[string]*Socket
	rooms   map[string]*roomState // rooms with a local member other than an own-id member

	met *metrics

	remote Remote // nil: single instance
	// Subscribing a room is a Redis round trip: rooms are serialised per
	// stripe (a room always maps to the same one), so the subscribe and
	// unsubscribe of one room keep their order while different rooms (a
	// connect storm's user rooms) proceed in parallel.
	subStripes [64]sync.Mutex
	subMapMu   sync.Mutex
	subscribed map[string]bool // rooms subscribed on the remote; guarded by subMapMu
}

// New makes a hub for the instance. encode builds frames; remote may be nil.
func New(instanceID string, encode Encoder, remote Remote, logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.Default()
	}
	return &Hub{
		instance:   instanceID,
		encode:     encode,
		log:        logger,
		sockets:    make(map[string]*Socket),
		rooms:      make(map[string]*roomState),
		remote:     remote,
		subscribed: make(map[string]bool),
		met:        newMetrics(),
	}
}

// SetRemote attaches cross-instance delivery (before any socket is added).
func (h *Hub) SetRemote(r Remote) { h.remote = r }

// InstanceID is this instance's id; socket ids start with it.
func (h *Hub) InstanceID() string { return h.instance }

// Add registers a socket and puts it in its own room and its user's room.
func (h *Hub) Add(ctx context.Context, info sdk.Socket, c Conn) error {
	_, err := h.Register(ctx, info, c)
	return err
}

// Register is Add returning the registered socket, whose Info the caller
// may keep instead of a copy of its own (it never changes). Its UserID
// shares the bytes of the user room's name when the user has another socket
// here, so a user's sockets hold their user id once.
func (h *Hub) Register(ctx context.Context, info sdk.Socket, c Conn) (*Socket, error) {
	var userRoom string
	if info.UserID != "" {
		userRoom = UserRoom(info.UserID)
	}
	h.mu.Lock()
	if _, dup := h.sockets[info.ID]; dup {
		h.mu.Unlock()
		return nil, fmt.Errorf("hub: duplicate socket id %q", info.ID)
	}
	if r := h.rooms[userRoom]; r != nil && userRoom != "" {
		info.UserID = r.name[len(userRoomPrefix):]
	}
	s := &Socket{Info: info, conn: c, inOwn: true}
	h.sockets[info.ID] = s
	h.mu.Unlock()
	if userRoom != "" {
		if err := h.join(ctx, s, userRoom); err != nil {
			h.Remove(ctx, info.ID)
			return nil, err
		}
	}
	return s, nil
}

// Remove forgets a socket and leaves all its rooms.
func (h *Hub) Remove(ctx context.Context, socketID string) {
	h.mu.Lock()
	s, ok := h.sockets[socketID]
	if !ok {
		h.mu.Unlock()
		return
	}
	delete(h.sockets, socketID)
	var emptied []string
	for _, r := range s.rooms {
		if h.removeMember(r, s) {
			emptied = append(emptied, r.name)
		}
	}
	s.rooms, s.inOwn, s.removed = nil, false, true
	h.mu.Unlock()
	h.unsubscribe(ctx, emptied)
}

// Get returns the socket's info if it is on this instance.
func (h *Hub) Get(socketID string) (sdk.Socket, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := h.sockets[socketID]
	if !ok {
		return sdk.Socket{}, false
	}
	return s.Info, true
}

// Sockets lists this instance's sockets.
func (h *Hub) Sockets() []sdk.Socket {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]sdk.Socket, 0, len(h.sockets))
	for _, s := range h.sockets {
		out = append(out, s.Info)
	}
	return out
}

// Count is the number of sockets on this instance.
func (h *Hub) Count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sockets)
}

// RoomSize is the number of local members of a room.
func (h *Hub) RoomSize(room string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.localMembers(room)
}

// localMembers counts a room's members here, h.mu held.
func (h *Hub) localMembers(name string) int {
	n := 0
	if r := h.rooms[name]; r != nil {
		n = len(r.members)
	}
	if h.ownRoom(name) != nil {
		n++
	}
	return n
}

// ownRoom is the local socket whose own-id room is name and that is in it,
// or nil; h.mu held.
func (h *Hub) ownRoom(name string) *Socket {
	if s := h.sockets[name]; s != nil && s.inOwn {
		return s
	}
	return nil
}

// Rooms lists a local socket's rooms.
func (h *Hub) Rooms(socketID string) []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := h.sockets[socketID]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(s.rooms)+1)
	if s.inOwn {
		out = append(out, s.Info.ID)
	}
	for _, r := range s.rooms {
		out = append(out, r.name)
	}
	return out
}

// owner is the instance id a socket id belongs to ("" if unknown form).
func (h *Hub) owner(socketID string) string {
	if len(socketID) >= len(h.instance) && len(h.instance) > 0 {
		return socketID[:len(h.instance)]
	}
	return ""
}

// Join puts a socket in a room. For a socket on another instance the request
// is forwarded to its instance.
func (h *Hub) Join(ctx context.Context, socketID, room string) error {
	h.mu.RLock()
	s, ok := h.sockets[socketID]
	h.mu.RUnlock()
	if !ok {
		return h.forward(ctx, socketID, InstanceMessage{Op: "join", SocketID: socketID, Room: room})
	}
	return h.join(ctx, s, room)
}

func (h *Hub) join(ctx context.Context, s *Socket, room string) error {
	h.mu.Lock()
	if s.removed { // removed meanwhile
		h.mu.Unlock()
		return ErrUnknownSocket
	}
	if room == s.Info.ID {
		// Socket-id rooms are reached through the instance channel: never
		// subscribed.
		s.inOwn = true
		h.mu.Unlock()
		return nil
	}
	if s.roomIndex(room) >= 0 {
		h.mu.Unlock()
		return nil
	}
	first := h.localMembers(room) == 0
	r := h.rooms[room]
	if r == nil {
		r = &roomState{name: room, members: make(map[*Socket]struct{}, 1)}
		h.rooms[room] = r
	}
	r.members[s] = struct{}{}
	s.rooms = append(s.rooms, r)
	h.mu.Unlock()
	if first && h.remote != nil {
		stripe := h.stripe(room)
		stripe.Lock()
		defer stripe.Unlock()
		h.mu.RLock()
		still := h.localMembers(room) > 0
		h.mu.RUnlock()
		if still && !h.isSubscribed(room) {
			if err := h.remote.Subscribe(ctx, room); err != nil {
				return fmt.Errorf("hub: subscribe room %q: %w", room, err)
			}
			h.setSubscribed(room, true)
		}
	}
	return nil
}

// Leave takes a socket out of a room.
func (h *Hub) Leave(ctx context.Context, socketID, room string) error {
	h.mu.Lock()
	s, ok := h.sockets[socketID]
	if !ok {
		h.mu.Unlock()
		return h.forward(ctx, socketID, InstanceMessage{Op: "leave", SocketID: socketID, Room: room})
	}
	var emptied bool
	if room == s.Info.ID {
		if !s.inOwn {
			h.mu.Unlock()
			return nil
		}
		s.inOwn = false
		emptied = h.localMembers(room) == 0
	} else {
		i := s.roomIndex(room)
		if i < 0 {
			h.mu.Unlock()
			return nil
		}
		r := s.rooms[i]
		s.rooms = slices.Delete(s.rooms, i, i+1)
		emptied = h.removeMember(r, s)
	}
	h.mu.Unlock()
	if emptied {
		h.unsubscribe(ctx, []string{room})
	}
	return nil
}

// roomIndex is the index of the named room in s.rooms, or -1; Hub.mu held.
func (s *Socket) roomIndex(name string) int {
	for i, r := range s.rooms {
		if r.name == name {
			return i
		}
	}
	return -1
}

// removeMember must be called with h.mu held; it reports whether the room
// has no local member left.
func (h *Hub) removeMember(r *roomState, s *Socket) bool {
	delete(r.members, s)
	if len(r.members) == 0 {
		delete(h.rooms, r.name)
		return h.ownRoom(r.name) == nil
	}
	return false
}

func (h *Hub) unsubscribe(ctx context.Context, rooms []string) {
	if h.remote == nil {
		return
	}
	for _, room := range rooms {
		stripe := h.stripe(room)
		stripe.Lock()
		h.mu.RLock()
		again := h.localMembers(room) > 0
		h.mu.RUnlock()
		if !again && h.isSubscribed(room) {
			h.setSubscribed(room, false)
			if err := h.remote.Unsubscribe(ctx, room); err != nil {
				h.log.Warn("hub: unsubscribe failed", "room", room, "err", err)
			}
		}
		stripe.Unlock()
	}
}

func (h *Hub) stripe(room string) *sync.Mutex {
	var x uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(room); i++ {
		x = (x ^ uint32(room[i])) * 16777619
	}
	return &h.subStripes[x%uint32(len(h.subStripes))]
}

func (h *Hub) isSubscribed(room string) bool {
	h.subMapMu.Lock()
	defer h.subMapMu.Unlock()
	return h.subscribed[room]
}

func (h *Hub) setSubscribed(room string, on bool) {
	h.subMapMu.Lock()
	defer h.subMapMu.Unlock()
	if on {
		h.subscribed[room] = true
	} else {
		delete(h.subscribed, room)
	}
}

// Disconnect closes a socket's namespace, here or on its instance.
func (h *Hub) Disconnect(ctx context.Context, socketID string) error {
	h.mu.RLock()
	s, ok := h.sockets[socketID]
	h.mu.RUnlock()
	if !ok {
		return h.forward(ctx, socketID, InstanceMessage{Op: "disconnect", SocketID: socketID})
	}
	s.conn.Disconnect()
	return nil
}

func (h *Hub) forward(ctx context.Context, socketID string, m InstanceMessage) error {
	owner := h.owner(socketID)
	if h.remote == nil || owner == "" || owner == h.instance {
		return fmt.Errorf("%w: %q", ErrUnknownSocket, socketID)
	}
	return h.remote.PublishInstance(ctx, owner, m)
}

// Emit delivers event(args...) to the target on every instance.
func (h *Hub) Emit(ctx context.Context, to sdk.Target, event string, args []json.RawMessage) error {
	start := time.Now()
	defer func() { h.met.emitTime.Observe(time.Since(start).Seconds()) }()
	h.met.emits.WithLabelValues(targetLabel(int(to.Kind))).Inc()
	frame := h.encode(event, args)
	switch to.Kind {
	case sdk.ToSocket:
		return h.EmitFrameToSocket(ctx, to.ID, frame)
	case sdk.ToRoom:
		return h.EmitFrameToRoom(ctx, to.ID, frame)
	case sdk.ToUser:
		return h.EmitFrameToRoom(ctx, UserRoom(to.ID), frame)
	case sdk.ToLocalRoom:
		h.DeliverLocal(to.ID, frame)
		return nil
	}
	return fmt.Errorf("hub: unknown target kind %d", to.Kind)
}

// EmitFrameToSocket sends an encoded frame to one socket, wherever it is.
func (h *Hub) EmitFrameToSocket(ctx context.Context, socketID string, frame []byte) error {
	h.mu.RLock()
	s, ok := h.sockets[socketID]
	h.mu.RUnlock()
	if ok {
		return s.conn.Send(frame)
	}
	return h.forward(ctx, socketID, InstanceMessage{Op: "emit", SocketID: socketID, Frame: frame})
}

// EmitFrameToRoom sends an encoded frame to the room's members here and, through
// Redis, on every other instance.
func (h *Hub) EmitFrameToRoom(ctx context.Context, room string, frame []byte) error {
	h.DeliverLocal(room, frame)
	if h.remote != nil {
		if err := h.remote.PublishRoom(ctx, room, frame); err != nil {
			return fmt.Errorf("hub: publish to room %q: %w", room, err)
		}
	}
	return nil
}

// DeliverLocal sends a frame to this instance's members of a room.
func (h *Hub) DeliverLocal(room string, frame []byte) int {
	h.mu.RLock()
	var members map[*Socket]struct{}
	if r := h.rooms[room]; r != nil {
		members = r.members
	}
	own := h.ownRoom(room)
	conns := make([]Conn, 0, len(members)+1)
	if own != nil {
		conns = append(conns, own.conn)
	}
	for s := range members {
		conns = append(conns, s.conn)
	}
	h.mu.RUnlock()
	batch := len(conns) >= BatchMinMembers
	for _, c := range conns {
		// A failed send closes the conn itself (slow consumer).
		if b, ok := c.(BatchConn); ok && batch {
			_ = b.SendBatched(frame)
		} else {
			_ = c.Send(frame)
		}
	}
	h.met.deliveries.Add(float64(len(conns)))
	return len(conns)
}

// HandleInstanceMessage applies a message another instance addressed to one of
// this instance's sockets.
func (h *Hub) HandleInstanceMessage(ctx context.Context, m InstanceMessage) {
	var err error
	switch m.Op {
	case "emit":
		h.mu.RLock()
		s, ok := h.sockets[m.SocketID]
		h.mu.RUnlock()
		if ok {
			err = s.conn.Send(m.Frame)
		}
	case "join":
		err = h.Join(ctx, m.SocketID, m.Room)
	case "leave":
		err = h.Leave(ctx, m.SocketID, m.Room)
	case "disconnect":
		if _, ok := h.Get(m.SocketID); ok {
			err = h.Disconnect(ctx, m.SocketID)
		}
	default:
		err = fmt.Errorf("unknown op %q", m.Op)
	}
	if err != nil && !errors.Is(err, ErrUnknownSocket) {
		h.log.Debug("hub: instance message failed", "op", m.Op, "socket", m.SocketID, "err", err)
	}
}
