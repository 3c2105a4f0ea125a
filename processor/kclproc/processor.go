// Package kclproc is the worker's engine: the KCL IRecordProcessor and its
// factory. For each shard it decodes every record (our format, plain JSON
// and KPL aggregates, which it opens itself so the library never drops a
// batch over one bad aggregate), hands each batch to every sink concurrently
// behind one circuit breaker per sink, parks what cannot be delivered,
// bounds the memory all shards hold, and checkpoints the lowest sequence
// number every sink made durable. The vocabulary it runs (Sink, Writer, the
// errors) is package processor.
package kclproc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/backoff"
	"github.com/buildtelemetry/pipeline/processor"
)

// recordProcessor processes one shard under one lease: it decodes each
// batch, fans it out to every sink concurrently, parks what cannot be
// delivered, and checkpoints the lowest sequence number all sinks made
// durable. The KCL calls it from one goroutine.
type recordProcessor struct {
	f     *Factory
	shard string
	log   *zap.Logger

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed against close from the factory
	closed bool
	// leaseLost is set by a sink goroutine that learned, saving its
	// state, that the lease is gone; the processor closes after the fan-out.
	leaseLost atomic.Bool

	sinks    []*shardSink
	saved    processor.Progress // what the lease row holds
	lastSave time.Time
	lastSeq  string // last sequence number received
	// charges are the budget held by records not yet durable in every
	// sink, in sequence order.
	charges []charge
	// chunkSize is the budget of the records in the chunk being built.
	chunkSize int64
	// unsaved are the arrival times of received records beyond the
	// saved checkpoint, oldest first: the checkpoint lag metric.
	unsaved []seqTime
	// parkedUnsaved is set when records were parked since the last save:
	// the next checkpoint is written at once, since a crash before it
	// would deliver them again and park them a second time, and a sink
	// that cannot deduplicate would get them from both letters.
	parkedUnsaved bool
	// before maps each aggregate received and not yet checkpointed past
	// to the Kinesis record before it: where reading resumes when the
	// checkpoint falls inside the aggregate.
	before map[string]string
}

type seqTime struct {
	seq string
	at  time.Time
}

// shardSink is one sink's delivery state for this shard.
type shardSink struct {
	rt    *sinkRuntime
	w     processor.Writer // nil until opened, and after parking its buffer
	state []byte           // state to open the next writer with
	// done is the sequence number up to which every record is durable
	// for this sink (delivered, parked, or done before this lease).
	done string
	// outstanding are records given to the writer and not yet durable, in
	// order: what is parked if the sink fails for good.
	outstanding []processor.Record
	// notes are the parked ranges a ParkNoter sink has not recorded yet,
	// in order, and noteFloor the watermark before the first of them:
	// what the lease row may hold for the sink until they are recorded.
	notes     []processor.ParkNote
	noteFloor string
}

// saveable is the watermark the lease row may hold for the sink: done,
// or below the first parked range the sink has not been told of.
func (ss *shardSink) saveable() string {
	if len(ss.notes) > 0 {
		return ss.noteFloor
	}
	return ss.done
}

var _ kcl.IRecordProcessor = (*recordProcessor)(nil)

// Initialize starts the processor for a shard: it loads the shard's
// progress so each sink skips what it already made durable.
func (p *recordProcessor) Initialize(in *kcl.InitializationInput) {
	p.shard = in.ShardId
	p.log = p.f.log.With(zap.String("shard", p.shard))
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.f.register(p)
	p.f.metrics.leases.Inc()

	var prog processor.Progress
	err := p.retry(func(ctx context.Context) error {
		var err error
		prog, err = p.f.store.LoadProgress(ctx, p.shard)
		return err
	})
	if err != nil {
		p.log.Error("load progress; delivering from the checkpoint to every sink", zap.Error(err))
	}
	p.saved = prog
	start := prog.Checkpoint
	if in.ExtendedSequenceNumber != nil {
		start = processor.MaxSeq(start, aws.ToString(in.ExtendedSequenceNumber.SequenceNumber))
	}
	if start == shardEnd {
		start = ""
	}
	p.lastSeq = start
	p.before = map[string]string{}
	for _, rt := range p.f.sinks {
		ss := &shardSink{rt: rt, done: start}
		if sp, ok := prog.Sinks[rt.name]; ok {
			ss.done = processor.MaxSeq(ss.done, sp.Watermark)
			ss.state = sp.State
		}
		p.sinks = append(p.sinks, ss)
	}
	p.lastSave = time.Now()
	p.log.Info("shard processor started", zap.String("checkpoint", prog.Checkpoint))
}

