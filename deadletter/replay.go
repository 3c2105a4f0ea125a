package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// ReplayOptions configures Replay.
type ReplayOptions struct {
	// Reason limits the replay to the letters parked for one reason
	// (processor.Reason*); empty replays every reason.
	Reason string
	// StopOnError stops at the first letter that fails instead of going
	// on with the next: useful when the sink is still down and every
	// letter would fail the same way.
	StopOnError bool
	// OnLetter, when set, is called after each letter with its outcome,
	// from the goroutine that called Replay.
	OnLetter func(LetterResult)
}

// LetterResult is the outcome of replaying one letter.
type LetterResult struct {
	// Key is the letter's object key.
	Key string
	// Corrupt reports an object that does not decode (ErrCorruptLetter):
	// skipped and left in place.
	Corrupt bool
	// Events is the number of events delivered to the sink.
	Events int
	// Skipped is the number of entries that cannot be replayed into a
	// sink (an undecodable record's raw data, or an event that no longer
	// parses); they stay in the letter.
	Skipped int
	// Rejected is the number of events the sink rejected for good (a
	// *processor.PartialError); they stay in the letter.
	Rejected int
	// Deleted reports that the object was deleted: everything in it was
	// delivered. When Err is nil and Deleted is false, the object was
	// rewritten with only the skipped and rejected entries, or left as it
	// was when it held nothing replayable.
	Deleted bool
	// Err is why the letter failed. A failed letter's object is left as
	// it was, except when only the final rewrite failed: then its events
	// are delivered and will be delivered again by the next replay.
	Err error
}

// ReplayStats sums up a Replay.
type ReplayStats struct {
	// Corrupt is the number of objects that did not decode, skipped and
	// left in place (see ErrCorruptLetter).
	Corrupt int
	// Letters is the number of letters re-driven: their deliverable events
	// delivered and the object deleted, or rewritten with what remains.
	Letters int
	// Events is the number of events delivered.
	Events int
	// Failed is the number of letters that failed (see LetterResult.Err).
	Failed int
	// Skipped is the number of entries kept because they cannot be
	// replayed into a sink.
	Skipped int
	// Rejected is the number of events the sink rejected again, kept in
	// their letter.
	Rejected int
}

// add counts one letter's outcome.
func (s *ReplayStats) add(res LetterResult) {
	s.Events += res.Events
	s.Skipped += res.Skipped
	s.Rejected += res.Rejected
	if res.Corrupt {
		s.Corrupt++
	}
	if res.Err != nil {
		s.Failed++
	} else if res.Events > 0 || res.Rejected > 0 {
		s.Letters++
	}
}

// ReplayWorker is the Shard.Worker of every replay writer.
const ReplayWorker = "replay"

// ReplayShardPrefix starts the Shard.ID of every replay writer, so that
// what a sink writes for a replay (an S3 sink's object keys, say) never
// collides with what it writes for the live shard.
const ReplayShardPrefix = "replay-"

// Replay re-drives the letters of sink (of one reason, if opts.Reason is
// set) into it, one letter at a time in key order. For each letter it
// opens a writer, writes the letter's events as records, flushes, checks
// that the writer reports them durable, closes it, and only then deletes
// the object: nothing is deleted before it is re-driven, and a letter that
// fails at any step is left in place and reported. Entries that cannot be
// replayed (see LetterResult.Skipped) and events the sink rejects for good
// are kept: the object is rewritten, under the same key, with only them.
//
// Rejected events stay in their own letter rather than being re-parked
// under processor.ReasonPermanent. A permanent letter of the same shard
// and sequence range can already exist (the processor parks a batch's
// rejected events under permanent and, when the breaker opens, the rest of
// the same batch under breaker-open), and Park overwrites: re-parking
// would destroy it. Rewriting the letter's own key cannot touch any other
// letter; the rejection is recorded in each entry's error and the letter's
// error.
//
// Replay delivers at least once: a crash between the sink's flush and the
// deletion delivers the letter again on the next replay. Sinks that
// deduplicate (Segment by messageId, S3 by key, DynamoDB by watermark)
// absorb it.
//
// The returned error joins the errors of every failed letter; the stats
// are valid with it. Replay stops early, with ctx's error, when ctx ends.
func Replay(ctx context.Context, store *Store, sink processor.Sink, opts ReplayOptions) (ReplayStats, error) {
	var stats ReplayStats
	keys, err := store.List(ctx, sink.Name(), opts.Reason)
	if err != nil {
		return stats, fmt.Errorf("deadletter: replay: %w", err)
	}
	var errs []error
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		res := replayLetter(ctx, store, sink, key)
		stats.add(res)
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("deadletter: replay %s: %w", key, res.Err))
		}
		if opts.OnLetter != nil {
			opts.OnLetter(res)
		}
		if res.Err != nil && opts.StopOnError {
			break
		}
	}
	return stats, errors.Join(errs...)
}

