package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/sioclient"
)

// DefaultSpawnRedis is the Redis a spawned server uses: DB 15 of the local
// Redis, flushed first (presence keys are global per DB).
const DefaultSpawnRedis = "redis://127.0.0.1:6379/15"

// SpawnOptions configure Spawn.
type SpawnOptions struct {
	// Binary is the realtime executable ("" = this process's own).
	Binary string
	// Redis is REDIS_URL; "" = embedded Redis. Its DB is flushed first.
	Redis string
	// AMQP is CLOUDAMQP_URL; "" = in-memory bus.
	AMQP string
	// AllowRemote permits non-loopback Redis/RabbitMQ URLs.
	AllowRemote bool
	// Args are extra `serve` arguments (after the bench defaults, so they win).
	Args []string
	// Output receives the server's stdout and stderr (nil = kept in memory
	// and shown only when the start fails).
	Output io.Writer
	// ReadyTimeout bounds the wait for /readyz (default 60s).
	ReadyTimeout time.Duration
}

// BenchServeArgs are the `serve` settings a spawned server gets: rate limits
// raised so they do not cap the load, the echo plugin on, logs at warn.
var BenchServeArgs = []string{
	"--log-level", "warn",
	"--set", "socketio.events_per_second=1000000",
	"--set", "socketio.event_burst=1000000",
	"--set", "plugins.echo.enabled=true",
	"--set", "plugins.chat.config.sends_per_second=1000000",
	"--set", "plugins.chat.config.send_burst=1000000",
	"--set", "plugins.presence.config.events_per_second=1000",
	"--set", "plugins.presence.config.event_burst=1000",
}

// serviceEnv are variables of the service that must not leak from the
// caller's environment into a spawned server (RT_* are dropped too).
var serviceEnv = map[string]bool{
	"PORT": true, "REDIS_URL": true, "REDIS_KEY": true, "AUTH0_API_DOMAIN": true, "CORS_ORIGIN": true,
	"EVENT_SECRET": true, "SECRET_FOR_SUMMARY": true, "SECRET_FOR_FLUSHING": true, "GRAPHQL_API_DOMAIN": true,
	"HASURA_ADMIN_SECRET": true, "GRAPHQL_API_SECURE_PROTOCOLS": true, "HOST_PUBLIC_URL": true, "TEST_MODE": true,
	"TEST_JWKS": true, "MAX_REDIS_CONNECTIONS": true, "MIN_REDIS_CONNECTIONS": true, "CLOUDAMQP_URL": true,
	"RABBITMQ_USERNAME": true, "RABBITMQ_PASSWORD": true, "DYNO": true,
}

// Server is a spawned realtime server.
type Server struct {
	// URL is its base URL (http://127.0.0.1:<port>).
	URL string
	// PID is its process id.
	PID int
	// Token signs tokens it accepts.
	Token TokenFunc

	cmd    *exec.Cmd
	done   chan struct{}
	log    *tailBuffer
	signer *auth.Verifier
	once   sync.Once
}

// Spawn starts `realtime serve` on a free loopback port with a fresh
// TEST_JWKS, waits until /readyz is 200 and returns it. Stop it with Stop.
func Spawn(ctx context.Context, o SpawnOptions) (*Server, error) {
	bin := o.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: own executable: %w", err)
		}
		bin = exe
	}
	for _, u := range []string{o.Redis, o.AMQP} {
		if u != "" && !o.AllowRemote {
			if err := CheckLoopback(u); err != nil {
				return nil, err
			}
		}
	}
	if o.Redis != "" {
		if err := flushRedis(ctx, o.Redis); err != nil {
			return nil, err
		}
	}
	jwks, err := sioclient.GenerateTestJWKS()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.LoadOptions{File: "", Environ: []string{"TEST_JWKS=" + string(jwks)}})
	if err != nil {
		return nil, fmt.Errorf("bench: signer config: %w", err)
	}
	signer, err := auth.New(cfg.Auth, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		return nil, fmt.Errorf("bench: signer: %w", err)
	}
	port, err := freePort()
	if err != nil {
		signer.Close()
		return nil, err
	}
	args := append([]string{"serve", "--config", "", "--port", strconv.Itoa(port)}, BenchServeArgs...)
	args = append(args, o.Args...)
	env := []string{"TEST_JWKS=" + string(jwks)}
	if o.Redis != "" {
		env = append(env, "REDIS_URL="+o.Redis)
	}
	if o.AMQP != "" {
		env = append(env, "CLOUDAMQP_URL="+o.AMQP)
	}
	s := &Server{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		done:   make(chan struct{}),
		log:    &tailBuffer{max: 64 << 10},
		signer: signer,
	}
	s.Token = func(user string) (string, error) { return signer.Sign(user, 2*time.Hour, nil) }
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = append(cleanEnv(), env...)
	s.cmd.Dir = os.TempDir()
	var out io.Writer = s.log
	if o.Output != nil {
		out = io.MultiWriter(s.log, o.Output)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		signer.Close()
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	s.PID = s.cmd.Process.Pid
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	rt := o.ReadyTimeout
	if rt <= 0 {
		rt = 60 * time.Second
	}
	if err := s.waitReady(ctx, rt); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\nserver output:\n%s", err, s.log.String())
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	cl := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.done:
			return fmt.Errorf("bench: server exited during start")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if resp, err := cl.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: server not ready within %s", d)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// Stop sends SIGTERM, waits up to 40s, then kills.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(40 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		_ = s.signer.Close()
	})
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if serviceEnv[k] || strings.HasPrefix(k, "RT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// flushRedis empties the DB of rawURL, refusing DB 0 (the usual shared one).
func flushRedis(ctx context.Context, rawURL string) error {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return fmt.Errorf("bench: redis url: %w", err)
	}
	if opt.DB == 0 {
		u, _ := url.Parse(rawURL)
		return fmt.Errorf("bench: refusing to FLUSHDB database 0 of %s: pick a bench DB, e.g. %s", u.Redacted(), DefaultSpawnRedis)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("bench: FLUSHDB %d: %w", opt.DB, err)
	}
	return nil
}

// tailBuffer keeps the last max bytes written; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
