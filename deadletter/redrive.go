package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/processor"
)

// TransientReasons are the reasons whose letters the worker re-drives by
// itself once the sink works again: the sink was down, not the events
// wrong. Permanent letters wait for a person and `worker replay`.
var TransientReasons = []string{processor.ReasonBreakerOpen, processor.ReasonRetriesExhausted}

// Redrive re-drives one shard's transient letters for sink, in sequence
// order across both reasons (a range parked as retries-exhausted before
// a later one parked as breaker-open goes first), each as Replay does:
// deleted only once the sink made it durable. It stops at the first
// letter that fails, since the next would fail the same way, and before
// each letter checks owns: only the worker holding the shard's lease
// re-drives its letters, so two workers never re-drive the same letter
// at once.
func Redrive(ctx context.Context, store *Store, sink processor.Sink, stream, shard string, owns func() bool) (ReplayStats, error) {
	var stats ReplayStats
	type keyed struct {
		key   string
		first string
	}
	var letters []keyed
	for _, reason := range TransientReasons {
		keys, err := store.List(ctx, sink.Name(), reason)
		if err != nil {
			return stats, fmt.Errorf("deadletter: redrive: %w", err)
		}
		for _, k := range keys {
			if id, ok := store.parseKey(k); ok && id.stream == stream && id.shard == shard {
				letters = append(letters, keyed{k, id.first})
			}
		}
	}
	slices.SortStableFunc(letters, func(a, b keyed) int { return processor.CompareSeq(a.first, b.first) })
	for _, l := range letters {
		if ctx.Err() != nil || !owns() {
			break
		}
		res := replayLetter(ctx, store, sink, l.key)
		stats.add(res)
		if res.Err != nil {
			return stats, fmt.Errorf("deadletter: redrive %s: %w", l.key, res.Err)
		}
	}
	return stats, nil
}

// DefaultRedriveInterval is how often a Redriver looks for letters to
// re-drive: soon after a breaker closes, at two List calls per sink.
const DefaultRedriveInterval = 5 * time.Second

// Redriver re-drives, in the background, the transient letters of the
// shards this worker holds into each sink whose breaker is closed again.
type Redriver struct {
	Store  *Store
	Sinks  []processor.Sink
	Stream string
	// Healthy reports whether a sink's breaker is closed.
	Healthy func(sink string) bool
	// Shards returns the shards this worker holds now; Owns whether it
	// still holds one.
	Shards func() []string
	Owns   func(shard string) bool
	// Interval is the time between passes (DefaultRedriveInterval).
	Interval time.Duration
	Log      *zap.Logger

	redriven *prometheus.CounterVec
	backlog  *prometheus.GaugeVec
}

// Register registers the re-drive metrics on reg.
func (r *Redriver) Register(reg prometheus.Registerer) error {
	r.redriven = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_deadletter_redriven_events_total",
		Help: "Parked events this worker re-drove into their sink once its breaker closed."}, []string{"sink"})
	r.backlog = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_deadletter_transient_letters",
		Help: "Transient letters (breaker-open, retries-exhausted) of this worker's shards waiting for re-drive, as of the last pass."}, []string{"sink"})
	return errors.Join(reg.Register(r.redriven), reg.Register(r.backlog))
}

// Run re-drives every Interval until ctx ends, then returns ctx.Err().
func (r *Redriver) Run(ctx context.Context) error {
	d := r.Interval
	if d <= 0 {
		d = DefaultRedriveInterval
	}
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		for _, s := range r.Sinks {
			if !r.Healthy(s.Name()) {
				continue
			}
			for _, shard := range r.Shards() {
				stats, err := Redrive(ctx, r.Store, s, r.Stream, shard, func() bool { return r.Owns(shard) })
				if stats.Events > 0 {
					log.Info("re-drove parked events", zap.String("sink", s.Name()), zap.String("shard", shard),
						zap.Int("letters", stats.Letters), zap.Int("events", stats.Events))
					if r.redriven != nil {
						r.redriven.WithLabelValues(s.Name()).Add(float64(stats.Events))
					}
				}
				if err != nil && ctx.Err() == nil {
					log.Warn("re-drive stopped; next pass tries again", zap.String("sink", s.Name()), zap.String("shard", shard), zap.Error(err))
				}
			}
			if r.backlog != nil {
				n, err := r.pending(ctx, s.Name())
				if err == nil {
					r.backlog.WithLabelValues(s.Name()).Set(float64(n))
				}
			}
		}
	}
}

// pending counts the transient letters of the shards held.
func (r *Redriver) pending(ctx context.Context, sink string) (int, error) {
	held := map[string]bool{}
	for _, s := range r.Shards() {
		held[s] = true
	}
	n := 0
	for _, reason := range TransientReasons {
		keys, err := r.Store.List(ctx, sink, reason)
		if err != nil {
			return 0, err
		}
		for _, k := range keys {
			if id, ok := r.Store.parseKey(k); ok && id.stream == r.Stream && held[id.shard] {
				n++
			}
		}
	}
	return n, nil
}
