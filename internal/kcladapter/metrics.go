package kcladapter

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/metrics"
)

// durationBuckets are the bounds, in seconds, of the GetRecords and
// ProcessRecords histograms: 1 ms (an emulator's GetRecords) to 60 s (a
// batch held up by sink retries and backoff).
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics is the library's MonitoringService on a Prometheus registry the
// worker owns: it serves nothing itself, the worker's metrics endpoint
// exposes the registry. It is safe for concurrent use by every shard
// consumer.
//
// Metric names start with <namespace>_kcl_:
//
//	records_processed_total{shard}         counter
//	bytes_processed_total{shard}           counter (record data bytes)
//	millis_behind_latest{shard}            gauge, as GetRecords reports it
//	leases_held                            gauge, leases this worker holds
//	lease_renewals_total{shard}            counter
//	get_records_duration_seconds           histogram
//	process_records_duration_seconds       histogram
//
// millis_behind_latest keeps the unit of Kinesis' MillisBehindLatest, the
// name operators know from the AWS console and KCL. The histograms carry
// no shard label, which would multiply their series by the shard count;
// per-shard lag is what millis_behind_latest is for.
type Metrics struct {
	records        *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	behind         *prometheus.GaugeVec
	leases         prometheus.Gauge
	renewals       *prometheus.CounterVec
	getRecords     prometheus.Histogram
	processRecords prometheus.Histogram

	mu   sync.Mutex
	held map[string]bool // shards whose lease this worker holds
}

var _ metrics.MonitoringService = (*Metrics)(nil)

// NewMetrics creates the metrics and registers them on reg. It fails if
// reg already holds them, and then leaves nothing registered.
//
// It also fails if namespace does not make classic metric names
// ([a-zA-Z_:][a-zA-Z0-9_:]*). The client library accepts any UTF-8 name
// now, but a name such as the library's own "<ApplicationName>_..." with a
// "-" in it must be quoted in PromQL, and breaks dashboards and recording
// rules written the usual way.
func NewMetrics(reg prometheus.Registerer, namespace string) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("kcladapter: new metrics: nil registerer")
	}
	const sub = "kcl"
	if name := prometheus.BuildFQName(namespace, sub, "leases_held"); !model.LegacyValidation.IsValidMetricName(name) {
		return nil, fmt.Errorf("kcladapter: new metrics: namespace %q makes the invalid metric name %q", namespace, name)
	}
	shard := []string{"shard"}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: sub, Name: name, Help: help}
	}
	histogram := func(name, help string) prometheus.Histogram {
		o := opts(name, help)
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: durationBuckets})
	}
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts(opts("records_processed_total",
			"Kinesis records handed to the record processor, by shard.")), shard),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("bytes_processed_total",
			"Data bytes of the Kinesis records handed to the record processor, by shard.")), shard),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("millis_behind_latest",
			"How far the shard's consumer is behind the tip of the stream, in milliseconds, as of its last GetRecords.")), shard),
		leases: prometheus.NewGauge(prometheus.GaugeOpts(opts("leases_held", "Shard leases this worker holds."))),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts(opts("lease_renewals_total",
			"Successful lease renewals, by shard.")), shard),
		getRecords:     histogram("get_records_duration_seconds", "Duration of a successful GetRecords call, the SDK's retries included."),
		processRecords: histogram("process_records_duration_seconds", "Time the record processor took for one batch."),
		held:           map[string]bool{},
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.records, m.bytes, m.behind, m.leases, m.renewals, m.getRecords, m.processRecords} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("kcladapter: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// Init does nothing: the metrics are registered by NewMetrics.
func (*Metrics) Init(appName, streamName, workerID string) error { return nil }

// Start does nothing: the worker serves the registry.
func (*Metrics) Start() error { return nil }

// Shutdown does nothing: there is no listener or buffer to stop.
func (*Metrics) Shutdown() {}

// IncrRecordsProcessed counts records handed to the processor.
func (m *Metrics) IncrRecordsProcessed(shard string, count int) {
	m.records.WithLabelValues(shard).Add(float64(count))
}

// IncrBytesProcessed counts record data bytes handed to the processor.
func (m *Metrics) IncrBytesProcessed(shard string, count int64) {
	m.bytes.WithLabelValues(shard).Add(float64(count))
}

// MillisBehindLatest sets the shard's lag.
func (m *Metrics) MillisBehindLatest(shard string, milliSeconds float64) {
	m.behind.WithLabelValues(shard).Set(milliSeconds)
}

// DeleteMetricMillisBehindLatest removes the shard's lag series: the
// library calls it when it lets go of the shard, and a stale value would
// go on claiming the lag of a shard this worker no longer reads.
func (m *Metrics) DeleteMetricMillisBehindLatest(shard string) {
	m.behind.DeleteLabelValues(shard)
}

// LeaseGained counts a lease as held. A shard already held is not counted
// twice.
func (m *Metrics) LeaseGained(shard string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held[shard] = true
	m.leases.Set(float64(len(m.held)))
}

// LeaseLost counts a lease as no longer held. A shard not held is
// ignored, so the gauge never drops below the truth.
func (m *Metrics) LeaseLost(shard string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.held, shard)
	m.leases.Set(float64(len(m.held)))
}

// LeaseRenewed counts a lease renewal.
func (m *Metrics) LeaseRenewed(shard string) {
	m.renewals.WithLabelValues(shard).Inc()
}

// RecordGetRecordsTime observes a GetRecords duration, given by the
// library in milliseconds.
func (m *Metrics) RecordGetRecordsTime(_ string, ms float64) {
	m.getRecords.Observe(ms / 1000)
}

// RecordProcessRecordsTime observes a ProcessRecords duration, given by
// the library in milliseconds.
func (m *Metrics) RecordProcessRecordsTime(_ string, ms float64) {
	m.processRecords.Observe(ms / 1000)
}
