package auth

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// maxJWKSBytes bounds a JWKS response body.
const maxJWKSBytes = 1 << 20

// remoteKeys is the cached JWKS of an HTTP endpoint. Fetches run in the
// background (bounded by timeout, cancelled by close), are single-flight,
// and miss-triggered fetches are rate-limited to one per interval (sooner
// after a failure). A failed fetch keeps the cached keys.
type remoteKeys struct {
	url      string
	client   *http.Client
	timeout  time.Duration
	interval time.Duration
	logger   *slog.Logger
	m        *metrics
	now      func() time.Time
	baseCtx  context.Context
	wg       *sync.WaitGroup

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	okAt      time.Time // last successful fetch (zero: never)
	lastStart time.Time // last fetch start, any cause
	lastMiss  time.Time // last fetch start caused by an unknown kid
	lastErr   error     // error of the last finished fetch (nil if it succeeded)
	inflight  chan struct{}
	closed    bool
}

func newRemoteKeys(ctx context.Context, wg *sync.WaitGroup, url string, timeout, interval time.Duration,
	logger *slog.Logger, m *metrics, now func() time.Time) *remoteKeys {
	return &remoteKeys{
		url:      url,
		client:   &http.Client{Timeout: timeout},
		timeout:  timeout,
		interval: interval,
		logger:   logger,
		m:        m,
		now:      now,
		baseCtx:  ctx,
		wg:       wg,
	}
}

// prefetch starts the first fetch (it does not count against the miss rate limit).
func (r *remoteKeys) prefetch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight == nil && !r.closed {
		r.startLocked()
	}
}

// close stops new fetches.
func (r *remoteKeys) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// ready reports whether a fetch ever succeeded, starting one if useful.
func (r *remoteKeys) ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.okAt.IsZero() {
		return nil
	}
	if r.inflight == nil && !r.closed && r.now().Sub(r.lastStart) >= r.retryAfterFailure() {
		r.startLocked()
	}
	if r.lastErr != nil {
		return fmt.Errorf("auth: JWKS %s not fetched: %w", r.url, r.lastErr)
	}
	return fmt.Errorf("auth: JWKS %s not fetched yet", r.url)
}

// retryAfterFailure is how soon a failed fetch may be retried.
func (r *remoteKeys) retryAfterFailure() time.Duration {
	return min(r.interval, failedFetchBackoff)
}

// find looks a key up; kid "" matches when the set holds exactly one key.
func (r *remoteKeys) findLocked(kid string) (*rsa.PublicKey, bool) {
	if kid == "" {
		if len(r.keys) == 1 {
			for _, k := range r.keys {
				return k, true
			}
		}
		return nil, false
	}
	k, ok := r.keys[kid]
	return k, ok
}

// get returns the key for kid, fetching the JWKS if needed and allowed. It
// waits for a fetch at most until ctx is done; the fetch itself continues.
func (r *remoteKeys) get(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	r.mu.Lock()
	now := r.now()
	if k, ok := r.findLocked(kid); ok {
		if r.inflight == nil && !r.closed && now.Sub(r.okAt) >= staleAfter && now.Sub(r.lastStart) >= r.interval {
			r.startLocked() // refresh in the background, use the cached key now
		}
		r.mu.Unlock()
		return k, nil
	}
	ch := r.inflight
	if ch == nil {
		if !r.mayFetchForMissLocked(now) {
			err := r.lastErr
			r.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("%w (refetch rate-limited): %w", errJWKSUnavailable, err)
			}
			return nil, fmt.Errorf("%w (refetch rate-limited)", errUnknownKID)
		}
		r.lastMiss = now
		ch = r.startLocked()
	}
	r.mu.Unlock()

	select {
	case <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", errJWKSTimeout, ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.findLocked(kid); ok {
		return k, nil
	}
	if r.lastErr != nil {
		return nil, fmt.Errorf("%w: %w", errJWKSUnavailable, r.lastErr)
	}
	return nil, errUnknownKID
}

// mayFetchForMissLocked applies the miss rate limit.
func (r *remoteKeys) mayFetchForMissLocked(now time.Time) bool {
	if r.closed {
		return false
	}
	if r.lastErr != nil && now.Sub(r.lastStart) >= r.retryAfterFailure() {
		return true
	}
	return r.lastMiss.IsZero() || now.Sub(r.lastMiss) >= r.interval
}

// startLocked starts a background fetch and returns its done channel.
func (r *remoteKeys) startLocked() chan struct{} {
	ch := make(chan struct{})
	r.inflight = ch
	r.lastStart = r.now()
	r.wg.Add(1)
	go r.fetch(ch)
	return ch
}

// fetch downloads the JWKS and installs it on success.
func (r *remoteKeys) fetch(done chan struct{}) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.baseCtx, r.timeout)
	defer cancel()
	keys, err := r.download(ctx)
	if err != nil {
		r.m.fetch("error")
	} else {
		r.m.fetch("ok")
	}

	r.mu.Lock()
	first := r.okAt.IsZero()
	if err == nil {
		r.keys = keys
		r.okAt = r.now()
		r.lastErr = nil
	} else {
		r.lastErr = err
	}
	r.inflight = nil
	close(done)
	r.mu.Unlock()

	if err != nil {
		r.logger.Warn("auth: JWKS fetch failed; keeping cached keys", "url", r.url, "error", err)
		return
	}
	lvl := slog.LevelDebug
	if first {
		lvl = slog.LevelInfo
	}
	r.logger.Log(context.Background(), lvl, "auth: JWKS fetched", "url", r.url, "keys", len(keys))
}

// download fetches and parses the JWKS.
func (r *remoteKeys) download(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("JWKS fetch: HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS read: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("JWKS read: body larger than 1 MiB")
	}
	list, err := parseKeySet(body, r.logger)
	if err != nil {
		return nil, fmt.Errorf("JWKS parse: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(list))
	for _, k := range list {
		if _, dup := keys[k.kid]; !dup {
			keys[k.kid] = k.pub
		}
	}
	return keys, nil
}
