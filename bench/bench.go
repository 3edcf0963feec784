// Package bench holds the load scenarios of `realtime bench`: connect (a ramp
// of authenticated sockets, connect rate and latency, server memory per
// socket), presence (enter/leave churn observed by other sockets), chat
// (fan-out of messages to many subscribers at rising rates), coldchat (many
// sockets subscribe to a fresh chat at once; does the next message reach
// all of them, and how fast) and plugin (acked round trips through the echo
// plugin).
//
// Every scenario is bounded in time and in the number of sockets, talks to a
// loopback server through internal/sioclient, and returns a Result. The
// server can be any running realtime; Spawn starts one.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
)

// Scenario names.
const (
	ScenarioConnect  = "connect"
	ScenarioPresence = "presence"
	ScenarioChat     = "chat"
	ScenarioColdChat = "coldchat"
	ScenarioPlugin   = "plugin"
)

// Scenarios lists the scenario names in the order `bench all` runs them.
var Scenarios = []string{ScenarioConnect, ScenarioPresence, ScenarioChat, ScenarioColdChat, ScenarioPlugin}

// Limits every scenario enforces whatever the flags say.
const (
	MaxConnections = 60000
	MaxDuration    = 10 * time.Minute
	MaxRate        = 1_000_000
)

// TokenFunc returns a token the server accepts for user.
type TokenFunc func(user string) (string, error)

// Config configures a scenario run.
type Config struct {
	// URL is the server's base URL (http://127.0.0.1:3002).
	URL string
	// AllowRemote permits a non-loopback URL.
	AllowRemote bool
	// Token signs tokens.
	Token TokenFunc
	// Connections: connect: sockets to open (default 1000); presence:
	// churning sockets (default max(50, Rate/4)); plugin: sockets sending
	// concurrently (default 8).
	Connections int
	// Concurrency is how many dials run at once (default 64).
	Concurrency int
	// Users is how many distinct users (tokens) the connect scenario spreads
	// its sockets over (default min(Connections, 2000)).
	Users int
	// Duration: connect: how long the sockets stay open before measuring
	// memory (default 5s); presence, plugin: the run (default 10s); chat:
	// each rate step (default 5s); coldchat: how long after the send a
	// subscriber may still receive the message before it counts as missed
	// (default 5s).
	Duration time.Duration
	// Rate: presence: enter+leave events per second (default 1000); chat:
	// the first step's messages per second (default 50); plugin: events per
	// second (0 = as fast as the sockets go, closed loop); connect: connects
	// per second (0 = as fast as Concurrency allows).
	Rate float64
	// MaxRate is the chat scenario's last step (default 6400 msgs/s).
	MaxRate float64
	// Subscribers is the chat fan-out (default 1000; coldchat: 2000).
	Subscribers int
	// Senders is how many sockets share the chat ramp's sends (default 4,
	// flag --senders; the ack phase uses the first).
	Senders int
	// Pages: connect: pages the sockets enter (default 100; 0 = no
	// enterPage); presence: observed pages (default 50).
	Pages int
	// Observers per page in the presence scenario (default 2).
	Observers int
	// TargetP99 ends the chat ramp when a step's p99 exceeds it (default 50ms).
	TargetP99 time.Duration
	// ColdTarget is the coldchat delivery target: every subscriber receives
	// the message within it after the send (default 500ms).
	ColdTarget time.Duration
	// Conference is the slug in page paths (default "demo": the static
	// directory's default conference).
	Conference string
	// ServerPID, when > 0, is read for RSS (/proc/<pid>/status).
	ServerPID int
	// Progress receives progress lines (nil = none).
	Progress io.Writer
	// Holding, when set, is called by the connect scenario after it measured
	// memory, while every socket is still open (e.g. to take a heap profile
	// of an in-process server).
	Holding func()
}

