package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

const (
	// defaultTimeout bounds one command when the config gives no timeout.
	defaultTimeout = 3 * time.Second
	// dialTimeout bounds one connection attempt.
	dialTimeout = 2 * time.Second
	// readyTimeout bounds the PING of Ready.
	readyTimeout = time.Second
	// maxCachedScripts bounds the script cache of Eval; scripts beyond it are
	// still run, their SHA is just recomputed each time.
	maxCachedScripts = 1024
)

// Store is the host's shared state: a go-redis client pointed at REDIS_URL, or
// at an embedded miniredis when no URL is configured. It implements sdk.Store
// and is safe for concurrent use.
type Store struct {
	client   redis.UniversalClient
	mini     *miniredis.Miniredis // nil unless embedded
	logger   *slog.Logger
	addr     string // for logs; never contains credentials
	metrics  *metrics
	up       atomic.Bool
	closed   atomic.Bool
	scriptMu sync.Mutex
	scripts  map[string]*redis.Script
	// budget bounds one operation (with go-redis's retries and redials)
	// when the caller's context has no deadline.
	budget time.Duration
}

// bound gives ctx a deadline of s.budget when it has none, so no call can
// hang on a dead server whatever the caller passes.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.budget)
}

var setLoggerOnce sync.Once

// redisLogger sends go-redis's internal log lines (redial attempts and the
// like) to slog.Default() at debug level; the store reports outages itself.
// go-redis has one process-wide logger, so it cannot be a Store's logger.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

var _ sdk.Store = (*Store)(nil)

// New connects to Redis at cfg.URL (redis://, rediss:// or unix://), or starts an
// embedded Redis on 127.0.0.1 when cfg.URL is empty.
//
// New does not fail when Redis is unreachable: it logs a warning and returns a
// Store whose Ready reports the problem; go-redis reconnects by itself once the
// server is back. It fails on a malformed URL or when the embedded server
// cannot start.
func New(ctx context.Context, cfg config.RedisConfig, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	setLoggerOnce.Do(func() { redis.SetLogger(redisLogger{}) })
	s := &Store{
		logger:  logger,
		metrics: newMetrics(),
		scripts: make(map[string]*redis.Script),
	}
	s.metrics.upFn = func() float64 {
		if s.up.Load() {
			return 1
		}
		return 0
	}

	var opts *redis.Options
	if cfg.URL == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("store: start embedded redis: %w", err)
		}
		// ClockTTL makes TTLs follow the wall clock: every command first
		// advances all TTLs by the time elapsed since the previous command, so
		// EXPIRE/PEXPIRE/SET PX keys disappear in real time (lazily, on the
		// next access), and EXPIREAT/TIME agree with it. Without it miniredis
		// only expires keys on FastForward.
		m.ClockTTL(true)
		s.mini = m
		opts = &redis.Options{Network: "tcp", Addr: m.Addr(), DisableIdentity: true}
		s.addr = "embedded " + m.Addr()
		logger.Warn("store: embedded Redis (data is lost on exit)", "addr", m.Addr())
	} else {
		o, err := redis.ParseURL(cfg.URL)
		if err != nil {
			// ParseURL errors may quote the URL; don't log or wrap it with secrets.
			return nil, fmt.Errorf("store: bad redis url (scheme %q): %w", scheme(cfg.URL), errors.Unwrap(err))
		}
		opts = o
		s.addr = opts.Network + " " + opts.Addr
		if skipTLSVerify(cfg, opts) {
			logger.Warn("store: redis.tls_insecure_skip_verify is on: the Redis server's certificate is not checked", "addr", s.addr)
		} else if cfg.TLSInsecureSkipVerify {
			logger.Warn("store: redis.tls_insecure_skip_verify is ignored: the Redis URL is not rediss://", "addr", s.addr)
		}
	}

	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	opts.Protocol = 2
	opts.ContextTimeoutEnabled = true
	opts.ReadTimeout = timeout
	opts.WriteTimeout = timeout
	opts.DialTimeout = min(dialTimeout, timeout*2)
	opts.PoolTimeout = timeout + time.Second
	opts.DialerRetries = 2
	s.budget = 3*timeout + opts.DialTimeout
	if cfg.PoolSize > 0 {
		opts.PoolSize = cfg.PoolSize
	}
	if cfg.MinIdle > 0 {
		opts.MinIdleConns = cfg.MinIdle
	}
	s.client = redis.NewClient(opts)

	pctx, cancel := context.WithTimeout(ctx, readyTimeout+dialTimeout)
	defer cancel()
	if err := s.Ready(pctx); err != nil {
		logger.Warn("store: Redis is not reachable yet; the host starts anyway and reconnects", "addr", s.addr, "err", err)
	} else {
		logger.Info("store: connected", "addr", s.addr)
	}
	return s, nil
}

