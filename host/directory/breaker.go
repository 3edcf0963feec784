package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

const (
	// DefaultBreakerFailures is how many consecutive failed Hasura requests
	// open the circuit breaker.
	DefaultBreakerFailures = 5
	// DefaultBreakerOpenFor is how long the breaker stays open before one
	// probe request may go to Hasura.
	DefaultBreakerOpenFor = 2 * time.Second
	// probeWarnEvery: after the first 3, every probeWarnEvery-th failed
	// probe of an outage is logged at Warn (the others at Debug).
	probeWarnEvery = 30
)

// ErrHasuraUnavailable is wrapped by the error of a lookup refused by the
// circuit breaker: Hasura failed too often lately, so no request was sent.
var ErrHasuraUnavailable = errors.New("hasura unavailable")

// WithBreaker sets how many consecutive failed requests open the circuit
// breaker in front of Hasura, and how long it then stays open before one
// probe request is let through (defaults DefaultBreakerFailures and
// DefaultBreakerOpenFor). A value < 1 keeps its default.
func WithBreaker(failures int, openFor time.Duration) HasuraOption {
	return func(h *Hasura) {
		if failures >= 1 {
			h.breakerFailures = uint32(failures)
		}
		if openFor > 0 {
			h.breakerOpenFor = openFor
		}
	}
}

// answer is an HTTP answer from Hasura.
type answer struct {
	code   int
	status string
	data   []byte
}

// breaker is the circuit breaker around the Hasura HTTP request. While
// Hasura does not answer (or answers 5xx/429), every cache miss would wait
// for the request timeout and add load to a Hasura already in trouble;
// after enough consecutive such failures the breaker fails requests at once
// instead, and lets one probe through every openFor until one succeeds.
// Answers that show Hasura working (a 4xx, a GraphQL error, a body that does
// not decode) are successes to it: they are the request's fault, not
// Hasura's health.
type breaker struct {
	cb       *gobreaker.CircuitBreaker[answer]
	failures uint32
	openFor  time.Duration
	logger   *slog.Logger
	open     prometheus.Gauge

	mu          sync.Mutex
	consecutive uint32    // counted failures in a row when it last opened
	openedAt    time.Time // when it last opened
	downSince   time.Time // when it first opened in this outage
	failedProbe int       // probes that failed in this outage
	lastFailure error     // the latest counted failure
}

func newBreaker(failures uint32, openFor time.Duration, logger *slog.Logger) *breaker {
	b := &breaker{
		failures: failures,
		openFor:  openFor,
		logger:   logger,
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "realtime_directory_breaker_open",
			Help: "1 while the circuit breaker in front of Hasura is open or half-open (lookups that miss the cache fail at once), else 0.",
		}),
	}
	b.cb = gobreaker.NewCircuitBreaker[answer](gobreaker.Settings{
		Name:        "hasura",
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures < b.failures {
				return false
			}
			b.mu.Lock()
			b.consecutive = c.ConsecutiveFailures
			b.mu.Unlock()
			return true
		},
		// A caller that gave up says nothing about Hasura. A timeout does:
		// it counts.
		IsExcluded:    func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: b.changed,
	})
	return b
}

// do runs fn, the request, unless the breaker is open (or half-open with
// its probe under way): then it fails at once with an error wrapping
// ErrHasuraUnavailable. fn's error is a counted failure.
func (b *breaker) do(op string, fn func() (answer, error)) (answer, error) {
	a, err := b.cb.Execute(func() (answer, error) {
		a, err := fn()
		if err != nil && !errors.Is(err, context.Canceled) {
			b.mu.Lock()
			b.lastFailure = err
			b.mu.Unlock()
		}
		return a, err
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		return a, fmt.Errorf("directory: %s: %w: %s", op, ErrHasuraUnavailable, b.describe(gobreaker.StateOpen, true))
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		return a, fmt.Errorf("directory: %s: %w: %s", op, ErrHasuraUnavailable, b.describe(gobreaker.StateHalfOpen, true))
	}
	return a, err
}

// status describes the breaker when it is not closed ("" when it is), for
// Ready.
func (b *breaker) status() string {
	st := b.cb.State()
	if st == gobreaker.StateClosed {
		return ""
	}
	return fmt.Sprintf("%v: %s", ErrHasuraUnavailable, b.describe(st, false))
}

// describe says why requests are refused: the state, the failures that
// opened it and when the next request may go. refused is true for the error
// of a refused request (in half-open, a probe is then under way).
func (b *breaker) describe(st gobreaker.State, refused bool) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch st {
	case gobreaker.StateOpen:
		next := max(time.Until(b.openedAt.Add(b.openFor)), 0)
		return fmt.Sprintf("circuit open after %d consecutive failures; next try in %v", b.consecutive, next.Round(100*time.Millisecond))
	case gobreaker.StateHalfOpen:
		if refused {
			return fmt.Sprintf("circuit half-open after %d consecutive failures; a probe request is under way", b.consecutive)
		}
		return fmt.Sprintf("circuit half-open after %d consecutive failures; the next query probes Hasura", b.consecutive)
	default:
		return "circuit closed"
	}
}

// changed logs each state change once and sets the gauge. gobreaker calls
// it with its lock held: it must not call b.cb.
func (b *breaker) changed(_ string, from, to gobreaker.State) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch to {
	case gobreaker.StateOpen:
		b.open.Set(1)
		b.openedAt = now
		if from == gobreaker.StateHalfOpen {
			b.consecutive++
			b.failedProbe++
			// A long outage fails a probe every openFor: warn for the first
			// few and then about once a minute, not every 2 s.
			level := slog.LevelDebug
			if b.failedProbe <= 3 || b.failedProbe%probeWarnEvery == 0 {
				level = slog.LevelWarn
			}
			b.logger.Log(context.Background(), level, "directory: Hasura probe failed; circuit breaker open again",
				"consecutive_failures", b.consecutive, "failed_probes", b.failedProbe, "open_for", b.openFor,
				"down_for", now.Sub(b.downSince).Round(time.Millisecond), "err", b.lastFailure)
			return
		}
		b.downSince = now
		b.failedProbe = 0
		b.logger.Warn("directory: Hasura keeps failing; circuit breaker open: lookups that miss the cache fail at once",
			"consecutive_failures", b.consecutive, "open_for", b.openFor, "err", b.lastFailure)
	case gobreaker.StateHalfOpen:
		b.open.Set(1)
		b.logger.Debug("directory: circuit breaker half-open: the next Hasura query is a probe",
			"down_for", now.Sub(b.downSince).Round(time.Millisecond))
	case gobreaker.StateClosed:
		b.open.Set(0)
		b.logger.Info("directory: Hasura answered the probe; circuit breaker closed",
			"down_for", now.Sub(b.downSince).Round(time.Millisecond), "failed_probes", b.failedProbe)
		b.consecutive = 0
	}
}
