package presence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register("presence", func() sdk.Plugin { return New() })
}

// Event names the plugin handles (client to server).
const (
	EvEnterPage           = "enterPage"
	EvLeavePage           = "leavePage"
	EvObservePage         = "observePage"
	EvUnobservePage       = "unobservePage"
	EvPagePresence        = "pagePresence"
	EvPageUnpresence      = "pageUnpresence"
	EvConferencePresence  = "conferencePresence"
	EvObserveConference   = "observeConference"
	EvUnobserveConference = "unobserveConference"
)

// Event names the plugin emits (server to client).
const (
	EvPresences = "presences"
	EvEntered   = "entered"
	EvLeft      = "left"
)

// Delta is the payload of "entered" and "left".
type Delta struct {
	ListID string `json:"listId"`
	UserID string `json:"userId"`
}

// Snapshot is the payload of "presences".
type Snapshot struct {
	ListID  string   `json:"listId"`
	UserIDs []string `json:"userIds"`
}

// Internal bounds.
const (
	// sweepBatch is how many expired sockets one sweep step takes.
	sweepBatch = 500
	// maxSweepBatches bounds the steps of one sweep tick.
	maxSweepBatches = 20
	// bgOpTimeout bounds one Redis call of the refresher or sweeper.
	bgOpTimeout = 5 * time.Second
	// maxArgBytesFactor: a raw JSON string argument longer than
	// MaxPathBytes*factor+2 cannot decode to an acceptable value.
	maxArgBytesFactor = 6
)

// Plugin is the presence plugin. Safe for concurrent use.
type Plugin struct {
	sdk.Base

	// now is the clock (time.Now; tests may replace it before Start).
	now func() time.Time

	host  sdk.Host
	store sdk.Store
	log   *slog.Logger
	cfg   Config

	// order serialises each list's transitions and their deltas (locks.go).
	order listLocks
	// token tells this instance's delta marks from other instances' (recheck.go).
	token string

	mu      sync.Mutex
	sockets map[string]*socketState
	started bool
	cancel  context.CancelFunc
	// bgCtx is the background loops' context; rechecks run under it.
	bgCtx    context.Context
	rechecks map[recheckKey]*time.Timer
	wg       sync.WaitGroup
}

// socketState is what the plugin remembers about one of its sockets. mu
// serializes the socket's Redis updates (its events, its refresh and its
// disconnect) within this process; nothing is locked in Redis.
type socketState struct {
	mu    sync.Mutex
	sock  sdk.Socket
	lists map[string]struct{}
	// pending are lists whose exit script failed; the refresher retries them.
	pending map[string]struct{}
	gone    bool
	lim     *rate.Limiter
}

var _ sdk.Plugin = (*Plugin)(nil)

// New returns a presence plugin; Start configures it.
func New() *Plugin {
	return &Plugin{
		now:     time.Now,
		sockets: map[string]*socketState{},
		cfg:     DefaultConfig(),
		log:     slog.New(slog.DiscardHandler),
	}
}

// Describe declares the plugin's events.
func (p *Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "presence",
		Version: "1.0.0",
		Events: []string{
			EvEnterPage, EvLeavePage, EvObservePage, EvUnobservePage,
			EvPagePresence, EvPageUnpresence,
			EvConferencePresence, EvObserveConference, EvUnobserveConference,
		},
		// OnConnect only reloads the lists Redis holds for the socket: a
		// new socket has none (its first event makes its state), a socket
		// replayed after a restart does. OnDisconnect reads the lists from
		// Redis for a socket it has no state of.
		SkipConnect: true,
	}
}

// Start parses the config and starts the refresher and the sweeper.
func (p *Plugin) Start(_ context.Context, host sdk.Host, config json.RawMessage) error {
	cfg, err := ParseConfig(config)
	if err != nil {
		return err
	}
	if host == nil || host.Store() == nil {
		return errors.New("presence: start: no host store")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("presence: started twice")
	}
	p.started = true
	p.host, p.store, p.cfg = host, host.Store(), cfg
	// One instance's deltas take one path to each observer, whichever
	// plugin process made them, so the instance is what marks count by
	// (recheck.go); a random id stands in when the host gives none.
	p.token = host.InstanceID()
	if p.token == "" {
		p.token = kit.RandomHex()
	}
	p.log = host.Logger()
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.bgCtx = cancel, ctx
	p.wg.Add(2)
	go p.loop(ctx, cfg.RefreshInterval, p.refreshAll)
	go p.loop(ctx, cfg.SweepInterval, p.sweep)
	return nil
}

