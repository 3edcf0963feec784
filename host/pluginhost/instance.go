package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Modes of a plugin (config plugins.<name>.mode).
const (
	ModeSubprocess = "subprocess"
	ModeInProcess  = "inprocess"
)

// States of a plugin (Status.State).
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateStopped    = "stopped"
	StateFailed     = "failed"
)

// Supervision and timing rules (see doc.go).
const (
	backoffMin      = 100 * time.Millisecond
	backoffMax      = 5 * time.Second
	backoffResetAft = 30 * time.Second
	describeTimeout = 10 * time.Second
	startTimeout    = 30 * time.Second
	killTimeout     = 5 * time.Second
	replayTimeout   = 10 * time.Second
	deliveryWait    = 10 * time.Second
	httpTimeout     = 30 * time.Second
	maxHTTPBody     = 1 << 20
)

// instance is one enabled plugin and its current process (generation).
type instance struct {
	name    string
	mode    string
	builtin string // registered name to re-exec with ("" for external)
	path    string // external binary
	tls     bool   // AutoMTLS with the process (config plugins.<name>.tls)
	factory func() sdk.Plugin
	config  json.RawMessage

	m      *Manager
	logger *slog.Logger
	met    *pluginMetrics
	host   *pluginServices

	mu        sync.RWMutex
	state     string
	client    sdk.Client
	proc      *sdk.Process // nil in-process
	desc      sdk.Descriptor
	restarts  int
	lastErr   string
	upSince   time.Time
	connected map[string]struct{} // sockets this generation has seen OnConnect for (unless SkipConnect)

	// skip mirrors the socket calls the current generation does without
	// (skipConnect, skipDisconnect; set under mu in start), so Connect and
	// Disconnect pass a plugin that wants neither without taking mu.
	skip     atomic.Uint32
	inflight atomic.Int64
}

// Bits of instance.skip.
const (
	skipConnect uint32 = 1 << iota
	skipDisconnect
)

func skipBits(d sdk.Descriptor) uint32 {
	var b uint32
	if d.SkipConnect {
		b |= skipConnect
	}
	if d.SkipDisconnect {
		b |= skipDisconnect
	}
	return b
}

// launched is a started-but-not-yet-Start()ed plugin.
type launched struct {
	client sdk.Client
	proc   *sdk.Process
	desc   sdk.Descriptor
}

func (l *launched) kill() {
	if l.proc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		_ = l.proc.Kill(ctx)
		return
	}
	_ = l.client.Close()
}

// launch starts a process (or builds the in-process plugin) and describes it.
func (in *instance) launch(ctx context.Context) (*launched, error) {
	l := &launched{}
	if in.mode == ModeInProcess {
		l.client = sdk.NewLocalClient(in.factory())
	} else {
		proc, err := sdk.Launch(sdk.LaunchConfig{
			Builtin:      in.builtin,
			Path:         in.path,
			Logger:       newHCLogAdapter(in.host.logger),
			Output:       &lineLogger{l: in.host.logger, level: slog.LevelInfo, msg: "plugin output"},
			StartTimeout: sdk.DefaultStartTimeout,
			SocketDir:    in.m.sockDir(),
			TLS:          in.tls,
		})
		if err != nil {
			return nil, err
		}
		l.client, l.proc = proc.Client, proc
	}
	dctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	desc, err := l.client.Describe(dctx)
	if err != nil {
		l.kill()
		return nil, fmt.Errorf("describe: %w", err)
	}
	l.desc = desc
	return l, nil
}

