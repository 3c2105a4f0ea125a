package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/backoff"
)

// Errors returned by Producer.Write.
var (
	// ErrBufferFull: accepting the messages would take the bytes buffered
	// but not yet written above MaxBufferBytes. Nothing of that Write was
	// buffered; the gateway answers 429 with Retry-After.
	ErrBufferFull = errors.New("producer buffer full")
	// ErrUnavailable: Kinesis kept failing for RetryTimeout (or refused the
	// request as malformed), so some of the messages may not be in the
	// stream. The gateway answers 503.
	ErrUnavailable = errors.New("stream unavailable")
	// ErrThrottled: the stream's shards kept refusing the messages for
	// RetryTimeout because they were at their write limits, so some of
	// them may not be in the stream. The stream works, it is full: the
	// gateway answers 429 with Retry-After, as for ErrBufferFull.
	ErrThrottled = errors.New("stream at its write limits")
	// ErrClosed: Write was called after Close started, or Close gave up
	// before the messages were written. The gateway answers 503.
	ErrClosed = errors.New("producer closed")
	// ErrInvalidMessage: a message can never be written, because its ID is
	// not a valid partition key (1 to 256 characters of UTF-8) or its data
	// exceeds Kinesis' 1 MiB record limit. The gateway's own limits (99
	// character messageIds, 32 KB events) keep it from happening; it exists
	// so that one bad message cannot fail the shared PutRecords call of
	// everyone else's.
	ErrInvalidMessage = errors.New("invalid message")
)

// Defaults of ProducerConfig.
const (
	// DefaultLinger is how long a batch waits for more messages after its
	// first: long enough to pack concurrent requests together, short
	// against the Segment SDKs' 10 s timeout.
	DefaultLinger = time.Millisecond
	// DefaultMaxRecordBytes bounds a record's raw (uncompressed) payload.
	// Compressed, it is far below Kinesis' 1 MiB record limit.
	DefaultMaxRecordBytes = 256 << 10
	// DefaultMaxBufferBytes bounds the event bytes accepted but not yet
	// written.
	DefaultMaxBufferBytes = 64 << 20
	// DefaultMaxInFlight is the number of concurrent PutRecords calls.
	DefaultMaxInFlight = 4
	// DefaultRetryTimeout is how long failed entries are retried.
	DefaultRetryTimeout = 5 * time.Second
	// DefaultMinBackoff is the first retry's backoff.
	DefaultMinBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the retry backoff.
	DefaultMaxBackoff = time.Second
	// DefaultCallTimeout bounds one PutRecords call, so that a hung
	// connection cannot hold a flush slot for ever.
	DefaultCallTimeout = 10 * time.Second
)

// Kinesis limits (PutRecords API reference).
const (
	kinesisMaxCallRecords = 500
	kinesisMaxCallBytes   = 5 << 20 // data and partition keys of one call
	kinesisMaxRecordBytes = 1 << 20 // data and partition key of one record
	kinesisMaxKeyChars    = 256
)

// PutRecordsAPI is the one Kinesis call the producer makes. The SDK's
// *kinesis.Client implements it.
type PutRecordsAPI interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// PutRecordsFunc adapts a function to PutRecordsAPI.
type PutRecordsFunc func(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)

// PutRecords calls f.
func (f PutRecordsFunc) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	return f(ctx, in, optFns...)
}

var _ PutRecordsAPI = (*kinesis.Client)(nil)

// Message is one normalised event to write: its JSON and its messageId.
type Message struct {
	// ID is the event's messageId; the record holding it first uses it as
	// partition key.
	ID string
	// Data is the event's JSON. The producer does not modify it, and reads
	// it until Write returns.
	Data []byte
}

