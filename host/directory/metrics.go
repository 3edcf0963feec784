package directory

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricsRegisterer is implemented by both backends: RegisterMetrics
// registers the directory's collectors with reg:
//
//	realtime_directory_up                            1 when the latest Hasura query succeeded (or none ran yet); static: always 1
//	realtime_directory_requests_total{query,result}  Hasura queries by operation name and result (ok, error, breaker_open)
//	realtime_directory_cache_total{cache,result}     lookups by Cache* name, answered from the Store (hit) or not (miss)
//	realtime_directory_breaker_open                  Hasura only: 1 while its circuit breaker is open or half-open
//
// The counters count whether or not they are registered.
type MetricsRegisterer interface {
	RegisterMetrics(reg prometheus.Registerer) error
}

var (
	_ MetricsRegisterer = (*Hasura)(nil)
	_ MetricsRegisterer = (*Static)(nil)
)

const upHelp = "1 when the latest directory query to Hasura succeeded (or none ran yet; the static directory is always 1), else 0."

type metrics struct {
	requests *prometheus.CounterVec
	cache    *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_directory_requests_total",
			Help: "Hasura GraphQL queries of the directory, by operation and result (ok, error, breaker_open: refused by the circuit breaker, not sent).",
		}, []string{"query", "result"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_directory_cache_total",
			Help: "Directory lookups by cache name, answered from the Store cache (hit) or not (miss).",
		}, []string{"cache", "result"}),
	}
}

func (m *metrics) queried(op string, err error) {
	result := "ok"
	switch {
	case errors.Is(err, ErrHasuraUnavailable):
		result = "breaker_open"
	case err != nil:
		result = "error"
	}
	m.requests.WithLabelValues(op, result).Inc()
}

func (m *metrics) looked(name string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cache.WithLabelValues(name, result).Inc()
}

// RegisterMetrics registers realtime_directory_up (following the latest
// query sent), realtime_directory_requests_total,
// realtime_directory_cache_total and realtime_directory_breaker_open.
func (h *Hasura) RegisterMetrics(reg prometheus.Registerer) error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "realtime_directory_up", Help: upHelp}, func() float64 {
		h.healthMu.Lock()
		defer h.healthMu.Unlock()
		if h.lastErr != nil {
			return 0
		}
		return 1
	})
	for _, c := range []prometheus.Collector{up, h.metrics.requests, h.metrics.cache, h.breaker.open} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("directory: register metrics: %w", err)
		}
	}
	return nil
}

// RegisterMetrics registers realtime_directory_up, always 1: the static
// directory has no dependency to lose and no cache.
func (d *Static) RegisterMetrics(reg prometheus.Registerer) error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "realtime_directory_up", Help: upHelp}, func() float64 { return 1 })
	if err := reg.Register(up); err != nil {
		return fmt.Errorf("directory: register metrics: %w", err)
	}
	return nil
}