const shardEnd = "SHARD_END"

// ProcessRecords delivers one batch. It returns only when every sink has
// accepted or parked the batch, so the KCL reads on at the pace of the
// slowest healthy sink; an unhealthy one is parked instead of waited for.
func (p *recordProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	if p.isClosed() {
		return
	}
	if h := p.f.handoffs; h != nil && h.HandoffRequested(p.shard) {
		// This batch is left undelivered: the claimant reads it again
		// from the checkpoint the handoff saves.
		p.handoff(h)
		return
	}
	start := time.Now()
	if n := len(in.Records); n > 0 {
		p.unsaved = append(p.unsaved, seqTime{aws.ToString(in.Records[n-1].SequenceNumber), aws.ToTime(in.Records[0].ApproximateArrivalTimestamp)})
	}
	if p.f.mem.pressed() && len(p.charges) > 0 {
		// Another shard waits for memory: give back what our sinks hold
		// in their buffers instead of letting it wait for their age limit.
		p.fanOut(nil, true)
		p.releaseDurable()
	}
	var chunk []processor.Record
	p.chunkSize = 0
	for _, kr := range in.Records {
		recs := p.decode(kr)
		for _, r := range recs {
			if !p.charge(r, &chunk) {
				return // closed while waiting for memory
			}
			chunk = append(chunk, r)
		}
		seq := aws.ToString(kr.SequenceNumber)
		if len(recs) > 0 && recs[0].SequenceNumber != seq {
			// An aggregate: a checkpoint inside it resumes before it.
			p.before[seq] = p.lastSeq
		}
		p.lastSeq = processor.MaxSeq(p.lastSeq, seq)
	}
	p.f.metrics.records.Add(float64(len(in.Records)))
	p.fanOut(chunk, false)
	p.releaseDurable()
	if p.leaseLost.Load() {
		p.log.Warn("lease lost while delivering; dropping sink state")
		p.close("lease lost")
		return
	}
	p.checkpoint(p.parkedUnsaved)
	p.f.metrics.batchDuration.Observe(time.Since(start).Seconds())
	lag := 0.0
	if len(p.unsaved) > 0 && !p.unsaved[0].at.IsZero() {
		lag = time.Since(p.unsaved[0].at).Seconds()
	}
	p.f.metrics.checkpointLag.WithLabelValues(p.shard).Set(lag)
	p.f.metrics.behind.WithLabelValues(p.shard).Set(float64(in.MillisBehindLatest) / 1000)
}

// Shutdown flushes every sink and writes the final progress. At shard end
// it then checkpoints SHARD_END, without which the library would lease
// the closed shard again forever and its children would never start.
func (p *recordProcessor) Shutdown(in *kcl.ShutdownInput) {
	defer p.close("shutdown")
	if p.isClosed() {
		return
	}
	p.log.Info("shard processor shutting down", zap.String("reason", shutdownReason(in.ShutdownReason)))
	p.fanOut(nil, true)
	if !p.checkpoint(true) {
		return
	}
	if in.ShutdownReason != kcl.TERMINATE || in.Checkpointer == nil {
		return
	}
	for _, ss := range p.sinks {
		if len(ss.outstanding) > 0 || len(ss.notes) > 0 {
			p.log.Error("shard end with undelivered records or unrecorded parked ranges; not checkpointing SHARD_END", zap.String("sink", ss.rt.name))
			return
		}
	}
	err := p.retry(func(context.Context) error { return in.Checkpointer.Checkpoint(nil) })
	if err != nil {
		p.log.Error("checkpoint shard end", zap.Error(err))
		return
	}
	p.log.Info("shard end checkpointed")
}

