package kclproc

import (
	"cmp"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// Defaults of Config.
const (
	// DefaultCallTimeout bounds one Write or Flush of a sink, so that a
	// hung destination can never hold a shard (and its lease) forever.
	DefaultCallTimeout = 30 * time.Second
	// DefaultRetryBudget bounds the retries of one batch for one sink
	// before its records are parked. With the call timeout it keeps a
	// ProcessRecords call well under Kinesis' 5-minute iterator expiry.
	DefaultRetryBudget = 60 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the capped
	// exponential backoff between retries (a Retry-After may ask more).
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// DefaultCheckpointInterval is the least time between two progress
	// writes of a shard: each is a DynamoDB write.
	DefaultCheckpointInterval = time.Second
)

// Config configures the record processors.
type Config struct {
	// Stream is the stream name, given to sinks in Shard.
	Stream string
	// WorkerID is this worker's lease owner ID.
	WorkerID string
	// CallTimeout bounds each sink call (DefaultCallTimeout).
	CallTimeout time.Duration
	// RetryBudget bounds retries per batch and sink (DefaultRetryBudget).
	RetryBudget time.Duration
	// MinBackoff and MaxBackoff bound retry waits (DefaultMinBackoff,
	// DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// CheckpointInterval is the least time between progress writes of a
	// shard (DefaultCheckpointInterval); shutdown and shard end always write.
	CheckpointInterval time.Duration
	// MemoryBudget bounds the bytes of decoded records that all shards
	// hold at once, from decoding until every sink made them durable
	// (DefaultMemoryBudget).
	MemoryBudget int64
	// Breaker configures every sink's breaker.
	Breaker BreakerConfig
	// Registerer receives the processor's metrics; nil: unregistered.
	Registerer prometheus.Registerer
}

// setDefaults fills in the defaults of the settings left zero, and
// refuses negative ones.
func (c *Config) setDefaults() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CallTimeout", c.CallTimeout}, {"RetryBudget", c.RetryBudget}, {"MinBackoff", c.MinBackoff},
		{"MaxBackoff", c.MaxBackoff}, {"CheckpointInterval", c.CheckpointInterval}, {"Breaker.OpenTimeout", c.Breaker.OpenTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("create processor factory: %s %v is negative", d.name, d.v)
		}
	}
	if c.MemoryBudget < 0 {
		return fmt.Errorf("create processor factory: MemoryBudget %d is negative", c.MemoryBudget)
	}
	c.CallTimeout = cmp.Or(c.CallTimeout, DefaultCallTimeout)
	c.RetryBudget = cmp.Or(c.RetryBudget, DefaultRetryBudget)
	c.MinBackoff = cmp.Or(c.MinBackoff, DefaultMinBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
	c.CheckpointInterval = cmp.Or(c.CheckpointInterval, DefaultCheckpointInterval)
	c.MemoryBudget = cmp.Or(c.MemoryBudget, DefaultMemoryBudget)
	return nil
}

// sinkRuntime is a sink with what all shards share about it.
type sinkRuntime struct {
	name    string
	sink    processor.Sink
	breaker *breaker
	// integration is the sink's name in integrations objects, "" when it
	// takes every event.
	integration string
	// rejected reports that the sink takes the envelopes of refused
	// events.
	rejected bool
}

// Factory creates one record processor per shard lease; it implements the
// KCL's IRecordProcessorFactory. It keeps track of the live processor of
// each shard, because the library never tells a processor that its lease
// was lost: when a shard gets a new processor, the old one is closed and
// its buffered sink state dropped. It is safe for concurrent use.
type Factory struct {
	cfg   Config
	sinks []*sinkRuntime
	dlq   processor.DeadLetters
	store processor.ProgressStore
	// handoffs is store's Handoffs side, nil if its leases cannot be
	// claimed.
	handoffs processor.Handoffs
	log      *zap.Logger
	dec      *event.RecordDecoder
	metrics  *metrics
	mem      *budget

	mu    sync.Mutex
	procs map[string]*recordProcessor
}

