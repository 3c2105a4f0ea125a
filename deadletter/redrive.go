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

// transientLetters lists sink's transient letters of stream by shard,
// each shard's in sequence order across both reasons (a range parked as
// retries-exhausted before a later one parked as breaker-open comes
// first), with when each was written: one List per reason, however many
// shards.
func transientLetters(ctx context.Context, store *Store, sink, stream string) (map[string][]Listed, error) {
	type keyed struct {
		l     Listed
		first string
	}
	byShard := map[string][]keyed{}
	for _, reason := range TransientReasons {
		listed, err := store.ListLetters(ctx, sink, reason)
		if err != nil {
			return nil, fmt.Errorf("deadletter: redrive: %w", err)
		}
		for _, l := range listed {
			if id, ok := store.parseKey(l.Key); ok && id.stream == stream {
				byShard[id.shard] = append(byShard[id.shard], keyed{l, id.first})
			}
		}
	}
	out := make(map[string][]Listed, len(byShard))
	for shard, ls := range byShard {
		slices.SortStableFunc(ls, func(a, b keyed) int { return processor.CompareSeq(a.first, b.first) })
		for _, l := range ls {
			out[shard] = append(out[shard], l.l)
		}
	}
	return out, nil
}

// redrive re-drives one shard's letters (keys, in order) into sink, each
// as Replay does: deleted only once the sink made it durable. It stops at
// the first letter that fails, since the next would fail the same way,
// and before each letter checks owns: only the worker holding the shard's
// lease re-drives its letters, so two workers never re-drive the same
// letter at once. It returns the letters left.
func redrive(ctx context.Context, store *Store, sink processor.Sink, keys []string, owns func() bool) (ReplayStats, int, error) {
	var stats ReplayStats
	for i, key := range keys {
		if ctx.Err() != nil || !owns() {
			return stats, len(keys) - i, nil
		}
		res := replayLetter(ctx, store, sink, key)
		stats.add(res)
		if res.Err != nil {
			return stats, len(keys) - i, fmt.Errorf("deadletter: redrive %s: %w", key, res.Err)
		}
	}
	return stats, 0, nil
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
	oldest   *prometheus.GaugeVec
}

// Register registers the re-drive metrics on reg.
func (r *Redriver) Register(reg prometheus.Registerer) error {
	r.redriven = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_deadletter_redriven_events_total",
		Help: "Parked events this worker re-drove into their sink once its breaker closed."}, []string{"sink"})
	r.backlog = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_deadletter_transient_letters",
		Help: "Transient letters (breaker-open, retries-exhausted) of this worker's shards waiting for re-drive, as of the last pass."}, []string{"sink"})
	r.oldest = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "worker_deadletter_oldest_letter_age_seconds",
		Help: "Age of the oldest transient letter of this worker's shards still waiting for re-drive, as of the last pass; 0 when none."}, []string{"sink"})
	// Every sink's series exist from the start, at 0: an alert's rate()
	// or a dashboard's sum needs a series before the first letter.
	for _, s := range r.Sinks {
		r.redriven.WithLabelValues(s.Name())
		r.backlog.WithLabelValues(s.Name())
		r.oldest.WithLabelValues(s.Name())
	}
	return errors.Join(reg.Register(r.redriven), reg.Register(r.backlog), reg.Register(r.oldest))
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
			if err := r.pass(ctx, s, log); err != nil && ctx.Err() == nil {
				log.Warn("list dead letters for re-drive", zap.String("sink", s.Name()), zap.Error(err))
			}
		}
	}
}

// pass re-drives, if s's breaker is closed, the letters of every shard
// held, and sets the backlog gauge to what is left of them.
func (r *Redriver) pass(ctx context.Context, s processor.Sink, log *zap.Logger) error {
	letters, err := transientLetters(ctx, r.Store, s.Name(), r.Stream)
	if err != nil {
		return err
	}
	healthy := r.Healthy(s.Name())
	left := 0
	var oldest time.Time
	for _, shard := range r.Shards() {
		listed := letters[shard]
		keys := make([]string, len(listed))
		for i, l := range listed {
			keys[i] = l.Key
		}
		n := len(keys)
		if healthy && len(keys) > 0 {
			var stats ReplayStats
			var err error
			stats, n, err = redrive(ctx, r.Store, s, keys, func() bool { return r.Owns(shard) })
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
		left += n
		// The letters left are the last n, in order: the oldest written
		// among them is the age to report.
		for _, l := range listed[len(listed)-n:] {
			if !l.Modified.IsZero() && (oldest.IsZero() || l.Modified.Before(oldest)) {
				oldest = l.Modified
			}
		}
	}
	if r.backlog != nil {
		r.backlog.WithLabelValues(s.Name()).Set(float64(left))
	}
	if r.oldest != nil {
		age := 0.0
		if !oldest.IsZero() {
			age = max(0, time.Since(oldest).Seconds())
		}
		r.oldest.WithLabelValues(s.Name()).Set(age)
	}
	return nil
}