// handoff gives the shard's lease to the worker that claimed it: flush
// every sink, save the progress, and only then release the lease, so
// that the claimant resumes exactly where this processor stopped. If any
// step fails the lease is kept and the next batch tries again (the claim
// may expire meanwhile; the lease is then simply kept).
func (p *recordProcessor) handoff(h processor.Handoffs) {
	start := time.Now()
	p.log.Info("handing the lease over: flushing every sink")
	p.fanOut(nil, true)
	for _, ss := range p.sinks {
		if len(ss.outstanding) > 0 {
			p.log.Warn("handoff postponed: a sink holds undelivered records", zap.String("sink", ss.rt.name))
			return
		}
	}
	if !p.checkpoint(true) {
		return
	}
	err := p.retry(func(ctx context.Context) error { return h.Handoff(ctx, p.shard) })
	if errors.Is(err, processor.ErrLeaseLost) {
		p.close("lease lost")
		return
	}
	if err != nil {
		p.log.Error("hand over lease; keeping it", zap.Error(err))
		return
	}
	p.close("handed over after " + time.Since(start).Round(time.Millisecond).String())
}

func shutdownReason(r kcl.ShutdownReason) string {
	switch r {
	case kcl.TERMINATE:
		return "shard end"
	case kcl.REQUESTED:
		return "shutdown requested"
	}
	return "zombie"
}

func (p *recordProcessor) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// close drops all sink state without delivering it: the lease is lost or
// the processor is done. Records not yet durable are replayed from the
// checkpoint by whoever holds the lease next.
func (p *recordProcessor) close(why string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	if p.cancel != nil {
		p.cancel()
	}
	for _, ss := range p.sinks {
		if ss.w != nil {
			_ = ss.w.Close()
			ss.w = nil
		}
	}
	p.releaseUpTo(len(p.charges))
	p.f.unregister(p)
	p.f.metrics.leases.Dec()
	p.f.metrics.behind.DeleteLabelValues(p.shard)
	p.f.metrics.checkpointLag.DeleteLabelValues(p.shard)
	if p.log != nil {
		p.log.Info("shard processor closed", zap.String("why", why))
	}
}

// decode turns a Kinesis record into Records: one, or one per user
// record of a KPL aggregate, numbered UserSeq(seq, sub) so that progress
// can stop inside an aggregate. What does not decode is parked with its
// reason and never reaches a sink, and the shard goes on: a whole record
// that is not ours, JSON or a valid KPL aggregate, or just the user
// records and events of it that fail, the others being delivered. A panic
// while decoding parks the record as well: no input may stop the shard,
// let alone the worker.
func (p *recordProcessor) decode(kr types.Record) (recs []processor.Record) {
	seq := aws.ToString(kr.SequenceNumber)
	defer func() {
		if v := recover(); v != nil {
			p.f.metrics.panics.Inc()
			p.log.Error("recovered panic decoding a record; parking it", zap.String("seq", seq), zap.Any("panic", v), zap.Stack("stack"))
			p.parkUndecodable(seq, kr.Data, fmt.Errorf("panic decoding record: %v", v))
			recs = nil
		}
	}()
	parts, err := p.f.dec.DecodeParts(kr.Data)
	var bad []processor.LetterEntry
	var ae *event.AggregateError
	if errors.As(err, &ae) {
		for _, b := range ae.Bad {
			bad = append(bad, processor.LetterEntry{SequenceNumber: processor.UserSeq(seq, b.Index), Data: b.Data, Error: fmt.Sprintf("KPL user record %d: %v", b.Index, b.Err)})
		}
		err = nil
	}
	if err != nil {
		p.parkUndecodable(seq, kr.Data, err)
		return nil
	}
	// Our records hold events the gateway validated, under a verified
	// checksum; other producers' JSON gets full parsing.
	parse := event.Parse
	if event.IsRecord(kr.Data) {
		parse = event.ParseTrusted
	}
	arrival := aws.ToTime(kr.ApproximateArrivalTimestamp)
	events := 0
	for _, part := range parts {
		r := processor.Record{SequenceNumber: seq, ArrivalTime: arrival}
		if part.Sub >= 0 {
			r.SequenceNumber = processor.UserSeq(seq, part.Sub)
		}
		r.Raw = make([][]byte, 0, len(part.Events))
		r.Events = make([]*event.Event, 0, len(part.Events))
		for _, raw := range part.Events {
			ev, err := parse(raw)
			if err != nil {
				bad = append(bad, processor.LetterEntry{SequenceNumber: r.SequenceNumber, Data: raw, Error: err.Error()})
				continue
			}
			r.Raw = append(r.Raw, raw)
			r.Events = append(r.Events, ev)
		}
		if len(r.Events) > 0 {
			recs = append(recs, r)
			events += len(r.Events)
		}
	}
	if len(bad) > 0 {
		p.log.Warn("parking undecodable parts of a record", zap.String("seq", seq), zap.Int("parts", len(bad)),
			zap.Int("decoded", events), zap.String("first_error", bad[0].Error))
		p.parkDecode(bad)
	}
	p.f.metrics.events.Add(float64(events))
	return recs
}