// ProducerConfig configures a Producer. Zero values mean the documented
// defaults.
type ProducerConfig struct {
	// StreamName is the Kinesis stream written to. Required.
	StreamName string
	// Linger is how long a batch waits for more messages after its first
	// before it is flushed (DefaultLinger). A batch that fills a whole
	// PutRecords call is flushed at once.
	Linger time.Duration
	// MaxRecordBytes bounds the raw (uncompressed) payload of one Kinesis
	// record, as event.RecordSize counts it (DefaultMaxRecordBytes). A
	// single larger event gets a record of its own.
	MaxRecordBytes int
	// MaxBufferBytes bounds the event bytes accepted by Write and not yet
	// written or given up (DefaultMaxBufferBytes). A Write that would go
	// above it fails with ErrBufferFull.
	MaxBufferBytes int64
	// MaxInFlight bounds the concurrent PutRecords calls
	// (DefaultMaxInFlight). While all are busy, messages accumulate into
	// larger batches.
	MaxInFlight int
	// RetryTimeout is how long after a call's first attempt its failed
	// entries are retried before their writers get ErrUnavailable
	// (DefaultRetryTimeout).
	RetryTimeout time.Duration
	// MinBackoff and MaxBackoff bound the capped exponential backoff, with
	// jitter, between retries (DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds one PutRecords call (DefaultCallTimeout).
	CallTimeout time.Duration
	// Registerer, when not nil, registers the gateway_producer_ metrics.
	Registerer prometheus.Registerer
}

func (c *ProducerConfig) setDefaults() {
	c.Linger = cmp.Or(c.Linger, DefaultLinger)
	c.MaxRecordBytes = cmp.Or(c.MaxRecordBytes, DefaultMaxRecordBytes)
	c.MaxBufferBytes = cmp.Or(c.MaxBufferBytes, DefaultMaxBufferBytes)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.RetryTimeout = cmp.Or(c.RetryTimeout, DefaultRetryTimeout)
	c.MinBackoff = cmp.Or(c.MinBackoff, DefaultMinBackoff)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, DefaultMaxBackoff)
	c.CallTimeout = cmp.Or(c.CallTimeout, DefaultCallTimeout)
}

func (c *ProducerConfig) validate() error {
	switch {
	case c.StreamName == "":
		return errors.New("a stream name is required (StreamName)")
	case c.Linger < 0:
		return fmt.Errorf("linger %v is negative (Linger)", c.Linger)
	case c.MaxRecordBytes < 0 || recordBound(c.MaxRecordBytes, kinesisMaxKeyChars*utf8.UTFMax) > kinesisMaxRecordBytes:
		return fmt.Errorf("MaxRecordBytes %d is outside 1..%d", c.MaxRecordBytes, maxMaxRecordBytes())
	case c.MaxBufferBytes < 0:
		return fmt.Errorf("MaxBufferBytes %d is negative", c.MaxBufferBytes)
	case c.MaxInFlight < 0:
		return fmt.Errorf("MaxInFlight %d is negative", c.MaxInFlight)
	case c.RetryTimeout < 0:
		return fmt.Errorf("RetryTimeout %v is negative", c.RetryTimeout)
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("MinBackoff %v and MaxBackoff %v: want 0 <= MinBackoff <= MaxBackoff", c.MinBackoff, c.MaxBackoff)
	case c.CallTimeout < 0:
		return fmt.Errorf("CallTimeout %v is negative", c.CallTimeout)
	}
	return nil
}

// maxMaxRecordBytes is the largest MaxRecordBytes whose records always fit
// Kinesis' record limit, with the longest partition key.
func maxMaxRecordBytes() int {
	n := kinesisMaxRecordBytes
	for recordBound(n, kinesisMaxKeyChars*utf8.UTFMax) > kinesisMaxRecordBytes {
		n -= 64
	}
	return n
}

// recordBound is an upper bound of a record's size in a PutRecords call:
// its compressed data plus its partition key. raw is event.RecordSize of
// its events. zstd never grows incompressible input by more than a few
// bytes per 128 KiB block plus the frame header; raw/256+64 covers that
// with room to spare. Calls are packed with this bound rather than the
// actual compressed size so that they are cut before encoding, which then
// runs in parallel in the flushes, and can never exceed the call limit.
func recordBound(raw, keyLen int) int {
	return raw + raw>>8 + 64 + keyLen
}