// replayLetter replays one letter; see Replay.
func replayLetter(ctx context.Context, store *Store, sink processor.Sink, key string) LetterResult {
	res := LetterResult{Key: key}
	l, err := store.Read(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return res // replayed and deleted since it was listed
	}
	if errors.Is(err, ErrCorruptLetter) {
		res.Corrupt = true
		return res
	}
	if err != nil {
		res.Err = err
		return res
	}
	b := buildRecords(l)
	res.Skipped = len(b.skipped)
	if len(b.recs) == 0 {
		return res // nothing a sink can take; the letter stays as it is
	}

	w, err := sink.Open(ctx, processor.Shard{
		Stream: l.Stream,
		ID:     ReplayShardPrefix + l.Shard,
		Worker: ReplayWorker,
		// A replay shard has no lease row to keep state in, and a replay
		// run again rebuilds everything from the letter anyway; the saver
		// is there for writers that save state before acting (the S3
		// sink) and would fail without one.
		Saver:  discardState{},
		Letter: &processor.LetterID{Shard: l.Shard, Reason: l.Reason, FirstSeq: l.FirstSeq, LastSeq: l.LastSeq},
	})
	if err != nil {
		res.Err = fmt.Errorf("open writer: %w", err)
		return res
	}
	closed := false
	defer func() {
		if !closed {
			_ = w.Close()
		}
	}()
	rejected, writeFailed, err := deliver(ctx, w, b, &l)
	if err != nil {
		res.Err = err
		if writeFailed {
			res.Events = keepUndelivered(ctx, store, key, l, b, w)
		}
		return res
	}
	closed = true
	if err := w.Close(); err != nil {
		res.Err = fmt.Errorf("close writer: %w", err)
		return res
	}
	res.Events, res.Rejected = b.events()-len(rejected), len(rejected)
	res.Deleted, res.Err = settle(ctx, store, key, l, b, rejected)
	return res
}

// deliver writes b's records to w and flushes them, and returns the
// events the sink can never take, by entry index (their cause is also
// noted in l.Error). writeFailed reports that Write itself failed, which
// a writer that knows what it delivered lets the caller narrow down.
func deliver(ctx context.Context, w processor.Writer, b batch, l *processor.Letter) (rejected map[int]error, writeFailed bool, err error) {
	rejected = map[int]error{}
	if err := w.Write(ctx, b.recs); err != nil {
		var pe *processor.PartialError
		if !errors.As(err, &pe) {
			return nil, true, fmt.Errorf("write records: %w", err)
		}
		for _, f := range pe.Failed {
			i, ok := b.entryOf(f)
			if !ok {
				// Without knowing which event failed, no entry can be
				// dropped safely: keep the whole letter.
				return nil, false, fmt.Errorf("write records: partial error names an event not written: %w", err)
			}
			rejected[i] = f.Err
		}
		l.Error = err.Error()
	}
	if err := w.Flush(ctx); err != nil {
		return nil, false, fmt.Errorf("flush writer: %w", err)
	}
	last := b.recs[len(b.recs)-1].SequenceNumber
	if d := w.Durable(); processor.CompareSeq(d, last) < 0 {
		return nil, false, fmt.Errorf("flush writer: sink reports durable up to %q, want %s", d, last)
	}
	return rejected, false, nil
}

// settle deletes the letter at key once every event in it was delivered,
// or rewrites it with only the entries left: those the sink rejected
// (with their cause) and those no record could be built for.
func settle(ctx context.Context, store *Store, key string, l processor.Letter, b batch, rejected map[int]error) (deleted bool, err error) {
	if len(b.skipped) == 0 && len(rejected) == 0 {
		if err := store.Delete(ctx, key); err != nil {
			return false, err
		}
		return true, nil
	}
	keep := l
	keep.Entries = nil
	for i, e := range l.Entries {
		if rerr, ok := rejected[i]; ok {
			if rerr != nil {
				e.Error = rerr.Error()
			}
			keep.Entries = append(keep.Entries, e)
		} else if b.skipped[i] {
			keep.Entries = append(keep.Entries, e)
		}
	}
	if k, err := store.Key(keep); err != nil || k != key {
		// The identity comes from key itself, so this cannot happen; if it
		// did, parking would write a second object beside this one.
		return false, fmt.Errorf("rewrite letter: identity gives key %q (%v)", k, err)
	}
	if err := store.Park(ctx, keep); err != nil {
		return false, fmt.Errorf("rewrite letter: %w", err)
	}
	return false, nil
}

