package pluginhost

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the plugin host's Prometheus collectors.
type metrics struct {
	up           *prometheus.GaugeVec
	restarts     *prometheus.CounterVec
	downtime     *prometheus.HistogramVec
	eventSeconds *prometheus.HistogramVec
	events       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "realtime_plugin_up", Help: "1 when the plugin is running, else 0.",
		}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_plugin_restarts_total", Help: "Restarts of a plugin after it died.",
		}, []string{"plugin"}),
		downtime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "realtime_plugin_downtime_seconds",
			Help:    "Time from a plugin process's death until its replacement serves (the supervisor's restart, backoff included).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12), // 50ms .. 102s
		}, []string{"plugin"}),
		eventSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "realtime_plugin_event_seconds",
			Help:    "Time from handing an event to a plugin until its answer.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16), // 50µs .. 1.6s
		}, []string{"plugin"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_plugin_events_total", Help: "Events handed to plugins, by result (ok, error, dropped).",
		}, []string{"plugin", "result"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_plugin_events_dropped_total", Help: "Events not delivered because the plugin was down or overloaded.",
		}, []string{"plugin"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.up, m.restarts, m.downtime, m.eventSeconds, m.events, m.dropped} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			switch existing := are.ExistingCollector.(type) {
			case *prometheus.GaugeVec:
				m.up = existing
			case *prometheus.CounterVec:
				if c == prometheus.Collector(m.restarts) {
					m.restarts = existing
				} else if c == prometheus.Collector(m.events) {
					m.events = existing
				} else {
					m.dropped = existing
				}
			case *prometheus.HistogramVec:
				if c == prometheus.Collector(m.downtime) {
					m.downtime = existing
				} else {
					m.eventSeconds = existing
				}
			}
		}
	}
	return m, nil
}

// pluginMetrics are one plugin's bound collectors (no label lookups per event).
type pluginMetrics struct {
	up           prometheus.Gauge
	restarts     prometheus.Counter
	downtime     prometheus.Observer
	eventSeconds prometheus.Observer
	ok, failed   prometheus.Counter
	dropped      prometheus.Counter
	droppedTotal prometheus.Counter
}

func (m *metrics) forPlugin(name string) *pluginMetrics {
	return &pluginMetrics{
		up:           m.up.WithLabelValues(name),
		restarts:     m.restarts.WithLabelValues(name),
		downtime:     m.downtime.WithLabelValues(name),
		eventSeconds: m.eventSeconds.WithLabelValues(name),
		ok:           m.events.WithLabelValues(name, "ok"),
		failed:       m.events.WithLabelValues(name, "error"),
		dropped:      m.events.WithLabelValues(name, "dropped"),
		droppedTotal: m.dropped.WithLabelValues(name),
	}
}