// ProducerStats counts what a Producer has written to Kinesis.
type ProducerStats struct {
	// Calls is the number of PutRecords calls made, retries included.
	Calls int64
	// Records and Events count the records, and the events in them, that
	// Kinesis accepted.
	Records, Events int64
	// Bytes counts the data and partition key bytes of accepted records:
	// what Kinesis bills and throttles.
	Bytes int64
	// RetriedEntries counts entries sent again after a failure.
	RetriedEntries int64
	// GaveUp counts records given up after RetryTimeout.
	GaveUp int64
}

// Producer writes messages to a Kinesis stream by group commit: the
// messages of concurrent Write calls are packed into compressed records
// (event.RecordEncoder), sent together with PutRecords, and each Write
// returns once all the records holding its messages are in the stream.
// Failed entries, and only those, are retried.
//
// A Producer is safe for concurrent use. Close must be called to stop its
// goroutines.
type Producer struct {
	api     PutRecordsAPI
	enc     *event.RecordEncoder
	cfg     ProducerConfig
	log     *zap.Logger
	metrics *producerMetrics

	// ctx is the producer's own: PutRecords calls run on it, never on a
	// writer's, so that one client going away cannot abort a batch shared
	// with others. Close cancels it only when its own ctx ends first.
	ctx    context.Context
	cancel context.CancelFunc

	kick  chan struct{} // wakes the dispatcher; capacity 1
	slots chan struct{} // one token per flush in flight
	wg    sync.WaitGroup

	// buffered is written under mu when growing (so that the check against
	// MaxBufferBytes and the add are one step) and atomically when
	// shrinking, which only makes room.
	buffered atomic.Int64

	mu      sync.Mutex
	batches []*batch // waiting to be flushed; only the last one is open
	closing bool

	closeOnce sync.Once
	done      chan struct{} // closed once every goroutine has returned

	retryLog rateLimitedLog
	drain    drainMeter
	stats    struct {
		calls, records, events, bytes, retried, gaveUp atomic.Int64
	}
}

// writeReq tracks one Write: it completes when all its messages have.
type writeReq struct {
	remaining atomic.Int64
	once      sync.Once
	err       error // written once, before done is closed
	done      chan struct{}
}

func (w *writeReq) finish(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.done)
	})
}

// complete marks n of the Write's messages as written (err == nil) or
// given up. The first failure completes the Write at once: its caller
// answers with an error whatever happens to its other messages.
func (w *writeReq) complete(n int, err error) {
	if err != nil {
		w.finish(err)
	}
	if w.remaining.Add(-int64(n)) == 0 {
		w.finish(nil)
	}
}

// record is one Kinesis record being built or written.
type record struct {
	key    string // partition key: the ID of the first message
	events [][]byte
	owners []*writeReq // owners[i] wrote events[i]
	data   int         // sum of len(events[i])
	bound  int         // recordBound of the record as it is
}

// batch is the content of one PutRecords call.
type batch struct {
	records []*record
	bound   int // sum of the records' bounds
	events  int
	first   time.Time // when the first message arrived
	full    bool      // no more messages fit; later ones start a new batch
}