// NewFactory returns a factory whose processors fan out to sinks.
func NewFactory(cfg Config, sinks []processor.Sink, dlq processor.DeadLetters, store processor.ProgressStore, log *zap.Logger) (*Factory, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.WorkerID == "" {
		return nil, errors.New("create processor factory: WorkerID is required")
	}
	if dlq == nil || store == nil {
		return nil, errors.New("create processor factory: dead letters and progress store are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	dec, err := event.NewRecordDecoder()
	if err != nil {
		return nil, fmt.Errorf("create processor factory: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("create processor factory: %w", err)
	}
	f := &Factory{cfg: cfg, dlq: dlq, store: store, log: log, dec: dec, metrics: m, procs: map[string]*recordProcessor{}}
	f.handoffs, _ = store.(processor.Handoffs)
	f.mem = newBudget(cfg.MemoryBudget)
	m.memBudget.Set(float64(cfg.MemoryBudget))
	if cfg.Registerer != nil {
		err := cfg.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "worker_memory_budget_used_bytes",
			Help: "Bytes of decoded records held by all shards, charged against WORKER_MEMORY_LIMIT's budget."},
			func() float64 { return float64(f.mem.used.Load()) }))
		if err != nil {
			return nil, fmt.Errorf("create processor factory: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, s := range sinks {
		name := s.Name()
		if name == "" || seen[name] || name == processor.DecodeSink {
			return nil, fmt.Errorf("create processor factory: sink name %q is empty, reserved or used twice", name)
		}
		seen[name] = true
		rt := &sinkRuntime{name: name, sink: s}
		if r, ok := s.(processor.Routed); ok {
			rt.integration = r.IntegrationName()
		}
		if r, ok := s.(processor.RejectedTaker); ok {
			rt.rejected = r.TakesRejected()
		}
		rt.breaker = newBreaker(name, cfg.Breaker, func(from, to gobreaker.State) {
			m.breakerState.WithLabelValues(name).Set(float64(to))
			log.Warn("breaker state changed", zap.String("sink", name), zap.String("from", from.String()), zap.String("to", to.String()))
		})
		m.breakerState.WithLabelValues(name).Set(0)
		// Each sink's series exist from the start, at 0, so that alerts
		// and dashboards see a rate of 0 rather than no data.
		m.delivered.WithLabelValues(name)
		m.sinkErrors.WithLabelValues(name)
		m.routedAway.WithLabelValues(name)
		for _, reason := range []string{processor.ReasonPermanent, processor.ReasonBreakerOpen, processor.ReasonRetriesExhausted} {
			m.parked.WithLabelValues(name, reason)
		}
		f.sinks = append(f.sinks, rt)
	}
	m.parked.WithLabelValues(processor.DecodeSink, processor.ReasonDecode)
	return f, nil
}

// CreateProcessor returns a new processor; it learns its shard in Initialize.
func (f *Factory) CreateProcessor() kcl.IRecordProcessor {
	return &recordProcessor{f: f}
}

// register makes p the live processor of its shard, closing the previous
// one: a new lease means the old consumer is gone, whether or not the
// library told it.
func (f *Factory) register(p *recordProcessor) {
	f.mu.Lock()
	old := f.procs[p.shard]
	f.procs[p.shard] = p
	f.mu.Unlock()
	if old != nil && old != p {
		old.close("replaced by a new lease of the shard")
	}
}

func (f *Factory) unregister(p *recordProcessor) {
	f.mu.Lock()
	if f.procs[p.shard] == p {
		delete(f.procs, p.shard)
	}
	f.mu.Unlock()
}

// Shards returns the shards with a live processor.
func (f *Factory) Shards() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.procs))
	for s := range f.procs {
		out = append(out, s)
	}
	return out
}

// Close closes every live processor without flushing: for a process
// exit after the KCL worker has shut down (which flushes gracefully).
func (f *Factory) Close() {
	f.mu.Lock()
	procs := make([]*recordProcessor, 0, len(f.procs))
	for _, p := range f.procs {
		procs = append(procs, p)
	}
	f.mu.Unlock()
	for _, p := range procs {
		p.close("worker closing")
	}
}

// SinkHealthy reports whether the named sink's breaker is closed: the
// sink takes writes again, and what was parked while it was down can be
// re-driven.
func (f *Factory) SinkHealthy(name string) bool {
	for _, rt := range f.sinks {
		if rt.name == name {
			return rt.breaker.closed()
		}
	}
	return false
}