// Stop stops the refresher and the sweeper and waits for them (or for ctx).
// It leaves the Redis state alone: after a plugin restart the host replays
// OnConnect and the state is picked up again; if the process is gone for
// good the sweepers of the other instances clean up.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel := p.cancel
	p.cancel = nil
	p.stopRechecks()
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("presence: stop: %w", ctx.Err())
	}
}

// loop runs f after each wait of jitter(every) until ctx ends.
func (p *Plugin) loop(ctx context.Context, every time.Duration, f func(context.Context)) {
	defer p.wg.Done()
	t := time.NewTimer(jitter(every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
			t.Reset(jitter(every))
		}
	}
}

// jitter returns a random duration in [3/4, 1] of every. Instances started
// together (a deploy) so drift apart instead of refreshing and sweeping in
// step, and no wait is longer than every, which the crash-safety bound
// (window + sweep_interval) and the refresh margin count on.
func jitter(every time.Duration) time.Duration {
	return every - rand.N(every/4+1)
}

// errNotStarted is returned by the hooks before Start succeeded.
var errNotStarted = errors.New("presence: not started")

func (p *Plugin) ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		return errNotStarted
	}
	return nil
}

// state returns the socket's state, creating it if needed.
func (p *Plugin) state(s sdk.Socket) *socketState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.sockets[s.ID]
	if st == nil {
		st = &socketState{
			sock:  s,
			lists: map[string]struct{}{},
			lim:   rate.NewLimiter(rate.Limit(p.cfg.EventsPerSecond), p.cfg.EventBurst),
		}
		p.sockets[s.ID] = st
	}
	return st
}

// OnConnect registers the socket. When Redis already holds lists for it (the
// host replays OnConnect after a plugin restart), they are loaded and their
// deadlines refreshed at once, so the socket stays present.
func (p *Plugin) OnConnect(ctx context.Context, s sdk.Socket) error {
	if err := p.ready(); err != nil {
		return err
	}
	st := p.state(s)
	lists, err := p.sessionLists(ctx, s.ID)
	if err != nil {
		return fmt.Errorf("presence connect %s: %w", s.ID, err)
	}
	if len(lists) == 0 {
		return nil
	}
	if len(lists) > p.cfg.MaxListsPerSocket {
		lists = lists[:p.cfg.MaxListsPerSocket]
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gone {
		return nil
	}
	st.sock = s
	for _, l := range lists {
		st.lists[l] = struct{}{}
	}
	if err := p.enterOrdered(ctx, s, slices.Collect(maps.Keys(st.lists))); err != nil {
		return fmt.Errorf("presence connect %s: %w", s.ID, err)
	}
	return nil
}

// OnDisconnect removes the socket from every page it was on, emitting "left"
// where it was the user's last socket, and forgets it.
func (p *Plugin) OnDisconnect(ctx context.Context, s sdk.Socket, _ string) error {
	if err := p.ready(); err != nil {
		return err
	}
	p.mu.Lock()
	st := p.sockets[s.ID]
	delete(p.sockets, s.ID)
	p.mu.Unlock()
	var lists []string
	if st != nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.gone = true
		lists = slices.AppendSeq(slices.Collect(maps.Keys(st.lists)), maps.Keys(st.pending))
	} else {
		var err error
		if lists, err = p.sessionLists(ctx, s.ID); err != nil {
			return fmt.Errorf("presence disconnect %s: %w", s.ID, err)
		}
	}
	if _, _, err := p.exitAllOrdered(ctx, s.ID, s.UserID, false, lists); err != nil {
		return fmt.Errorf("presence disconnect %s: %w", s.ID, err)
	}
	return nil
}