// NewProducer returns a producer writing to cfg.StreamName through api.
func NewProducer(api PutRecordsAPI, enc *event.RecordEncoder, cfg ProducerConfig, log *zap.Logger) (*Producer, error) {
	if api == nil || enc == nil {
		return nil, errors.New("create producer: api and encoder are required")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Producer{
		api:   api,
		enc:   enc,
		cfg:   cfg,
		log:   log.With(zap.String("stream", cfg.StreamName)),
		kick:  make(chan struct{}, 1),
		slots: make(chan struct{}, cfg.MaxInFlight),
		done:  make(chan struct{}),
	}
	m, err := newProducerMetrics(cfg.Registerer, func() float64 { return float64(p.buffered.Load()) })
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	p.metrics = m
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.dispatch()
	return p, nil
}

// Write writes msgs to the stream and blocks until every one of them is in
// it, that is until all the PutRecords entries holding them succeeded. It
// returns ErrBufferFull at once, without buffering any of msgs, when they
// do not fit the buffer; ErrUnavailable when Kinesis kept failing;
// ErrClosed after Close; ErrInvalidMessage for a message that can never be
// written.
//
// When ctx ends first, Write returns ctx.Err(), wrapped in ErrThrottled
// when the shards refused writes within RetryTimeout, or in ErrBufferFull
// when no call failed then (the producer is only slow); the messages stay
// buffered and may still be written: delivery is at least once, and the
// caller must just not acknowledge them.
func (p *Producer) Write(ctx context.Context, msgs []Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	var size int64
	for i, m := range msgs {
		if err := checkMessage(m); err != nil {
			return fmt.Errorf("write message %d: %w", i, err)
		}
		size += int64(len(m.Data))
	}
	w := &writeReq{done: make(chan struct{})}
	w.remaining.Store(int64(len(msgs)))

	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	now := time.Now()
	if p.buffered.Load()+size > p.drain.limit(now, p.cfg.RetryTimeout/2, p.cfg.MaxBufferBytes) || p.behindLocked(now) {
		p.mu.Unlock()
		p.metrics.bufferFull.Inc()
		return ErrBufferFull
	}
	p.buffered.Add(size)
	for _, m := range msgs {
		p.appendLocked(m, w, now)
	}
	p.mu.Unlock()
	p.wake()

	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		// Why the wait ran out decides the answer. Kinesis failing
		// calls or entries is an outage (503). Otherwise the pipeline is
		// at capacity, not down: the shards refusing writes
		// (ErrThrottled), or calls slower than the load needs, Kinesis
		// slow or the gateway short of CPU (ErrBufferFull); both are 429,
		// so clients back off instead of treating it as an outage.
		now := time.Now()
		switch {
		case p.drain.failedSince(now, p.cfg.RetryTimeout):
			return ctx.Err()
		case p.drain.throttledSince(now, p.cfg.RetryTimeout):
			return fmt.Errorf("%w: %w", ErrThrottled, ctx.Err())
		default:
			return fmt.Errorf("%w: %w", ErrBufferFull, ctx.Err())
		}
	}
}

// behindLocked reports whether the oldest batch not yet handed to a
// PutRecords call has waited longer than half the retry timeout (at least
// a second): the producer is not keeping up, because Kinesis is slow or
// the gateway short of CPU, and what it admits now would wait past the
// client's timeout. Refusing it (429) lets clients back off while the
// queue drains. p.mu is held.
func (p *Producer) behindLocked(now time.Time) bool {
	return len(p.batches) > 0 && now.Sub(p.batches[0].first) > max(p.cfg.RetryTimeout/2, time.Second)
}

func checkMessage(m Message) error {
	if m.ID == "" || !utf8.ValidString(m.ID) || utf8.RuneCountInString(m.ID) > kinesisMaxKeyChars {
		return fmt.Errorf("%w: ID %.40q is not a partition key of 1 to %d characters", ErrInvalidMessage, m.ID, kinesisMaxKeyChars)
	}
	if recordBound(event.RecordSize(1, len(m.Data)), len(m.ID)) > kinesisMaxRecordBytes {
		return fmt.Errorf("%w: %d bytes of data exceed the Kinesis record limit", ErrInvalidMessage, len(m.Data))
	}
	return nil
}

// appendLocked packs m into the open batch: into its last record while
// that stays within MaxRecordBytes, else into a new record while the batch
// stays within one PutRecords call, else into a new batch. p.mu is held.
func (p *Producer) appendLocked(m Message, w *writeReq, now time.Time) {
	if n := len(p.batches); n > 0 && !p.batches[n-1].full {
		b := p.batches[n-1]
		r := b.records[len(b.records)-1]
		raw := event.RecordSize(len(r.events)+1, r.data+len(m.Data))
		if raw <= p.cfg.MaxRecordBytes {
			grown := recordBound(raw, len(r.key))
			if b.bound-r.bound+grown <= kinesisMaxCallBytes {
				r.events = append(r.events, m.Data)
				r.owners = append(r.owners, w)
				r.data += len(m.Data)
				b.bound += grown - r.bound
				r.bound = grown
				b.events++
				return
			}
		} else if nr := newRecord(m, w); len(b.records) < kinesisMaxCallRecords && b.bound+nr.bound <= kinesisMaxCallBytes {
			b.records = append(b.records, nr)
			b.bound += nr.bound
			b.events++
			return
		}
		b.full = true
	}
	r := newRecord(m, w)
	p.batches = append(p.batches, &batch{records: []*record{r}, bound: r.bound, events: 1, first: now})
}