// start calls the plugin's Start, then makes the generation current:
// OnConnect is replayed for every live socket (unless the plugin set
// SkipReplay) before the state becomes running, under the lock that
// Connect/Event take, so no event of a socket overtakes its replayed
// OnConnect.
func (in *instance) start(ctx context.Context, l *launched, replay bool) error {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := l.client.Start(sctx, in.host, in.config); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// Queues and exchanges may depend on the plugin's config (e.g. chat's
	// writeback queues), which it only has after Start: read them again.
	// Events and routes stay as first described (their claims are checked).
	if d, err := l.client.Describe(sctx); err == nil {
		l.desc.Queues, l.desc.Exchanges = d.Queues, d.Exchanges
	} else {
		in.logger.Warn("plugin: describe after start failed; using the first description", "error", err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	select {
	case <-in.m.stop: // Manager.Stop began: don't bring up a generation it won't stop
		return errors.New("start: the plugin host is stopping")
	default:
	}
	in.client, in.proc, in.desc = l.client, l.proc, l.desc
	in.connected = make(map[string]struct{})
	in.skip.Store(skipBits(l.desc))
	if replay && !l.desc.SkipReplay {
		deadline := time.Now().Add(replayTimeout)
		for _, s := range in.m.svc.LiveSockets() {
			if !l.desc.SkipConnect { // else disconnect does not look the socket up
				in.connected[s.ID] = struct{}{}
			}
			for {
				err := l.client.Connect(s, in.logConnectErr(s))
				if !errors.Is(err, sdk.ErrOverloaded) || time.Now().After(deadline) {
					if err != nil {
						in.logger.Warn("plugin: replaying OnConnect failed", "socket", s.ID, "error", err)
					}
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	in.state = StateRunning
	in.upSince = time.Now()
	in.met.up.Set(1)
	return nil
}

func (in *instance) logConnectErr(s sdk.Socket) func(error) {
	return func(err error) {
		if err != nil {
			in.logger.Debug("plugin OnConnect failed", "socket", s.ID, "error", err)
		}
	}
}

// supervise restarts a subprocess plugin whenever its process dies, with
// exponential backoff, until the manager stops.
func (in *instance) supervise(stop <-chan struct{}) {
	backoff := backoffMin
	for {
		in.mu.RLock()
		client, proc, up := in.client, in.proc, in.upSince
		in.mu.RUnlock()
		select {
		case <-stop:
			return
		case <-client.Done():
		}
		select {
		case <-stop:
			return
		default:
		}
		// The generation is gone: take it down, fail its in-flight calls.
		died := time.Now()
		in.mu.Lock()
		in.state = StateRestarting
		in.met.up.Set(0)
		in.mu.Unlock()
		kctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		_ = proc.Kill(kctx)
		cancel()
		status := proc.ExitStatus()
		if time.Since(up) >= backoffResetAft {
			backoff = backoffMin
		}
		in.setErr(fmt.Sprintf("process %d exited: %s", proc.PID, orUnknown(status)))
		in.logger.Error("plugin process died; restarting", "pid", proc.PID, "exit", orUnknown(status),
			"uptime", time.Since(up).Round(time.Millisecond).String(), "restart_in", backoff.String())

		for {
			select {
			case <-stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, backoffMax)
			if err := in.restart(stop); err != nil {
				in.mu.Lock()
				in.state = StateFailed
				in.mu.Unlock()
				in.setErr(err.Error())
				in.logger.Error("plugin restart failed", "error", err, "retry_in", backoff.String())
				continue
			}
			in.met.downtime.Observe(time.Since(died).Seconds())
			break
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func (in *instance) setErr(s string) {
	in.mu.Lock()
	in.lastErr = s
	in.mu.Unlock()
}

// restart launches and starts a new generation.
func (in *instance) restart(stop <-chan struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	in.mu.Lock()
	in.state = StateRestarting
	in.mu.Unlock()
	l, err := in.launch(ctx)
	if err != nil {
		return err
	}
	if err := in.start(ctx, l, true); err != nil {
		l.kill()
		return err
	}
	in.mu.Lock()
	in.restarts++
	pid := 0
	if in.proc != nil {
		pid = in.proc.PID
	}
	in.mu.Unlock()
	in.met.restarts.Inc()
	in.logger.Info("plugin restarted", "pid", pid)
	return nil
}

// running returns the current client if the plugin is running.
func (in *instance) running() sdk.Client {
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.state != StateRunning {
		return nil
	}
	return in.client
}

// waitRunning waits (bounded by ctx and d) for the plugin to run.
func (in *instance) waitRunning(ctx context.Context, d time.Duration) (sdk.Client, error) {
	if c := in.running(); c != nil {
		return c, nil
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(d)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("plugin %s: %w", in.name, sdk.ErrPluginUnavailable)
		case <-t.C:
			if c := in.running(); c != nil {
				return c, nil
			}
		}
	}
}

// connect sends OnConnect, unless the plugin does without it
// (sdk.Descriptor.SkipConnect): then a connect costs it nothing, not even mu.
func (in *instance) connect(s sdk.Socket) {
	if in.skip.Load()&skipConnect != 0 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != StateRunning || in.desc.SkipConnect {
		return // replayed from LiveSockets when the plugin is back (unless SkipReplay)
	}
	if _, seen := in.connected[s.ID]; seen {
		return
	}
	in.connected[s.ID] = struct{}{}
	if err := in.client.Connect(s, in.logConnectErr(s)); err != nil {
		in.logger.Warn("plugin: OnConnect not delivered", "socket", s.ID, "error", err)
	}
}

// disconnect sends OnDisconnect to a running plugin that wants it: for a
// socket this generation got OnConnect for, or for any socket when the
// plugin does without OnConnect (it cannot tell which sockets it knows).
func (in *instance) disconnect(s sdk.Socket, reason string) {
	if in.skip.Load() == skipConnect|skipDisconnect {
		return // wants neither call, so it has no record of the socket either
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	_, seen := in.connected[s.ID]
	delete(in.connected, s.ID)
	if in.state != StateRunning || in.desc.SkipDisconnect || (!seen && !in.desc.SkipConnect) {
		return
	}
	if err := in.client.Disconnect(s, reason, func(err error) {
		if err != nil {
			in.logger.Debug("plugin OnDisconnect failed", "socket", s.ID, "error", err)
		}
	}); err != nil {
		in.logger.Warn("plugin: OnDisconnect not delivered", "socket", s.ID, "error", err)
	}
}

// event hands one event to the plugin. While the plugin is not running (or
// its queue is full, or the host drains) the event is dropped: done gets
// ErrPluginUnavailable (or ErrOverloaded), and the drop is counted and logged
// at debug. Either way it ends the event's count in Manager.eventsInFlight
// once done returned (so after the ack was sent).
func (in *instance) event(e sdk.Event, done func([]json.RawMessage, error)) {
	in.mu.RLock()
	var err error
	switch {
	case in.m.draining.Load():
		err = fmt.Errorf("plugin %s: %w", in.name, errDraining)
	case in.state != StateRunning:
		err = fmt.Errorf("plugin %s: %w", in.name, sdk.ErrPluginUnavailable)
	default:
		start := time.Now()
		in.inflight.Add(1)
		err = in.client.Event(e, func(ack []json.RawMessage, err error) {
			in.met.eventSeconds.Observe(time.Since(start).Seconds())
			if err != nil {
				if errors.Is(err, sdk.ErrPluginUnavailable) {
					in.met.dropped.Inc()
					in.met.droppedTotal.Inc()
				} else {
					in.met.failed.Inc()
				}
			} else {
				in.met.ok.Inc()
			}
			in.inflight.Add(-1)
			if done != nil {
				done(ack, err)
			}
			in.m.eventsInFlight.Add(-1)
		})
		if err != nil {
			in.inflight.Add(-1)
			err = fmt.Errorf("plugin %s: %w", in.name, err)
		}
	}
	in.mu.RUnlock()
	if err != nil {
		in.met.dropped.Inc()
		in.met.droppedTotal.Inc()
		in.logger.Debug("plugin event dropped", "event", e.Name, "socket", e.Socket.ID, "error", err)
		if done != nil {
			done(nil, err)
		}
		in.m.eventsInFlight.Add(-1)
	}
}

// deliver hands a bus delivery to the plugin and waits for its answer. While
// the plugin restarts it waits up to deliveryWait, then nacks (requeue).
func (in *instance) deliver(ctx context.Context, d sdk.Delivery) error {
	c, err := in.waitRunning(ctx, deliveryWait)
	if err != nil {
		return err
	}
	ch := make(chan error, 1)
	in.inflight.Add(1)
	defer in.inflight.Add(-1)
	if err := c.Deliver(d, func(err error) { ch <- err }); err != nil {
		return fmt.Errorf("plugin %s: %w", in.name, err)
	}
	select {
	case err := <-ch:
		if errors.Is(err, sdk.ErrEmittedBeforeExit) {
			// Its emits went out: a redelivery would repeat them.
			in.logger.Warn("plugin died while handling a delivery it had already emitted for; acking it", "queue", d.Queue)
			return nil
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deliverAsync hands d to the plugin and returns; settle gets the plugin's
// answer. It waits only while the plugin is not running (bounded, as
// deliver), so the bus keeps passing deliveries in queue order to a plugin
// that batches them (sdk.Queue.BatchMax).
func (in *instance) deliverAsync(ctx context.Context, d sdk.Delivery, settle func(error)) {
	c, err := in.waitRunning(ctx, deliveryWait)
	if err != nil {
		settle(err)
		return
	}
	in.inflight.Add(1)
	if err := c.Deliver(d, func(err error) { in.inflight.Add(-1); settle(err) }); err != nil {
		in.inflight.Add(-1)
		settle(fmt.Errorf("plugin %s: %w", in.name, err))
	}
}

// stop drains and stops this plugin: no new calls, in-flight ones finish
// (bounded by ctx), Plugin.Stop, then a bounded kill.
func (in *instance) stop(ctx context.Context) error {
	in.mu.Lock()
	wasRunning := in.state == StateRunning
	in.state = StateStopped
	in.met.up.Set(0)
	client, proc := in.client, in.proc
	in.mu.Unlock()
	if client == nil {
		return nil
	}
	var errs []error
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
drain:
	for in.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("plugin %s: drain: %d calls still in flight: %w", in.name, in.inflight.Load(), ctx.Err()))
			break drain
		case <-t.C:
		}
	}
	if wasRunning && ctx.Err() == nil {
		if err := client.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: stop: %w", in.name, err))
		}
	}
	if proc != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
		defer cancel()
		if err := proc.Kill(kctx); err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", in.name, err))
		}
	} else {
		_ = client.Close()
	}
	return errors.Join(errs...)
}