// OnEvent handles the presence events. Bad or refused arguments are logged
// and otherwise ignored (nothing is sent to the client, as in the original);
// no event is acked.
func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	if err := p.ready(); err != nil {
		return nil, err
	}
	st := p.state(e.Socket)
	if !st.lim.Allow() {
		p.log.Debug("presence event ignored", "socket", e.Socket.ID, "event", e.Name, "reason", "rate limited")
		return nil, nil
	}
	arg, err := p.stringArg(e.Args)
	if err != nil {
		p.ignored(e, err.Error())
		return nil, nil
	}
	var listID string
	switch e.Name {
	case EvConferencePresence, EvObserveConference, EvUnobserveConference:
		listID, err = ConferenceListID(e.Socket, arg, p.cfg.MaxPathBytes)
	default:
		listID, err = ListID(e.Socket, arg, p.cfg.MaxPathBytes)
	}
	if err != nil {
		p.ignored(e, err.Error())
		return nil, nil
	}
	switch e.Name {
	case EvEnterPage, EvPagePresence, EvConferencePresence:
		err = p.handleEnter(ctx, st, e, listID)
	case EvLeavePage, EvPageUnpresence:
		err = p.handleLeave(ctx, st, e.Socket, listID)
	case EvObservePage, EvObserveConference:
		err = p.handleObserve(ctx, e.Socket, listID)
	case EvUnobservePage, EvUnobserveConference:
		err = p.host.Leave(ctx, e.Socket.ID, RoomPrefix+listID)
	default:
		p.ignored(e, "unknown event")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("presence %s from %s: %w", e.Name, e.Socket.ID, err)
	}
	return nil, nil
}

// ignored logs an event the plugin ignores. The logger's attributes are built
// here, not for every event: a logger With attributes formats them at once.
func (p *Plugin) ignored(e sdk.Event, reason string) {
	p.log.Info("presence event ignored", "socket", e.Socket.ID, "event", e.Name, "reason", reason)
}

// stringArg extracts the single string argument of an event.
func (p *Plugin) stringArg(args []json.RawMessage) (string, error) {
	if len(args) == 0 {
		return "", errors.New("missing argument")
	}
	raw := bytes.TrimSpace(args[0])
	if len(raw) == 0 || raw[0] != '"' {
		return "", errors.New("argument is not a string")
	}
	if len(raw) > p.cfg.MaxPathBytes*maxArgBytesFactor+2 {
		return "", fmt.Errorf("argument of %d bytes: %w", len(raw), ErrTooLong)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("argument is not a valid string: %w", err)
	}
	return s, nil
}

func (p *Plugin) handleEnter(ctx context.Context, st *socketState, e sdk.Event, listID string) error {
	s := e.Socket
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gone {
		return nil
	}
	if _, ok := st.lists[listID]; !ok && len(st.lists) >= p.cfg.MaxListsPerSocket {
		p.ignored(e, fmt.Sprintf("socket is on %d lists already", len(st.lists)))
		return nil
	}
	st.sock = s
	st.lists[listID] = struct{}{}
	delete(st.pending, listID)
	return p.enterOrdered(ctx, s, []string{listID})
}

func (p *Plugin) handleLeave(ctx context.Context, st *socketState, s sdk.Socket, listID string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gone {
		return nil
	}
	delete(st.lists, listID)
	if err := p.exitOrdered(ctx, s, listID); err != nil {
		if st.pending == nil {
			st.pending = map[string]struct{}{}
		}
		if len(st.pending) < p.cfg.MaxListsPerSocket {
			st.pending[listID] = struct{}{}
		}
		return err
	}
	return nil
}

// enterOrdered runs enter.lua for the socket on lists and emits "entered"
// where the user is new, holding the lists' locks across both so that this
// instance's deltas of each list leave in Redis's order. Everything else
// (building the arguments, logging a failed emit) happens outside the locks:
// other events of the list queue behind them.
func (p *Plugin) enterOrdered(ctx context.Context, s sdk.Socket, lists []string) error {
	args := p.enterArgs(s, lists)
	unlock, err := p.order.lock(ctx, lists...)
	if err != nil {
		return fmt.Errorf("presence enter: %w", err)
	}
	added, recheck, err := p.enter(ctx, s.ID, args)
	var emitErr error
	if err == nil {
		emitErr = p.emitDeltas(ctx, EvEntered, s.UserID, added)
	}
	unlock()
	p.logEmitErr(EvEntered, s.UserID, emitErr)
	p.scheduleRecheck(s.UserID, recheck)
	return err
}

// exitOrdered runs exit.lua and emits "left" if the user left, holding the
// list's lock across both (see enterOrdered).
func (p *Plugin) exitOrdered(ctx context.Context, s sdk.Socket, listID string) error {
	now := ms(p.now())
	unlock, err := p.order.lock(ctx, listID)
	if err != nil {
		return fmt.Errorf("presence leave: %w", err)
	}
	left, recheck, err := p.exit(ctx, s, listID, now)
	var emitErr error
	if err == nil && left {
		emitErr = p.emitDeltas(ctx, EvLeft, s.UserID, []string{listID})
	}
	unlock()
	p.logEmitErr(EvLeft, s.UserID, emitErr)
	if recheck {
		p.scheduleRecheck(s.UserID, []string{listID})
	}
	return err
}

