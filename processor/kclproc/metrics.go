package kclproc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the processor's Prometheus metrics, prefixed worker_.
type metrics struct {
	records        prometheus.Counter
	events         prometheus.Counter
	decodeFailures prometheus.Counter
	delivered      *prometheus.CounterVec
	parked         *prometheus.CounterVec
	sinkErrors     *prometheus.CounterVec
	callDuration   *prometheus.HistogramVec
	breakerState   *prometheus.GaugeVec
	batchDuration  prometheus.Histogram
	checkpoints    prometheus.Counter
	leases         prometheus.Gauge
	memBudget      prometheus.Gauge
	panics         prometheus.Counter
	behind         *prometheus.GaugeVec
	checkpointLag  *prometheus.GaugeVec
	routedAway     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	durations := []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &metrics{
		records:        prometheus.NewCounter(prometheus.CounterOpts{Name: "worker_records_total", Help: "Kinesis records received."}),
		events:         prometheus.NewCounter(prometheus.CounterOpts{Name: "worker_events_total", Help: "Events decoded from records."}),
		decodeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "worker_decode_failures_total", Help: "Records that did not decode and were parked."}),
		delivered:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_sink_delivered_events_total", Help: "Events a sink made durable."}, []string{"sink"}),
		parked:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_sink_parked_events_total", Help: "Events parked in the dead-letter store, by sink and reason."}, []string{"sink", "reason"}),
		sinkErrors:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_sink_failed_calls_total", Help: "Sink calls that failed transiently (each retry counts)."}, []string{"sink"}),
		callDuration:   prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "worker_sink_call_duration_seconds", Help: "Duration of sink Write and Flush calls.", Buckets: durations}, []string{"sink"}),
		breakerState:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_sink_breaker_state", Help: "Breaker state per sink: 0 closed, 1 half-open, 2 open."}, []string{"sink"}),
		batchDuration:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "worker_batch_duration_seconds", Help: "Time to decode, fan out and checkpoint one GetRecords batch.", Buckets: durations}),
		checkpoints:    prometheus.NewCounter(prometheus.CounterOpts{Name: "worker_checkpoints_total", Help: "Progress writes to the lease table."}),
		panics:         prometheus.NewCounter(prometheus.CounterOpts{Name: "worker_recovered_panics_total", Help: "Panics recovered while decoding a record or in a sink; their records were parked."}),
		memBudget:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_memory_budget_bytes", Help: "Budget of decoded records shared by all shards."}),
		leases:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_shard_processors", Help: "Shards this worker is processing (leases held)."}),
		behind:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_seconds_behind_latest", Help: "How far behind the tip of its shard the last batch was."}, []string{"shard"}),
		checkpointLag:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_checkpoint_lag_seconds", Help: "Age of the oldest received record the shard's checkpoint has not passed (0 when caught up)."}, []string{"shard"}),
		routedAway:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_sink_integrations_skipped_events_total", Help: "Events not given to a sink because their integrations object turned it off."}, []string{"sink"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.records, m.events, m.decodeFailures, m.delivered, m.parked, m.sinkErrors,
		m.callDuration, m.breakerState, m.batchDuration, m.checkpoints, m.leases, m.behind, m.checkpointLag, m.memBudget, m.panics, m.routedAway} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("register processor metrics"), err)
		}
	}
	return m, nil
}