func newRecord(m Message, w *writeReq) *record {
	return &record{
		key:    m.ID,
		events: [][]byte{m.Data},
		owners: []*writeReq{w},
		data:   len(m.Data),
		bound:  recordBound(event.RecordSize(1, len(m.Data)), len(m.ID)),
	}
}

func (p *Producer) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Close stops accepting messages (Write returns ErrClosed), flushes
// everything already accepted, retrying as usual, and waits for all
// flushes to finish. If ctx ends first, Close aborts the flushes, fails
// their writers with ErrClosed, waits for the goroutines to return and
// returns ctx.Err(). Close may be called more than once.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.wake()
	p.closeOnce.Do(func() {
		go func() {
			p.wg.Wait()
			p.cancel()
			close(p.done)
		}()
	})
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.cancel()
		<-p.done // prompt: every wait in the producer also watches p.ctx
		return ctx.Err()
	}
}

// Stats returns what the producer has written so far.
func (p *Producer) Stats() ProducerStats {
	return ProducerStats{
		Calls:          p.stats.calls.Load(),
		Records:        p.stats.records.Load(),
		Events:         p.stats.events.Load(),
		Bytes:          p.stats.bytes.Load(),
		RetriedEntries: p.stats.retried.Load(),
		GaveUp:         p.stats.gaveUp.Load(),
	}
}

// dispatch hands batches to flushes: the first batch once it is full, its
// Linger has passed or Close started, and a flush slot is free. While it
// waits for a slot the open batch keeps growing, so that batches grow with
// the load.
func (p *Producer) dispatch() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		p.mu.Lock()
		ready, wait := false, time.Duration(-1)
		if len(p.batches) > 0 {
			head := p.batches[0]
			left := p.cfg.Linger - time.Since(head.first)
			if head.full || p.closing || left <= 0 {
				ready = true
			} else {
				wait = left
			}
		} else if p.closing {
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()

		if !ready {
			if wait >= 0 {
				timer.Reset(wait)
			}
			select {
			case <-p.kick:
			case <-timer.C:
			case <-p.ctx.Done():
				p.abortQueued()
				return
			}
			timer.Stop()
			continue
		}

		select {
		case p.slots <- struct{}{}:
		case <-p.ctx.Done():
			p.abortQueued()
			return
		}
		p.mu.Lock()
		b := p.batches[0]
		p.batches[0] = nil
		p.batches = p.batches[1:]
		b.full = true // it may be the open batch; later messages start another
		p.mu.Unlock()

		p.wg.Add(1)
		go p.flush(b)
	}
}

// abortQueued fails the writers of batches never flushed, after Close gave
// up waiting.
func (p *Producer) abortQueued() {
	p.mu.Lock()
	queued := p.batches
	p.batches = nil
	p.mu.Unlock()
	for _, b := range queued {
		p.abort(b.records)
	}
}

// flush writes one batch with PutRecords, retrying failed entries until
// RetryTimeout. It holds its slot through the backoffs as well: when
// Kinesis throttles, fewer and larger calls are what it needs, and the
// buffer filling up turns into 429s for the clients.
func (p *Producer) flush(b *batch) {
	defer p.wg.Done()
	defer func() { <-p.slots }()
	start := time.Now()
	p.metrics.flushEvents.Observe(float64(b.events))
	defer func() { p.metrics.flushSeconds.Observe(time.Since(start).Seconds()) }()

	entries := make([]types.PutRecordsRequestEntry, len(b.records))
	for i, r := range b.records {
		entries[i] = types.PutRecordsRequestEntry{
			Data:         p.enc.Encode(nil, r.events),
			PartitionKey: aws.String(r.key),
		}
	}
	pending := b.records
	first := time.Now() // RetryTimeout runs from the first attempt
	for attempt := 0; ; attempt++ {
		failed, failedEntries, err := p.put(pending, entries)
		if len(failed) == 0 {
			return
		}
		if p.abort(failed) {
			return
		}
		elapsed := time.Since(first)
		if errors.Is(err, errPermanent) || elapsed >= p.cfg.RetryTimeout {
			p.giveUp(failed, err, attempt+1, elapsed)
			return
		}
		p.retryLog.warn(p.log, len(failed), err, attempt+1)
		t := time.NewTimer(min(p.backoff(attempt), p.cfg.RetryTimeout-elapsed))
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
		}
		if p.abort(failed) {
			return
		}
		p.stats.retried.Add(int64(len(failed)))
		p.metrics.retried.Add(float64(len(failed)))
		pending, entries = failed, failedEntries
	}
}