func (c *Config) defaults(scenario string) error {
	if c.URL == "" {
		c.URL = "http://127.0.0.1:3002"
	}
	if !c.AllowRemote {
		if err := CheckLoopback(c.URL); err != nil {
			return err
		}
	}
	if c.Token == nil {
		return errors.New("bench: no token source")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Conference == "" {
		c.Conference = "demo"
	}
	if c.TargetP99 <= 0 {
		c.TargetP99 = 50 * time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	switch scenario {
	case ScenarioConnect:
		def(&c.Connections, 1000)
		def(&c.Users, min(c.Connections, 2000))
		defDur(&c.Duration, 5*time.Second)
		if c.Pages < 0 {
			c.Pages = 0
		}
	case ScenarioPresence:
		defF(&c.Rate, 1000)
		def(&c.Connections, max(50, int(c.Rate/4)))
		def(&c.Pages, 50)
		def(&c.Observers, 2)
		defDur(&c.Duration, 10*time.Second)
	case ScenarioChat:
		defF(&c.Rate, 50)
		defF(&c.MaxRate, 6400)
		def(&c.Subscribers, 1000)
		def(&c.Senders, 4)
		defDur(&c.Duration, 5*time.Second)
	case ScenarioColdChat:
		def(&c.Subscribers, 2000)
		defDur(&c.Duration, 5*time.Second)
		defDur(&c.ColdTarget, 500*time.Millisecond)
	case ScenarioPlugin:
		def(&c.Connections, 8)
		defDur(&c.Duration, 10*time.Second)
	default:
		return fmt.Errorf("bench: unknown scenario %q (want one of %v)", scenario, Scenarios)
	}
	if c.Connections > MaxConnections || c.Subscribers > MaxConnections || c.Senders > MaxConnections {
		return fmt.Errorf("bench: at most %d connections", MaxConnections)
	}
	if c.Duration > MaxDuration {
		return fmt.Errorf("bench: duration at most %s", MaxDuration)
	}
	if c.Rate < 0 || c.Rate > MaxRate || c.MaxRate > MaxRate || math.IsNaN(c.Rate) {
		return fmt.Errorf("bench: rate must be between 0 and %d", MaxRate)
	}
	return nil
}

func def(p *int, v int) {
	if *p <= 0 {
		*p = v
	}
}

func defF(p *float64, v float64) {
	if *p <= 0 {
		*p = v
	}
}

func defDur(p *time.Duration, v time.Duration) {
	if *p <= 0 {
		*p = v
	}
}

// CheckLoopback returns an error unless rawURL's host is a loopback address
// (or "localhost").
func CheckLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("bench: bad url %q: %w", rawURL, err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("bench: %q is not a loopback address; pass --allow-remote to load a remote server", host)
}

// Result is what a scenario measured. Zero fields were not measured.
type Result struct {
	Scenario string `json:"scenario"`
	// Connections is how many sockets the scenario held at its peak.
	Connections int `json:"connections"`
	// ConnectErrors counts failed dials.
	ConnectErrors int `json:"connect_errors"`
	// ConnectsPerSec is successful connects (upgrade + token check +
	// CONNECT ack) per second of the ramp.
	ConnectsPerSec float64 `json:"connects_per_sec,omitempty"`
	// Connect is the dial latency (TCP connect to CONNECT ack).
	Connect *Latency `json:"connect_latency,omitempty"`
	// Latency is the scenario's main latency: presence enterPage ->
	// entered; chat send -> receive (of the best step within target, else the
	// last); coldchat send -> receive of the after_acks round; plugin emit ->
	// ack.
	Latency *Latency `json:"latency,omitempty"`
	// LeaveLatency is presence leavePage -> left.
	LeaveLatency *Latency `json:"leave_latency,omitempty"`
	// EventsPerSec is events sent per second (presence: enter+leave; plugin:
	// acked round trips).
	EventsPerSec float64 `json:"events_per_sec,omitempty"`
	// DeliveriesPerSec is events received per second by the observing
	// sockets (presence, chat).
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	// Drops is deliveries expected but not received (after a drain;
	// coldchat: the after_acks round's missed subscribers).
	Drops int64 `json:"drops"`
	// Memory is the server's memory before and after (connect).
	Memory *Memory `json:"memory,omitempty"`
	// Steps are the chat ramp's rate steps.
	Steps []ChatStep `json:"steps,omitempty"`
	// Ack is the chat ack phase: one socket's acked sends.
	Ack *AckResult `json:"ack,omitempty"`
	// Cold are the coldchat rounds (after_acks, then after_emits).
	Cold []ColdRound `json:"cold_rounds,omitempty"`
	// ServerPlugin is the server-side plugin call time from /metrics
	// (realtime_plugin_event_seconds), interpolated within buckets.
	ServerPlugin *Latency `json:"server_plugin_latency,omitempty"`
	// Duration is the measured phase's length.
	Duration Dur `json:"duration"`
	// Notes are warnings (rate limiting seen, metrics unavailable, ...).
	Notes []string `json:"notes,omitempty"`
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Memory is server memory around the connect scenario.
type Memory struct {
	// Source says where RSS came from ("/proc/<pid>/status" or "/metrics").
	Source         string  `json:"source"`
	RSSBefore      int64   `json:"rss_before_bytes"`
	RSSAfter       int64   `json:"rss_after_bytes"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes"`
	HeapBefore     int64   `json:"heap_inuse_before_bytes,omitempty"`
	HeapAfter      int64   `json:"heap_inuse_after_bytes,omitempty"`
	GoroutinesPer  float64 `json:"goroutines_per_conn,omitempty"`
	PluginRSSAfter int64   `json:"plugin_rss_after_bytes,omitempty"`
	// ClientHeapPerConn is the load generator's own heap per socket.
	ClientHeapPerConn float64 `json:"client_heap_per_conn_bytes,omitempty"`
}

// ChatStep is one rate step of the chat scenario.
type ChatStep struct {
	OfferedMsgsPerSec float64 `json:"offered_msgs_per_sec"`
	Sent              int64   `json:"sent"`
	Acked             int64   `json:"acked"`
	Nacked            int64   `json:"nacked"`
	Received          int64   `json:"received"`
	DeliveriesPerSec  float64 `json:"deliveries_per_sec"`
	Drops             int64   `json:"drops"`
	Latency           Latency `json:"latency"`
	AckLatency        Latency `json:"ack_latency"`
	MetTarget         bool    `json:"met_target"`
	// CPU is the CPU time of the step (send to drain) per delivery; the
	// server's and its plugins' only when the bench knows the server's pid.
	CPU CPUUse `json:"cpu"`
}

// AckResult is the chat ack phase.
type AckResult struct {
	Window      int     `json:"window"`
	Acked       int64   `json:"acked"`
	Nacked      int64   `json:"nacked"`
	AcksPerSec  float64 `json:"acks_per_sec"`
	Latency     Latency `json:"latency"`
	RateLimited int64   `json:"rate_limited"`
}

// Run runs one scenario.
func Run(ctx context.Context, scenario string, cfg Config) (*Result, error) {
	if err := cfg.defaults(scenario); err != nil {
		return nil, err
	}
	switch scenario {
	case ScenarioConnect:
		return runConnect(ctx, cfg)
	case ScenarioPresence:
		return runPresence(ctx, cfg)
	case ScenarioChat:
		return runChat(ctx, cfg)
	case ScenarioColdChat:
		return runColdChat(ctx, cfg)
	case ScenarioPlugin:
		return runPlugin(ctx, cfg)
	}
	return nil, fmt.Errorf("bench: unknown scenario %q", scenario)
}

// dialer opens sockets with bounded concurrency, recording latency.
type dialer struct {
	cfg     Config
	hist    Histogram
	errors  atomic.Int64
	lastErr atomic.Value // error
}

// dialAll opens n sockets; opts(i) gives socket i's user and options.
// Failed dials leave nil entries. rate > 0 paces the dials.
func (d *dialer) dialAll(ctx context.Context, n int, rate float64, label string, opts func(i int) (user string, o sioclient.Options)) ([]*sioclient.Client, time.Duration, error) {
	clients := make([]*sioclient.Client, n)
	tokens := newTokenCache(d.cfg.Token)
	var next atomic.Int64
	var done atomic.Int64
	start := time.Now()
	stopProgress := progress(d.cfg.Progress, label, func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("%d/%d connected (%.0f/s), %d errors", done.Load(), n, float64(done.Load())/el, d.errors.Load())
	})
	defer stopProgress()
	var pacer *pacer
	if rate > 0 {
		pacer = newPacer(rate)
	}
	var wg sync.WaitGroup
	for range min(d.cfg.Concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if pacer != nil && !pacer.wait(ctx, i) {
					return
				}
				user, o := opts(i)
				tok, err := tokens.get(user)
				if err != nil {
					d.fail(err)
					continue
				}
				o.Token = tok
				t0 := time.Now()
				c, err := sioclient.Dial(ctx, d.cfg.URL, o)
				if err != nil {
					d.fail(err)
					continue
				}
				d.hist.Record(time.Since(t0))
				clients[i] = c
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if ctx.Err() != nil {
		closeAll(clients)
		return nil, el, ctx.Err()
	}
	return clients, el, nil
}

func (d *dialer) fail(err error) {
	d.errors.Add(1)
	d.lastErr.Store(err)
}

func (d *dialer) err() error {
	if e, ok := d.lastErr.Load().(error); ok {
		return e
	}
	return nil
}

// presignTokens signs the tokens of users up front (in parallel), so that
// signing does not count in connect times.
func presignTokens(ctx context.Context, tf TokenFunc, users []string, progressW io.Writer) (map[string]string, error) {
	out := make(map[string]string, len(users))
	var mu sync.Mutex
	var next, done atomic.Int64
	var firstErr error
	stop := progress(progressW, "signing tokens", func() string { return fmt.Sprintf("%d/%d", done.Load(), len(users)) })
	defer stop()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(users) || ctx.Err() != nil {
					return
				}
				tok, err := tf(users[i])
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("bench: sign token for %s: %w", users[i], err)
				}
				out[users[i]] = tok
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, ctx.Err()
}

// tokenCache signs each user's token once.
type tokenCache struct {
	tf TokenFunc
	mu sync.Mutex
	m  map[string]string
}

func newTokenCache(tf TokenFunc) *tokenCache { return &tokenCache{tf: tf, m: map[string]string{}} }

func (t *tokenCache) get(user string) (string, error) {
	t.mu.Lock()
	tok, ok := t.m[user]
	t.mu.Unlock()
	if ok {
		return tok, nil
	}
	tok, err := t.tf(user)
	if err != nil {
		return "", fmt.Errorf("bench: sign token for %s: %w", user, err)
	}
	t.mu.Lock()
	t.m[user] = tok
	t.mu.Unlock()
	return tok, nil
}

func (t *tokenCache) put(m map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range m {
		t.m[k] = v
	}
}

// closeAll closes clients concurrently (bounded).
func closeAll(clients []*sioclient.Client) {
	var wg sync.WaitGroup
	ch := make(chan *sioclient.Client)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				c.Close()
			}
		}()
	}
	for _, c := range clients {
		if c != nil {
			ch <- c
		}
	}
	close(ch)
	wg.Wait()
}

func countLive(clients []*sioclient.Client) int {
	n := 0
	for _, c := range clients {
		if c != nil && c.Connected() {
			n++
		}
	}
	return n
}

// pacer spaces operations at a fixed rate: operation i may start at
// start + i/rate.
type pacer struct {
	start time.Time
	every time.Duration
}

func newPacer(rate float64) *pacer {
	return &pacer{start: time.Now(), every: time.Duration(float64(time.Second) / rate)}
}

// wait blocks until operation i's slot; false when ctx ended.
func (p *pacer) wait(ctx context.Context, i int) bool {
	at := p.start.Add(time.Duration(i) * p.every)
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progress prints label: status() to w every second until stop is called.
func progress(w io.Writer, label string, status func() string) (stop func()) {
	if w == nil || w == io.Discard {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintf(w, "bench: %s: %s\n", label, status())
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// sleepCtx sleeps d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func formatFloat(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }

func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func pagePath(conf string, i int) string {
	return "/conference/" + conf + "/room/" + strconv.Itoa(i)
}