// keepUndelivered rewrites a letter whose re-drive failed part way into a
// writer that can tell what it delivered (processor.PartialWriter), with
// only the entries not delivered, so that the next re-drive does not send
// the rest again: a destination that cannot deduplicate would count them
// twice. It returns the number of events delivered. If the rewrite fails
// the letter stays whole, and the next re-drive resends those events.
func keepUndelivered(ctx context.Context, store *Store, key string, l processor.Letter, b batch, w processor.Writer) int {
	pw, ok := w.(processor.PartialWriter)
	if !ok {
		return 0
	}
	delivered := map[int]bool{}
	for r, rec := range b.recs {
		for i := range rec.Events {
			if pw.Delivered(rec.SequenceNumber, i) {
				delivered[b.entries[r][i]] = true
			}
		}
	}
	if len(delivered) == 0 {
		return 0
	}
	keep := l
	keep.Entries = nil
	for i, e := range l.Entries {
		if !delivered[i] {
			keep.Entries = append(keep.Entries, e)
		}
	}
	if k, err := store.Key(keep); err != nil || k != key {
		return 0
	}
	if len(keep.Entries) == 0 {
		if store.Delete(ctx, key) != nil {
			return 0
		}
	} else if store.Park(ctx, keep) != nil {
		return 0
	}
	return len(delivered)
}

// batch is a letter turned back into records.
type batch struct {
	recs []processor.Record
	// entries[r][i] is the index in the letter of recs[r].Events[i].
	entries [][]int
	// bySeq maps a sequence number to its index in recs.
	bySeq map[string]int
	// skipped holds the indexes of entries that are not in recs.
	skipped map[int]bool
}

// buildRecords groups a letter's entries by sequence number into records,
// in sequence order as the Writer contract asks. An event's Raw is the
// parked bytes, so sinks that store events verbatim store what they would
// have. Kinesis' arrival time is not kept in a letter; the event's
// receivedAt (set by the gateway a moment before) stands in for it, or
// the letter's ParkedAt when the event has none, so that time-partitioned
// sinks file replayed events near where they would have gone.
func buildRecords(l processor.Letter) batch {
	b := batch{bySeq: map[string]int{}, skipped: map[int]bool{}}
	for i, e := range l.Entries {
		if e.Event == nil || e.SequenceNumber == "" {
			b.skipped[i] = true
			continue
		}
		ev, err := event.Parse(e.Event)
		if err != nil {
			b.skipped[i] = true
			continue
		}
		r, ok := b.bySeq[e.SequenceNumber]
		if !ok {
			r = len(b.recs)
			b.bySeq[e.SequenceNumber] = r
			arrival := ev.ReceivedAt
			if arrival.IsZero() {
				arrival = l.ParkedAt
			}
			b.recs = append(b.recs, processor.Record{SequenceNumber: e.SequenceNumber, ArrivalTime: arrival})
			b.entries = append(b.entries, nil)
		}
		b.recs[r].Events = append(b.recs[r].Events, ev)
		b.recs[r].Raw = append(b.recs[r].Raw, e.Event)
		b.entries[r] = append(b.entries[r], i)
	}
	// Letters are written in sequence order; sort anyway, since the Writer
	// contract depends on it.
	order := make([]int, len(b.recs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return processor.CompareSeq(b.recs[x].SequenceNumber, b.recs[y].SequenceNumber)
	})
	recs, entries := make([]processor.Record, len(order)), make([][]int, len(order))
	for to, from := range order {
		recs[to], entries[to] = b.recs[from], b.entries[from]
		b.bySeq[recs[to].SequenceNumber] = to
	}
	b.recs, b.entries = recs, entries
	return b
}

// events counts the events in b.recs.
func (b batch) events() int {
	n := 0
	for _, r := range b.recs {
		n += len(r.Events)
	}
	return n
}

// entryOf returns the letter entry of a failed event. Sinks may report a
// copy of the record, so it is found by sequence number, not by pointer.
func (b batch) entryOf(f processor.FailedEvent) (int, bool) {
	if f.Record == nil {
		return 0, false
	}
	r, ok := b.bySeq[f.Record.SequenceNumber]
	if !ok || f.Index < 0 || f.Index >= len(b.entries[r]) {
		return 0, false
	}
	return b.entries[r][f.Index], true
}

// discardState is the StateWriter of a replay writer: it keeps nothing.
type discardState struct{}

// SaveState does nothing.
func (discardState) SaveState(context.Context, []byte) error { return nil }
