package auth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the package's Prometheus collectors; a nil *metrics counts nothing.
type metrics struct {
	failures *prometheus.CounterVec
	fetches  *prometheus.CounterVec
}

// newMetrics registers the collectors on reg (nil: no metrics). Collectors
// already registered by another Verifier on the same registry are reused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "realtime_auth_failures_total",
		Help: "Refused or unusable socket tokens, by refusal code and internal reason.",
	}, []string{"code", "reason"})
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "realtime_auth_jwks_fetches_total",
		Help: "JWKS fetches, by result (ok or error).",
	}, []string{"result"})
	var err error
	if failures, err = register(reg, failures); err != nil {
		return nil, err
	}
	if fetches, err = register(reg, fetches); err != nil {
		return nil, err
	}
	return &metrics{failures: failures, fetches: fetches}, nil
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("auth: register metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) failure(code, reason string) {
	if m != nil {
		m.failures.WithLabelValues(code, reason).Inc()
	}
}

func (m *metrics) fetch(result string) {
	if m != nil {
		m.fetches.WithLabelValues(result).Inc()
	}
}