// exitAllOrdered runs exitall.lua (see exitAll) and emits "left" for the
// lists the user left, holding the locks of lists: the lists the caller
// knows the socket is on (the script finds them itself, atomically).
func (p *Plugin) exitAllOrdered(ctx context.Context, socketID, userID string, sweep bool, lists []string) (string, []string, error) {
	now := ms(p.now())
	unlock, err := p.order.lock(ctx, lists...)
	if err != nil {
		return "", nil, fmt.Errorf("presence exit: %w", err)
	}
	uid, left, recheck, err := p.exitAllAt(ctx, socketID, userID, sweep, now)
	if err != nil {
		unlock()
		return "", nil, err
	}
	defer p.scheduleRecheck(uid, recheck)
	locked, late := left, []string(nil)
	if !allIn(left, lists) {
		locked = slices.DeleteFunc(slices.Clone(left), func(l string) bool {
			if slices.Contains(lists, l) {
				return false
			}
			late = append(late, l)
			return true
		})
	}
	emitErr := p.emitDeltas(ctx, EvLeft, uid, locked)
	unlock()
	p.logEmitErr(EvLeft, uid, emitErr)
	if len(late) > 0 {
		// A list the caller did not know of: added to SessionLists after
		// the sweeper read it (only an enter of this very socket adds one,
		// which its new deadline makes the sweep skip, clock skew aside),
		// or a leave whose retry this process gave up on. Emit under the
		// lists' locks; without them if the wait fails, rather than not
		// at all.
		unlock, err := p.order.lock(ctx, late...)
		emitErr := p.emitDeltas(ctx, EvLeft, uid, late)
		if err == nil {
			unlock()
		}
		p.logEmitErr(EvLeft, uid, emitErr)
	}
	return uid, left, nil
}

// allIn reports whether every element of a is in b.
func allIn(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// handleObserve joins the list's room first, then sends the snapshot, so no
// delta made after the snapshot was read can be missed.
func (p *Plugin) handleObserve(ctx context.Context, s sdk.Socket, listID string) error {
	if err := p.host.Join(ctx, s.ID, RoomPrefix+listID); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	ids, err := p.members(ctx, listID)
	if err != nil {
		return err
	}
	if err := p.host.Emit(ctx, sdk.SocketTarget(s.ID), EvPresences, Snapshot{ListID: listID, UserIDs: ids}); err != nil {
		return fmt.Errorf("emit %s: %w", EvPresences, err)
	}
	return nil
}

// emitDeltas sends event {listId, userId} to each list's room. It returns
// the failures for logEmitErr, called once the lists' locks are released.
func (p *Plugin) emitDeltas(ctx context.Context, event, userID string, lists []string) error {
	var errs []error
	for _, l := range lists {
		if err := p.host.Emit(ctx, sdk.RoomTarget(RoomPrefix+l), event, Delta{ListID: l, UserID: userID}); err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", l, err))
		}
	}
	return errors.Join(errs...)
}

// logEmitErr logs failed emits; they are not returned to the caller, since
// the state in Redis is already right and a re-observe heals a client.
func (p *Plugin) logEmitErr(event, userID string, err error) {
	if err != nil {
		p.log.Warn("presence emit failed", "event", event, "userId", userID, "err", err)
	}
}

// snapshot returns the plugin's live socket states.
func (p *Plugin) snapshot() []*socketState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Values(p.sockets))
}

// refreshAll pushes the deadlines of every socket this process holds.
func (p *Plugin) refreshAll(ctx context.Context) {
	// refreshBatch sockets share one script round trip (over gRPC in
	// subprocess mode), and refreshParallel batches run at once: a round
	// over 10,000 sockets is ~160 round trips, not 10,000 that would compete
	// with the events' own round trips every refresh_interval.
	sem := make(chan struct{}, refreshParallel)
	var wg sync.WaitGroup
	for batch := range slices.Chunk(p.snapshot(), refreshBatch) {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.refresh(ctx, batch...)
		})
	}
	wg.Wait()
}

