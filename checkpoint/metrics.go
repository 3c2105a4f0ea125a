package checkpoint

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the lease and balancing metrics of one Checkpointer.
type metrics struct {
	held           prometheus.Gauge
	share          prometheus.Gauge
	liveWorkers    prometheus.Gauge
	openShards     prometheus.Gauge
	claims         prometheus.Counter
	handoffs       *prometheus.CounterVec
	handoffSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		held:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_leases_held", Help: "Leases this worker holds, as of its last heartbeat."}),
		share:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_lease_share", Help: "Most leases this worker acquires: ceil(open shards / live workers), capped by WORKER_MAX_LEASES."}),
		liveWorkers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_live_workers", Help: "Workers with a current heartbeat in the lease table, this one included."}),
		// Every worker sees the same table: max() of it against sum() of
		// worker_leases_held is the count of shards nobody processes.
		openShards: prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_stream_open_shards", Help: "Shards of the stream that are open or not yet finished, as of this worker's last balance pass."}),
		claims:     prometheus.NewCounter(prometheus.CounterOpts{Name: "worker_lease_claims_total", Help: "Leases this worker claimed from busier workers (steals)."}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_lease_handoffs_total", Help: "Claimed leases this worker handed over, by result."},
			[]string{"result"}),
		handoffSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "worker_lease_handoff_duration_seconds",
			Help:    "From a renewal seeing a claim to the lease's release: flush, checkpoint, release.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.held, m.share, m.liveWorkers, m.openShards, m.claims, m.handoffs, m.handoffSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