// parkUndecodable parks a whole record that did not decode.
func (p *recordProcessor) parkUndecodable(seq string, data []byte, err error) {
	p.log.Warn("parking undecodable record", zap.String("seq", seq), zap.Error(err))
	p.parkDecode([]processor.LetterEntry{{SequenceNumber: seq, Data: data, Error: err.Error()}})
}

// parkDecode parks what of one record did not decode, under DecodeSink.
func (p *recordProcessor) parkDecode(entries []processor.LetterEntry) {
	p.f.metrics.decodeFailures.Inc()
	first, last := entries[0].SequenceNumber, entries[0].SequenceNumber
	for _, e := range entries[1:] {
		first, last = processor.MinSeq(first, e.SequenceNumber), processor.MaxSeq(last, e.SequenceNumber)
	}
	p.park(processor.Letter{Sink: processor.DecodeSink, Reason: processor.ReasonDecode, Error: entries[0].Error, FirstSeq: first, LastSeq: last, Entries: entries})
}

// charge takes r's memory from the shared budget before r joins chunk.
// Without budget it first delivers the chunk and gives back what the
// sinks made durable, then flushes every sink, and only then waits: a
// shard never waits while holding memory it could free. It returns
// false if the processor closed while waiting.
func (p *recordProcessor) charge(r processor.Record, chunk *[]processor.Record) bool {
	b := p.f.mem
	size := b.clamp(recordCost(r))
	if p.chunkSize+size > b.chunk() {
		// Sinks get the batch in slices of a bounded size, so that what
		// they build per call (request bodies, buffers) stays bounded too.
		p.deliverChunk(chunk)
	}
	ok := b.tryAcquire(size)
	if !ok && len(*chunk) > 0 {
		p.deliverChunk(chunk)
		ok = b.tryAcquire(size)
	}
	if !ok {
		if len(p.charges) > 0 {
			p.fanOut(nil, true)
			p.releaseDurable()
		}
		if b.acquire(p.ctx, size) != nil {
			return false
		}
	}
	p.charges = append(p.charges, charge{r.SequenceNumber, size})
	p.chunkSize += size
	return true
}

// deliverChunk fans the chunk out and gives back what the sinks made
// durable of it.
func (p *recordProcessor) deliverChunk(chunk *[]processor.Record) {
	if len(*chunk) == 0 {
		return
	}
	p.fanOut(*chunk, false)
	*chunk = nil
	p.chunkSize = 0
	p.releaseDurable()
}

// releaseDurable gives back the budget of records every sink has made
// durable: no sink holds them any more.
func (p *recordProcessor) releaseDurable() {
	low := p.lastSeq
	for _, ss := range p.sinks {
		low = processor.MinSeq(low, ss.done)
	}
	n := 0
	for n < len(p.charges) && processor.CompareSeq(p.charges[n].seq, low) <= 0 {
		n++
	}
	p.releaseUpTo(n)
}

// releaseUpTo gives back the budget of the first n charges.
func (p *recordProcessor) releaseUpTo(n int) {
	var size int64
	for _, c := range p.charges[:n] {
		size += c.size
	}
	p.charges = p.charges[n:]
	p.f.mem.release(size)
}

// fanOut hands recs to every sink concurrently and waits for all. With
// flush, every sink is then flushed.
func (p *recordProcessor) fanOut(recs []processor.Record, flush bool) {
	var wg sync.WaitGroup
	for _, ss := range p.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				// A sink that panics on some input is that sink's bug:
				// its records are parked as a permanent failure, the
				// other sinks and the shard go on.
				if v := recover(); v != nil {
					p.f.metrics.panics.Inc()
					p.log.Error("recovered panic in a sink; parking its records", zap.String("sink", ss.rt.name), zap.Any("panic", v), zap.Stack("stack"))
					p.parkSink(ss, recs, processor.ReasonPermanent, processor.Permanent(fmt.Errorf("%s: panic: %v", ss.rt.name, v)))
				}
			}()
			p.deliver(ss, recs, flush)
		}()
	}
	wg.Wait()
	// A sink with nothing outstanding is done with everything received,
	// including records skipped or parked before reaching it.
	for _, ss := range p.sinks {
		if len(ss.outstanding) == 0 {
			ss.done = processor.MaxSeq(ss.done, p.lastSeq)
		}
	}
}

