// Package processor is the worker's vocabulary: the Sink and Writer
// interfaces every destination implements, their error classes, the
// sequence-number helpers, per-sink progress (watermarks), and the
// dead-letter store's interface and reasons. It imports no sink, no KCL and
// no AWS package, so a sink links neither; the engine that runs sinks
// under the KCL is processor/kclproc, and cmd/worker wires concrete types.
package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/buildtelemetry/pipeline/event"
)

// Record is one Kinesis record, or one user record of a KPL aggregate,
// and the events decoded from it. All events of a record share its
// position: progress is tracked per record.
type Record struct {
	// SequenceNumber is the record's position: the Kinesis sequence
	// number, a decimal string of up to 129 digits, or for a user record
	// of an aggregate UserSeq(sequence number, sub-sequence number).
	// Compare with CompareSeq, never as strings.
	SequenceNumber string
	// ArrivalTime is Kinesis' approximate arrival time of the record.
	ArrivalTime time.Time
	// Events are the record's events, in record order.
	Events []*event.Event
	// Raw holds each event's JSON exactly as read from the stream, index
	// aligned with Events: what sinks that store events verbatim write.
	Raw [][]byte
}

// Shard identifies the shard a Writer serves.
type Shard struct {
	// Stream and ID name the shard.
	Stream, ID string
	// Worker is the ID of the worker holding the lease.
	Worker string
	// State is what the sink saved for this shard with SaveState on an
	// earlier lease (nil if none): for example the S3 sink's pending
	// object range, which it must rebuild identically before going on.
	State []byte
	// Saver persists new state for this shard and sink, fenced by the
	// lease. Writers that keep no state ignore it.
	Saver StateWriter
	// Letter is set when the writer re-drives one dead letter rather than
	// a live shard: ID is then a replay shard of its own, and Letter names
	// the live shard and the range. Sinks that keep their own progress
	// (see ParkNoter) use it to count the letter once; others ignore it.
	Letter *LetterID
}

// Sink is one destination. A Sink serves every shard of the worker; state
// that belongs to a shard lives in the Writer it opens. Implementations
// must be safe for concurrent use by several shards.
type Sink interface {
	// Name is a short stable identifier ("s3", "segment"): the key of the
	// sink's watermark in the lease row and of its dead letters. Never
	// rename a sink in production: its progress would start over.
	Name() string
	// Open starts delivery for one shard under a new lease.
	Open(ctx context.Context, shard Shard) (Writer, error)
}

// Writer delivers one shard's records to a sink. The processor calls it
// from one goroutine at a time, in sequence order, and never after Close.
type Writer interface {
	// Write delivers or buffers records. A nil error means the records
	// were accepted: delivered, or buffered to be delivered by a later
	// Write or Flush. A *PartialError reports events that can never be
	// delivered; the processor parks them and treats the rest as accepted.
	// Any other error means none of recs was accepted; the processor
	// retries transient ones with the same records.
	Write(ctx context.Context, recs []Record) error
	// Flush delivers everything accepted so far.
	Flush(ctx context.Context) error
	// Durable returns the sequence number up to which every record
	// written is delivered (or reported failed), or "" if none yet.
	Durable() string
	// Close releases the writer's resources without delivering what is
	// buffered: the lease is lost, or the processor parked the buffer.
	Close() error
}

// Routed is implemented by a Sink that honours the integrations object of
// an event, Segment's per-destination switches: the processor gives it
// only the events that event.Event.Enabled lets through for
// IntegrationName. A sink that does not implement it gets every event.
type Routed interface {
	// IntegrationName is the sink's key in an integrations object (a
	// Segment catalogue name where one exists: "Google Analytics 4").
	IntegrationName() string
}

// RejectedTaker is implemented by a Sink that files the envelopes of
// events the gateway refused (event.Event.Rejected != ""): the S3 sink's
// error output. No other sink ever gets them.
type RejectedTaker interface {
	TakesRejected() bool
}

// PartialWriter is implemented by a Writer whose destination cannot
// deduplicate (GA4 counts a resent event twice) and whose Write can fail
// part way. After such a Write, Delivered reports which of its events
// reached the destination, so that the processor parks, and a re-drive
// keeps, only the others.
type PartialWriter interface {
	// Delivered reports whether event index of the record seq, given to
	// the last Write that failed, was delivered by it.
	Delivered(seq string, index int) bool
}

// StateSaver is implemented by a Writer that keeps state in the lease
// row between leases. PendingState is called before each checkpoint; the
// processor persists the returned bytes, fenced by the lease, and hands
// them back in Shard.State on the next Open.
type StateSaver interface {
	PendingState() []byte
}

// StateWriter persists a writer's state in the lease row now, before the
// writer acts on it: the S3 sink records an object's sequence range before
// uploading it (KCL's prepareCheckpoint idea), so that a replay after a
// crash rebuilds the same object. It fails with ErrLeaseLost once this
// worker no longer holds the lease.
type StateWriter interface {
	SaveState(ctx context.Context, state []byte) error
}

// Errors shared by the worker's packages.
var (
	// ErrLeaseLost is returned by the checkpoint and progress stores when
	// the lease is no longer held by this worker: the processor drops its
	// state and delivers nothing more for the shard.
	ErrLeaseLost = errors.New("lease lost")
)

// FailedEvent is one event a sink can never deliver.
type FailedEvent struct {
	Record *Record
	Index  int // into Record.Events
	Err    error
}

// PartialError is returned by Writer.Write when some events can never be
// delivered (oversized, rejected by the destination with a 4xx). The
// rest of the records were accepted.
type PartialError struct {
	Failed []FailedEvent
}

func (e *PartialError) Error() string {
	if len(e.Failed) == 0 {
		return "no failed events"
	}
	return fmt.Sprintf("%d events failed, first: %v", len(e.Failed), e.Failed[0].Err)
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the whole call can never succeed (a
// 400 for the batch, bad credentials). The processor parks the records at
// once, and the breaker does not count it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError carries a server's Retry-After.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks a transient err with the delay the destination asked
// for (HTTP 429/503 Retry-After); the processor waits at least that long
// before retrying.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err, d}
}

// RetryAfterOf returns the delay carried by err, or 0.
func RetryAfterOf(err error) time.Duration {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after
	}
	return 0
}

// EventAt returns the record and event index of the pos-th event of recs,
// counting events across records in order, or -1, -1 past the end. Sinks
// that send events in flat batches use it to map a failed position back
// to its record for a FailedEvent.
func EventAt(recs []Record, pos int) (rec, index int) {
	for ri, r := range recs {
		if pos < len(r.Events) {
			return ri, pos
		}
		pos -= len(r.Events)
	}
	return -1, -1
}