// abort fails the writers of records with ErrClosed if Close gave up
// waiting, and reports whether it did.
func (p *Producer) abort(records []*record) bool {
	if p.ctx.Err() == nil {
		return false
	}
	for _, r := range records {
		p.finishRecord(r, ErrClosed)
	}
	return true
}

// errPermanent marks a call error that no retry can fix.
var errPermanent = errors.New("permanent error")

// errShardLimit marks entries a shard refused at its write limits.
var errShardLimit = errors.New("shard write limit")

// put makes one PutRecords call of entries (entries[i] holds records[i]),
// completes the records that succeeded and returns those that failed, their
// entries, and why they failed.
func (p *Producer) put(records []*record, entries []types.PutRecordsRequestEntry) ([]*record, []types.PutRecordsRequestEntry, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.CallTimeout)
	out, err := p.api.PutRecords(ctx, &kinesis.PutRecordsInput{
		StreamName: aws.String(p.cfg.StreamName),
		Records:    entries,
	})
	cancel()
	p.stats.calls.Add(1)
	if err == nil && (out == nil || len(out.Records) != len(entries)) {
		n := -1
		if out != nil {
			n = len(out.Records)
		}
		err = fmt.Errorf("put records: %d results for %d entries", n, len(entries))
	}
	if err != nil {
		p.metrics.calls.WithLabelValues("error").Inc()
		p.drain.fail(time.Now())
		var ae smithy.APIError
		if errors.As(err, &ae) {
			switch ae.ErrorCode() {
			case "ValidationException", "InvalidArgumentException", "AccessDeniedException":
				err = fmt.Errorf("%w: %w", errPermanent, err)
			}
		}
		return records, entries, fmt.Errorf("put records: %w", err)
	}

	// Count first, finish after: a writer who got its answer sees the
	// counters that include its messages.
	var failed []*record
	var failedEntries []types.PutRecordsRequestEntry
	var firstErr error
	var okRecords, okEvents, okBytes, okData int64
	throttled, entryFailed := false, false
	for i, res := range out.Records {
		if code := aws.ToString(res.ErrorCode); code != "" {
			throttled = throttled || code == "ProvisionedThroughputExceededException"
			entryFailed = entryFailed || code != "ProvisionedThroughputExceededException"
			failed = append(failed, records[i])
			failedEntries = append(failedEntries, entries[i])
			if firstErr == nil {
				firstErr = fmt.Errorf("put record: %s: %s", code, aws.ToString(res.ErrorMessage))
				if code == "ProvisionedThroughputExceededException" {
					firstErr = fmt.Errorf("%w: %w", errShardLimit, firstErr)
				}
			}
			continue
		}
		okRecords++
		okEvents += int64(len(records[i].events))
		okBytes += int64(len(entries[i].Data) + len(records[i].key))
		okData += int64(records[i].data)
	}
	now := time.Now()
	p.drain.wrote(now, okData)
	if throttled {
		p.drain.throttle(now)
		p.metrics.throttled.Inc()
	}
	if entryFailed {
		p.drain.fail(now)
	}
	p.stats.records.Add(okRecords)
	p.stats.events.Add(okEvents)
	p.stats.bytes.Add(okBytes)
	p.metrics.records.Add(float64(okRecords))
	p.metrics.events.Add(float64(okEvents))
	p.metrics.bytes.Add(float64(okBytes))
	if len(failed) == 0 {
		p.metrics.calls.WithLabelValues("ok").Inc()
	} else {
		p.metrics.calls.WithLabelValues("partial").Inc()
	}
	for i, res := range out.Records {
		if aws.ToString(res.ErrorCode) == "" {
			p.finishRecord(records[i], nil)
		}
	}
	return failed, failedEntries, firstErr
}