// deliver gives one sink the records it has not made durable yet.
func (p *recordProcessor) deliver(ss *shardSink, recs []processor.Record, flush bool) {
	// Skip what this sink made durable under an earlier lease: a replay
	// from the checkpoint reaches only the sinks that had not finished.
	i := 0
	for i < len(recs) && processor.CompareSeq(recs[i].SequenceNumber, ss.done) <= 0 {
		i++
	}
	recs = p.route(ss, recs[i:])

	if len(ss.notes) > 0 {
		if err := p.recordNotes(ss); err != nil {
			// Nothing newer may reach the sink before the notes: it would
			// move the destination's progress past the parked ranges.
			if len(recs) > 0 || len(ss.outstanding) > 0 {
				p.parkSink(ss, recs, reasonOf(err), err)
			}
			return
		}
	}
	if ss.rt.breaker.open() && (len(recs) > 0 || len(ss.outstanding) > 0) {
		p.parkSink(ss, recs, processor.ReasonBreakerOpen, errBreakerOpen)
		return
	}
	if len(recs) == 0 {
		p.tick(ss)
	} else if err := p.call(ss, func(ctx context.Context, w processor.Writer) error { return w.Write(ctx, recs) }); err != nil {
		p.parkSink(ss, recs, reasonOf(err), err)
		return
	}
	ss.outstanding = append(ss.outstanding, recs...)
	if flush && len(ss.outstanding) > 0 {
		if err := p.call(ss, func(ctx context.Context, w processor.Writer) error { return w.Flush(ctx) }); err != nil {
			p.parkSink(ss, nil, reasonOf(err), err)
			return
		}
	}
	p.settle(ss)
}

// route keeps the events a sink is to get: for a sink that honours
// integrations objects, those that let it through; the envelopes of
// events the gateway refused only for a sink that files them. A record
// left with none is not given to the sink (its watermark passes it with
// the records around it). With nothing to leave out, recs is returned as
// it is.
func (p *recordProcessor) route(ss *shardSink, recs []processor.Record) []processor.Record {
	name, rejected := ss.rt.integration, ss.rt.rejected
	keep := func(e *event.Event) bool {
		if e.Rejected != "" {
			return rejected
		}
		return name == "" || e.Enabled(name)
	}
	var out []processor.Record
	skipped := 0
	for i, r := range recs {
		off := 0
		for _, e := range r.Events {
			if !keep(e) {
				off++
				if e.Rejected == "" {
					skipped++
				}
			}
		}
		if off == 0 {
			if out != nil {
				out = append(out, r)
			}
			continue
		}
		if out == nil {
			out = append(make([]processor.Record, 0, len(recs)), recs[:i]...)
		}
		if off == len(r.Events) {
			continue
		}
		kept := processor.Record{SequenceNumber: r.SequenceNumber, ArrivalTime: r.ArrivalTime,
			Events: make([]*event.Event, 0, len(r.Events)-off), Raw: make([][]byte, 0, len(r.Events)-off)}
		for j, e := range r.Events {
			if keep(e) {
				kept.Events = append(kept.Events, e)
				kept.Raw = append(kept.Raw, r.Raw[j])
			}
		}
		out = append(out, kept)
	}
	if out == nil {
		return recs
	}
	if skipped > 0 {
		p.f.metrics.routedAway.WithLabelValues(ss.rt.name).Add(float64(skipped))
	}
	return out
}

// recordNotes records the sink's pending park notes in order, through
// its breaker and retries, and drops each once recorded.
func (p *recordProcessor) recordNotes(ss *shardSink) error {
	for len(ss.notes) > 0 {
		if ss.rt.breaker.open() {
			return errBreakerOpen
		}
		note := ss.notes[0]
		if err := p.call(ss, func(ctx context.Context, _ processor.Writer) error { return note.Record(ctx) }); err != nil {
			return err
		}
		ss.notes[0] = nil
		ss.notes = ss.notes[1:]
	}
	ss.notes = nil
	return nil
}

