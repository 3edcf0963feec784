package hub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	emits      *prometheus.CounterVec
	emitTime   prometheus.Histogram
	deliveries prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		emits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "realtime_emits_total",
			Help: "Emits made by plugins, by target kind (socket, room, user, local_room).",
		}, []string{"target"}),
		emitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "realtime_emit_seconds",
			Help:    "Time to encode an emit and queue it to this instance's members (cross-instance publish is asynchronous).",
			Buckets: []float64{1e-6, 5e-6, 25e-6, 100e-6, 500e-6, 1e-3, 5e-3, 25e-3, 0.1},
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "realtime_deliveries_total",
			Help: "Frames queued to local sockets by emits (one per member reached).",
		}),
	}
}

// RegisterMetrics registers the hub's metrics.
func (h *Hub) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{h.met.emits, h.met.emitTime, h.met.deliveries} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

var targetLabels = [...]string{"socket", "room", "user", "local_room"}

func targetLabel(k int) string {
	if k >= 0 && k < len(targetLabels) {
		return targetLabels[k]
	}
	return "unknown"
}