// finishRecord releases r's buffer bytes and completes its messages. The
// counters are updated first, so that a writer who got its answer sees
// them.
func (p *Producer) finishRecord(r *record, err error) {
	p.buffered.Add(-int64(r.data))
	for i := 0; i < len(r.owners); {
		w, j := r.owners[i], i+1
		for j < len(r.owners) && r.owners[j] == w {
			j++
		}
		w.complete(j-i, err)
		i = j
	}
	r.events, r.owners = nil, nil
}

func (p *Producer) giveUp(failed []*record, err error, attempts int, elapsed time.Duration) {
	p.stats.gaveUp.Add(int64(len(failed)))
	p.metrics.gaveUp.Add(float64(len(failed)))
	events := 0
	why := ErrUnavailable
	if errors.Is(err, errShardLimit) {
		why = ErrThrottled
	}
	for _, r := range failed {
		events += len(r.events)
		p.finishRecord(r, why)
	}
	p.log.Error("give up writing records",
		zap.Int("records", len(failed)), zap.Int("events", events),
		zap.Int("attempts", attempts), zap.Duration("elapsed", elapsed), zap.Error(err))
}

// backoff returns the wait before retry attempt+1, so that the flushes
// failing together do not retry together.
func (p *Producer) backoff(attempt int) time.Duration {
	return backoff.Policy{Min: p.cfg.MinBackoff, Max: p.cfg.MaxBackoff}.Delay(attempt)
}

// rateLimitedLog logs retries at most once a second, with the count of
// the ones it left out: a throttled stream fails thousands of entries a
// second, and one line each would drown the logs.
type rateLimitedLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *rateLimitedLog) warn(log *zap.Logger, entries int, err error, attempt int) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.suppressed += entries
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	log.Warn("retry failed records",
		zap.Int("entries", entries), zap.Int("attempt", attempt),
		zap.Int("entries_retried_unlogged", suppressed), zap.Error(err))
}

// producerMetrics are the producer's metrics, prefixed gateway_producer_.
type producerMetrics struct {
	events, records, bytes    prometheus.Counter
	calls                     *prometheus.CounterVec
	retried, bufferFull       prometheus.Counter
	gaveUp, throttled         prometheus.Counter
	flushEvents, flushSeconds prometheus.Histogram
	buffered                  prometheus.GaugeFunc
}

// newProducerMetrics builds the metrics; buffered reads the buffered bytes
// when scraped, so the gauge is never behind the counter it reports.
func newProducerMetrics(reg prometheus.Registerer, buffered func() float64) (*producerMetrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "gateway_producer_" + name, Help: help})
	}
	m := &producerMetrics{
		events:  counter("events_written_total", "Events written to Kinesis."),
		records: counter("records_written_total", "Kinesis records written."),
		bytes:   counter("bytes_written_total", "Data and partition key bytes of the Kinesis records written."),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_producer_put_records_calls_total", Help: "PutRecords calls by outcome: ok, partial (some entries failed) or error.",
		}, []string{"outcome"}),
		retried:    counter("entries_retried_total", "PutRecords entries sent again after a failure."),
		bufferFull: counter("buffer_full_total", "Writes refused because the buffer was full."),
		gaveUp:     counter("give_ups_total", "Records given up after the retry timeout."),
		throttled: counter("throttled_calls_total",
			"PutRecords calls with entries refused by the shards' write limits; while these happen, admission follows the rate the stream takes."),
		flushEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_producer_flush_events", Help: "Events per flush (one PutRecords call and its retries).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_producer_flush_duration_seconds", Help: "Time to write a flush, encoding and retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gateway_producer_buffered_bytes", Help: "Event bytes accepted and not yet written or given up.",
		}, buffered),
	}
	for _, o := range []string{"ok", "partial", "error"} {
		m.calls.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.events, m.records, m.bytes, m.calls, m.retried, m.bufferFull, m.gaveUp, m.throttled, m.flushEvents, m.flushSeconds, m.buffered} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}