// tick writes an empty batch: it lets a buffering sink flush by age while
// the stream is idle. It bypasses the breaker: a call that sends nothing
// would count as a success and close an open breaker without a real
// probe. A failed tick is left for the next real Write to surface.
func (p *recordProcessor) tick(ss *shardSink) {
	if ss.w == nil || ss.rt.breaker.open() {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.f.cfg.CallTimeout)
	defer cancel()
	if err := ss.w.Write(ctx, nil); err != nil && p.ctx.Err() == nil {
		p.log.Debug("sink tick failed", zap.String("sink", ss.rt.name), zap.Error(err))
	}
}

// call runs one writer operation through the sink's breaker, with the
// call timeout, retrying transient failures with capped exponential
// backoff (honouring Retry-After) within the retry budget. A
// *PartialError's failed events are parked and count as success.
func (p *recordProcessor) call(ss *shardSink, op func(context.Context, processor.Writer) error) error {
	budget := time.Now().Add(p.f.cfg.RetryBudget)
	for attempt := 0; ; attempt++ {
		if ss.w == nil {
			if err := p.open(ss); err != nil {
				return err
			}
		}
		err := ss.rt.breaker.do(func() error {
			ctx, cancel := context.WithTimeout(p.ctx, p.f.cfg.CallTimeout)
			defer cancel()
			start := time.Now()
			err := op(ctx, ss.w)
			p.f.metrics.callDuration.WithLabelValues(ss.rt.name).Observe(time.Since(start).Seconds())
			return err
		})
		var pe *processor.PartialError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pe):
			p.parkFailed(ss, pe)
			return nil
		case errors.Is(err, processor.ErrLeaseLost):
			// A writer saving its state found the lease gone.
			p.leaseLost.Store(true)
			return err
		case errors.Is(err, errBreakerOpen), processor.IsPermanent(err), p.ctx.Err() != nil:
			return err
		}
		p.f.metrics.sinkErrors.WithLabelValues(ss.rt.name).Inc()
		wait := p.backoff(attempt, processor.RetryAfterOf(err))
		if time.Now().Add(wait).After(budget) {
			return &exhaustedError{err}
		}
		p.log.Warn("sink call failed, retrying", zap.String("sink", ss.rt.name), zap.Int("attempt", attempt+1), zap.Duration("wait", wait), zap.Error(err))
		select {
		case <-time.After(wait):
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
}

type exhaustedError struct{ err error }

func (e *exhaustedError) Error() string { return "retries exhausted: " + e.err.Error() }
func (e *exhaustedError) Unwrap() error { return e.err }

// reasonOf names why a failed call's records are parked; anything not an
// open breaker or a permanent error outlasted the retries.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, errBreakerOpen):
		return processor.ReasonBreakerOpen
	case processor.IsPermanent(err):
		return processor.ReasonPermanent
	}
	return processor.ReasonRetriesExhausted
}

func (p *recordProcessor) open(ss *shardSink) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.f.cfg.CallTimeout)
	defer cancel()
	w, err := ss.rt.sink.Open(ctx, processor.Shard{
		Stream: p.f.cfg.Stream, ID: p.shard, Worker: p.f.cfg.WorkerID,
		State: ss.state, Saver: &sinkStateSaver{p: p, sink: ss.rt.name},
	})
	if err != nil {
		return err
	}
	ss.w = w
	return nil
}

// settle moves the sink's watermark past what its writer made durable.
func (p *recordProcessor) settle(ss *shardSink) {
	if ss.w == nil {
		return
	}
	d := ss.w.Durable()
	if d == "" {
		return
	}
	n, events := 0, 0
	for n < len(ss.outstanding) && processor.CompareSeq(ss.outstanding[n].SequenceNumber, d) <= 0 {
		events += len(ss.outstanding[n].Events)
		n++
	}
	// Zero the settled slots: the backing array outlives the reslice,
	// and would keep their events in memory past their budget.
	clear(ss.outstanding[:n])
	ss.outstanding = ss.outstanding[n:]
	ss.done = processor.MaxSeq(ss.done, d)
	p.f.metrics.delivered.WithLabelValues(ss.rt.name).Add(float64(events))
}