// skipTLSVerify applies cfg.TLSInsecureSkipVerify to opts parsed from a
// rediss:// URL (ParseURL gives those a TLSConfig; redis:// and unix:// get
// none and are left alone) and reports whether verification is now off.
// Heroku Redis serves a self-signed certificate that no CA pool accepts.
func skipTLSVerify(cfg config.RedisConfig, opts *redis.Options) bool {
	if !cfg.TLSInsecureSkipVerify || opts.TLSConfig == nil {
		return false
	}
	opts.TLSConfig.InsecureSkipVerify = true
	return true
}

// scheme returns the scheme of a URL for error messages, never its userinfo.
func scheme(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		return u[:i]
	}
	return ""
}

// Client returns the underlying go-redis client, for pub/sub and the instance
// registry. Its replies are RESP2-shaped.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Embedded reports whether the store runs on the embedded Redis.
func (s *Store) Embedded() bool { return s.mini != nil }

// Ready pings Redis with a short timeout; nil means it answered.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return errors.New("store: closed")
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	err := s.client.Ping(ctx).Err()
	s.observe(err)
	if err != nil {
		return fmt.Errorf("store: ping %s: %w", s.addr, err)
	}
	return nil
}

// Do runs one command. A nil reply returns sdk.ErrNil; a command error from
// Redis and a transport error are returned wrapped.
func (s *Store) Do(ctx context.Context, args ...any) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("store: empty command")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v, err := s.client.Do(ctx, args...).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, sdk.ErrNil
		}
		s.observe(err)
		return nil, fmt.Errorf("store: %v: %w", args[0], err)
	}
	s.observe(nil)
	return v, nil
}

// Pipeline runs the commands in one round trip (not atomically). When Redis
// answered, the result has one Reply per command and a nil error: a nil reply
// has Err sdk.ErrNil and a command error (WRONGTYPE, ...) is that command's
// Err. A transport failure returns a nil slice and the error.
func (s *Store) Pipeline(ctx context.Context, cmds [][]any) ([]sdk.Reply, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	for i, c := range cmds {
		if len(c) == 0 {
			return nil, fmt.Errorf("store: pipeline command %d is empty", i)
		}
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	p := s.client.Pipeline()
	rc := make([]*redis.Cmd, len(cmds))
	for i, c := range cmds {
		rc[i] = p.Do(ctx, c...)
	}
	_, _ = p.Exec(ctx) // errors are read per command below
	out := make([]sdk.Reply, len(cmds))
	for i, c := range rc {
		v, err := c.Result()
		switch {
		case err == nil:
			out[i].Value = v
		case errors.Is(err, redis.Nil):
			out[i].Err = sdk.ErrNil
		case isServerError(err):
			out[i].Err = fmt.Errorf("store: %v: %w", cmds[i][0], err)
		default:
			s.observe(err)
			return nil, fmt.Errorf("store: pipeline of %d commands: %w", len(cmds), err)
		}
	}
	s.observe(nil)
	return out, nil
}

// Eval runs a Lua script with EVALSHA, falling back to EVAL when the server
// does not know the script (NOSCRIPT, e.g. after a Redis restart). Script
// objects (and so their SHA1) are cached per script text.
func (s *Store) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	if script == "" {
		return nil, errors.New("store: empty script")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v, err := s.script(script).Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, sdk.ErrNil
		}
		s.observe(err)
		return nil, fmt.Errorf("store: eval: %w", err)
	}
	s.observe(nil)
	return v, nil
}

func (s *Store) script(src string) *redis.Script {
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	if sc, ok := s.scripts[src]; ok {
		return sc
	}
	sc := redis.NewScript(src)
	if len(s.scripts) < maxCachedScripts {
		s.scripts[src] = sc
	}
	return sc
}

// Close closes the client and stops the embedded server. It is safe to call
// more than once.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.up.Store(false)
	err := s.client.Close()
	if s.mini != nil {
		s.mini.Close()
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// isServerError reports whether err is an error reply from Redis (the server
// answered), as opposed to a transport or timeout error.
func isServerError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	// go-redis also marks some transport errors as redis.Error; a reply
	// error never is a net.Error or a context error.
	var ne net.Error
	return !errors.As(err, &ne) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// observe records the outcome of one operation for Ready-independent health
// and the metrics. Command errors from a live server count as up.
func (s *Store) observe(err error) {
	switch {
	case err == nil:
		s.up.Store(true)
	case isServerError(err):
		s.up.Store(true)
		s.metrics.errors.WithLabelValues("command").Inc()
	case errors.Is(err, context.Canceled):
		// the caller gave up; says nothing about Redis
	default:
		s.up.Store(false)
		s.metrics.errors.WithLabelValues("transport").Inc()
	}
}
