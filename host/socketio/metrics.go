package socketio

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus collectors of one Server. They always exist;
// they are registered only when Options.Registerer is set.
type metrics struct {
	connections   prometheus.Gauge
	framesIn      prometheus.Counter
	framesOut     prometheus.Counter
	slowConsumers prometheus.Counter
	malformed     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "realtime_socketio_connections",
			Help: "Open Engine.IO websocket connections.",
		}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "realtime_socketio_frames_in_total",
			Help: "Websocket data frames received.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "realtime_socketio_frames_out_total",
			Help: "Websocket data frames written.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "realtime_socketio_slow_consumer_disconnects_total",
			Help: "Connections closed because their outbound queue overflowed.",
		}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_socketio_malformed_packets_total",
			Help: "Malformed or unexpected packets received, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		m.connections = register(reg, m.connections)
		m.framesIn = register(reg, m.framesIn)
		m.framesOut = register(reg, m.framesOut)
		m.slowConsumers = register(reg, m.slowConsumers)
		m.malformed = register(reg, m.malformed)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same description (so two Servers may share a registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