// parkSink parks recs and everything the sink had not made durable, then
// drops its writer: the sink starts afresh after the parked records, so
// nothing is both parked and delivered from the same buffer.
func (p *recordProcessor) parkSink(ss *shardSink, recs []processor.Record, reason string, cause error) {
	if p.ctx.Err() != nil || p.leaseLost.Load() {
		return // shutting down or lease lost: the next lease replays
	}
	all := append(append([]processor.Record(nil), ss.outstanding...), recs...)
	// What a failed Write delivered before it failed is not parked: a
	// destination that cannot deduplicate would get it twice.
	pw, _ := ss.w.(processor.PartialWriter)
	if len(all) > 0 {
		l := processor.Letter{Sink: ss.rt.name, Reason: reason, Error: cause.Error(), FirstSeq: all[0].SequenceNumber, LastSeq: all[len(all)-1].SequenceNumber}
		delivered := 0
		for _, r := range all {
			for i := range r.Events {
				if pw != nil && pw.Delivered(r.SequenceNumber, i) {
					delivered++
					continue
				}
				l.Entries = append(l.Entries, processor.LetterEntry{SequenceNumber: r.SequenceNumber, Event: r.Raw[i]})
			}
		}
		if delivered > 0 {
			p.f.metrics.delivered.WithLabelValues(ss.rt.name).Add(float64(delivered))
		}
		if len(l.Entries) == 0 {
			ss.done = processor.MaxSeq(ss.done, l.LastSeq)
			ss.outstanding = nil
			if ss.w != nil {
				_ = ss.w.Close()
				ss.w = nil
			}
			return
		}
		if !p.park(l) {
			return
		}
		p.parkedUnsaved = true
		if noter, ok := ss.rt.sink.(processor.ParkNoter); ok {
			if len(ss.notes) == 0 {
				ss.noteFloor = ss.done
			}
			ss.notes = append(ss.notes, noter.ParkNote(p.shard, processor.LetterID{Shard: p.shard, Reason: reason, FirstSeq: l.FirstSeq, LastSeq: l.LastSeq}, all))
		}
		p.f.metrics.parked.WithLabelValues(ss.rt.name, reason).Add(float64(len(l.Entries)))
		p.log.Warn("parked records", zap.String("sink", ss.rt.name), zap.String("reason", reason),
			zap.Int("events", len(l.Entries)), zap.String("first_seq", l.FirstSeq), zap.String("last_seq", l.LastSeq), zap.Error(cause))
		ss.done = processor.MaxSeq(ss.done, l.LastSeq)
	}
	ss.outstanding = nil
	if ss.w != nil {
		_ = ss.w.Close()
		ss.w = nil
	}
}

// parkFailed parks the events a sink can never take; the rest of their
// records was accepted.
func (p *recordProcessor) parkFailed(ss *shardSink, pe *processor.PartialError) {
	if len(pe.Failed) == 0 {
		return
	}
	l := processor.Letter{Sink: ss.rt.name, Reason: processor.ReasonPermanent, Error: pe.Failed[0].Err.Error()}
	for _, f := range pe.Failed {
		seq := f.Record.SequenceNumber
		if l.FirstSeq == "" || processor.CompareSeq(seq, l.FirstSeq) < 0 {
			l.FirstSeq = seq
		}
		l.LastSeq = processor.MaxSeq(l.LastSeq, seq)
		l.Entries = append(l.Entries, processor.LetterEntry{SequenceNumber: seq, Event: f.Record.Raw[f.Index], Error: f.Err.Error()})
	}
	if p.park(l) {
		p.f.metrics.parked.WithLabelValues(ss.rt.name, processor.ReasonPermanent).Add(float64(len(l.Entries)))
	}
}

// park stores a letter, retrying until it is stored or the processor is
// closed: parked data is the only copy once the checkpoint moves on, so
// the shard waits for the dead-letter store rather than lose it.
func (p *recordProcessor) park(l processor.Letter) bool {
	l.Stream, l.Shard, l.ParkedAt = p.f.cfg.Stream, p.shard, time.Now().UTC()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, p.f.cfg.CallTimeout)
		err := p.f.dlq.Park(ctx, l)
		cancel()
		if err == nil {
			return true
		}
		if p.ctx.Err() != nil {
			return false
		}
		if processor.IsPermanent(err) {
			// A letter the store can never take is a bug; retrying would
			// hang the shard. The records stay unacknowledged instead, so
			// the checkpoint does not pass them.
			p.log.Error("park records failed for good", zap.String("sink", l.Sink), zap.Error(err))
			return false
		}
		wait := p.backoff(attempt, 0)
		p.log.Error("park records failed, retrying", zap.String("sink", l.Sink), zap.Duration("wait", wait), zap.Error(err))
		select {
		case <-time.After(wait):
		case <-p.ctx.Done():
			return false
		}
	}
}