const (
	// refreshBatch is how many sockets one refresh script updates.
	refreshBatch = 64
	// refreshParallel is how many refresh batches run at once.
	refreshParallel = 4
)

// refresh pushes the deadlines of sts on every list they are on (one
// refresh.lua round trip), retrying their failed leaves first; lists a user
// is missing from (flushed, or swept while this refresh was late) are
// entered as an enterPage would, emitting "entered" again.
//
// Each socket's mu is held from before the script until its missing lists
// are entered, so that the script cannot put back a list the socket left
// meanwhile. Only refresh takes several sockets' mu, on disjoint batches, and
// nothing waits for a socket's mu while holding a list lock, so this cannot
// deadlock.
func (p *Plugin) refresh(ctx context.Context, sts ...*socketState) {
	opCtx, cancel := context.WithTimeout(ctx, bgOpTimeout)
	defer cancel()
	held := make([]*socketState, 0, len(sts))
	socks := make([]sdk.Socket, 0, len(sts))
	lists := make([][]string, 0, len(sts))
	for _, st := range sts {
		st.mu.Lock()
		if st.gone || !p.retryLeaves(opCtx, st) || len(st.lists) == 0 {
			st.mu.Unlock()
			continue
		}
		held = append(held, st)
		socks = append(socks, st.sock)
		lists = append(lists, slices.Collect(maps.Keys(st.lists)))
	}
	if len(held) == 0 {
		return
	}
	// No list locks: the script changes nobody's presence, so it needs no
	// order, and most sockets share their conference's list, so locking
	// would run the batches one by one.
	missing, err := p.refreshBatch(opCtx, socks, lists)
	if err != nil {
		p.log.Warn("presence refresh failed", "sockets", len(held), "err", err)
	}
	for _, st := range held {
		if m := missing[st.sock.ID]; len(m) > 0 {
			if err := p.enterOrdered(opCtx, st.sock, m); err != nil {
				p.log.Warn("presence refresh failed", "socket", st.sock.ID, "err", err)
			}
		}
		st.mu.Unlock()
	}
}

// retryLeaves retries the socket's failed leaves (st.mu held); false if one
// failed again, which leaves the socket's refresh to the next round.
func (p *Plugin) retryLeaves(ctx context.Context, st *socketState) bool {
	for l := range st.pending {
		if err := p.exitOrdered(ctx, st.sock, l); err != nil {
			p.log.Warn("presence retry of leave failed", "socket", st.sock.ID, "err", err)
			return false
		}
		delete(st.pending, l)
	}
	return true
}

// sweep removes sockets whose deadline has passed (their instance died or
// lost Redis), emitting "left". Sockets this process holds are refreshed
// instead. Several instances may sweep at once: exitall.lua re-checks the
// deadline atomically, so each socket is removed, and each "left" emitted,
// once.
func (p *Plugin) sweep(ctx context.Context) {
	for range maxSweepBatches {
		opCtx, cancel := context.WithTimeout(ctx, bgOpTimeout)
		socks, err := p.expired(opCtx, sweepBatch)
		cancel()
		if err != nil {
			p.log.Warn("presence sweep failed", "err", err)
			return
		}
		for _, es := range socks {
			if ctx.Err() != nil {
				return
			}
			p.sweepOne(ctx, es.id, es.lists)
		}
		if len(socks) < sweepBatch {
			return
		}
	}
}

// sweepOne removes one expired socket; lists are the lists Redis held for it
// when the sweeper read it.
func (p *Plugin) sweepOne(ctx context.Context, socketID string, lists []string) {
	p.mu.Lock()
	st := p.sockets[socketID]
	p.mu.Unlock()
	if st != nil {
		// Ours and alive: our refresh is late (a pause?); refresh now.
		st.mu.Lock()
		live := !st.gone && len(st.lists) > 0
		st.mu.Unlock()
		if live {
			p.refresh(ctx, st)
			return
		}
	}
	opCtx, cancel := context.WithTimeout(ctx, bgOpTimeout)
	defer cancel()
	uid, left, err := p.exitAllOrdered(opCtx, socketID, "", true, lists)
	if err != nil {
		p.log.Warn("presence sweep failed", "socket", socketID, "err", err)
		return
	}
	if len(left) > 0 {
		p.log.Info("presence swept expired socket", "socket", socketID, "userId", uid, "lists", len(left))
	}
}
