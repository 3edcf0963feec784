package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricsRegisterer is implemented by both backends: RegisterMetrics registers
// the bus's collectors (realtime_bus_publishes_total{result},
// realtime_bus_publish_confirm_seconds, realtime_bus_deliveries_total{queue,result},
// realtime_bus_connection_up{role}) with reg. Metrics are counted whether or
// not they are registered.
type MetricsRegisterer interface {
	RegisterMetrics(reg prometheus.Registerer) error
}

type metrics struct {
	publishes  *prometheus.CounterVec
	confirm    prometheus.Histogram
	deliveries *prometheus.CounterVec
	connUp     *prometheus.GaugeVec
}

func newMetrics(kind string) *metrics {
	labels := prometheus.Labels{"backend": kind}
	return &metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_bus_publishes_total", Help: "Bus publishes by result.", ConstLabels: labels,
		}, []string{"result"}),
		confirm: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "realtime_bus_publish_confirm_seconds", Help: "Time from Publish to broker confirm.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_bus_deliveries_total", Help: "Deliveries handled, by queue and outcome (ack, requeue, drop).", ConstLabels: labels,
		}, []string{"queue", "result"}),
		connUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "realtime_bus_connection_up", Help: "1 when the bus connection (role pub or sub) is open.", ConstLabels: labels,
		}, []string{"role"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.publishes, m.confirm, m.deliveries, m.connUp} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("bus: register metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) published(err error, start time.Time) {
	result := "ok"
	switch {
	case err == nil:
		m.confirm.Observe(time.Since(start).Seconds())
	case errors.Is(err, ErrNacked):
		result = "nack"
	case errors.Is(err, ErrNotConnected), errors.Is(err, ErrConnectionLost), errors.Is(err, ErrClosed):
		result = "disconnected"
	case errors.Is(err, ErrNoExchange):
		result = "no_exchange"
	case errors.Is(err, ErrQueueFull):
		result = "queue_full"
	case isTimeout(err):
		result = "timeout"
	default:
		result = "error"
	}
	m.publishes.WithLabelValues(result).Inc()
}

func (m *metrics) delivered(queue string, o outcome) {
	m.deliveries.WithLabelValues(queue, string(o)).Inc()
}

func (m *metrics) setConn(role string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.connUp.WithLabelValues(role).Set(v)
}