// checkpoint writes the shard's progress when it moved and the interval
// passed (always with force). It returns false if the lease is lost.
func (p *recordProcessor) checkpoint(force bool) bool {
	if p.isClosed() {
		return false
	}
	prog := processor.Progress{Sinks: make(map[string]processor.SinkProgress, len(p.sinks))}
	changed := false
	for i, ss := range p.sinks {
		wm := ss.saveable()
		if i == 0 {
			prog.Checkpoint = wm
		} else {
			prog.Checkpoint = processor.MinSeq(prog.Checkpoint, wm)
		}
		sp := processor.SinkProgress{Watermark: wm}
		if saver, ok := ss.w.(processor.StateSaver); ok {
			sp.State = saver.PendingState()
		}
		if old := p.saved.Sinks[ss.rt.name]; old.Watermark != sp.Watermark || sp.State != nil {
			changed = true
		}
		prog.Sinks[ss.rt.name] = sp
	}
	if len(p.sinks) == 0 {
		prog.Checkpoint = p.lastSeq
	}
	if seq, sub := processor.SplitSeq(prog.Checkpoint); sub >= 0 {
		// Inside an aggregate: the library resumes reading after a whole
		// record, the one before it, and each sink skips the user records
		// its own watermark covers.
		prog.Checkpoint = p.before[seq]
	}
	if processor.CompareSeq(prog.Checkpoint, p.saved.Checkpoint) <= 0 {
		prog.Checkpoint = "" // never move the checkpoint back
	} else {
		changed = true
	}
	if !changed || (!force && time.Since(p.lastSave) < p.f.cfg.CheckpointInterval) {
		return true
	}
	err := p.retry(func(ctx context.Context) error { return p.f.store.SaveProgress(ctx, p.shard, prog) })
	if errors.Is(err, processor.ErrLeaseLost) {
		p.log.Warn("lease lost; dropping sink state", zap.Error(err))
		p.close("lease lost")
		return false
	}
	if err != nil {
		p.log.Error("save progress", zap.Error(err))
		return !p.isClosed()
	}
	if prog.Checkpoint != "" {
		p.saved.Checkpoint = prog.Checkpoint
		for seq := range p.before {
			if processor.CompareSeq(seq, prog.Checkpoint) <= 0 {
				delete(p.before, seq)
			}
		}
		n := 0
		for n < len(p.unsaved) && processor.CompareSeq(p.unsaved[n].seq, prog.Checkpoint) <= 0 {
			n++
		}
		p.unsaved = p.unsaved[n:]
	}
	p.saved.Sinks = prog.Sinks
	p.lastSave = time.Now()
	p.parkedUnsaved = false
	p.f.metrics.checkpoints.Inc()
	return true
}

// retry runs a lease-table call a few times: these are cheap and their
// failures usually brief. ErrLeaseLost is final.
func (p *recordProcessor) retry(f func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, p.f.cfg.CallTimeout)
		err = f(ctx)
		cancel()
		if err == nil || errors.Is(err, processor.ErrLeaseLost) || p.ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(p.backoff(attempt, 0)):
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
	return err
}

// backoff returns the wait before retry attempt+1, never less than the
// server's Retry-After.
func (p *recordProcessor) backoff(attempt int, retryAfter time.Duration) time.Duration {
	return max(backoff.Policy{Min: p.f.cfg.MinBackoff, Max: p.f.cfg.MaxBackoff}.Delay(attempt), retryAfter)
}

// sinkStateSaver is the StateWriter a writer gets in its Shard.
type sinkStateSaver struct {
	p    *recordProcessor
	sink string
}

func (s *sinkStateSaver) SaveState(ctx context.Context, state []byte) error {
	if s.p.isClosed() {
		return processor.ErrLeaseLost
	}
	return s.p.f.store.SaveSinkState(ctx, s.p.shard, s.sink, state)
}
