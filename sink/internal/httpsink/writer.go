package httpsink

import (
	"context"

	"github.com/buildtelemetry/pipeline/processor"
)

// Writer is the bookkeeping of a writer that sends each Write at once, so
// has nothing to flush: its durable position, its closed state, and the
// progress P of its last Write, kept when that Write failed so that the
// processor's retry with the same records resumes it instead of
// resending what the destination accepted. Embedded in a sink's writer it
// provides Flush, Durable and Close. Like the writer, it is not safe for
// concurrent use.
type Writer[P any] struct {
	// ErrClosed is what Write and Flush return after Close.
	ErrClosed error

	durable string
	closed  bool
	resume  *P
	// first, last and events identify the records resume is about.
	first, last string
	events      int
}

// Resume returns the progress of the last Write if it failed and recs are
// the same records, which the processor's retries are (their first and
// last sequence numbers and event count identify them), and true; or a
// new progress and false. It returns ErrClosed after Close. recs must not
// be empty.
func (w *Writer[P]) Resume(recs []processor.Record) (*P, bool, error) {
	if w.closed {
		return nil, false, w.ErrClosed
	}
	n := 0
	for _, r := range recs {
		n += len(r.Events)
	}
	first, last := recs[0].SequenceNumber, recs[len(recs)-1].SequenceNumber
	if w.resume != nil && w.first == first && w.last == last && w.events == n {
		return w.resume, true, nil
	}
	w.resume, w.first, w.last, w.events = new(P), first, last, n
	return w.resume, false, nil
}

// Pending returns the progress of the last Write if it failed, else nil.
func (w *Writer[P]) Pending() *P { return w.resume }

// Settled records that every event of recs is settled (sent, or reported
// failed): they are durable, and there is nothing to resume.
func (w *Writer[P]) Settled(recs []processor.Record) {
	w.resume = nil
	w.durable = recs[len(recs)-1].SequenceNumber
}

// Flush does nothing but refuse after Close: Write sends synchronously.
func (w *Writer[P]) Flush(context.Context) error {
	if w.closed {
		return w.ErrClosed
	}
	return nil
}

// Durable returns the last sequence number of a Write that settled.
func (w *Writer[P]) Durable() string { return w.durable }

// Close drops the writer's state; there is no buffer to lose.
func (w *Writer[P]) Close() error {
	w.closed = true
	w.resume = nil
	return nil
}
