package store

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	upFn   func() float64
	errors *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_store_errors_total",
			Help: "Store operations that failed, by kind: transport (Redis unreachable, timeout) or command (an error reply).",
		}, []string{"kind"}),
	}
}

// RegisterMetrics registers realtime_store_up (1 when the last operation or
// Ready reached Redis) and realtime_store_errors_total{kind} with reg.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "realtime_store_up",
		Help: "1 when the last store operation reached Redis, else 0.",
	}, s.metrics.upFn)
	for _, c := range []prometheus.Collector{up, s.metrics.errors} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("store: register metrics: %w", err)
		}
	}
	return nil
}
