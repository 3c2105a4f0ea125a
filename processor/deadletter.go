package processor

import (
	"context"
	"time"
)

// Reasons a letter is parked.
const (
	// ReasonDecode: the record's data is not a record we can read.
	ReasonDecode = "decode"
	// ReasonPermanent: the sink rejected the events for good (4xx,
	// oversized).
	ReasonPermanent = "permanent"
	// ReasonBreakerOpen: the sink's breaker was open, or opened while the
	// records were being retried.
	ReasonBreakerOpen = "breaker-open"
	// ReasonRetriesExhausted: transient failures outlasted the retry budget.
	ReasonRetriesExhausted = "retries-exhausted"
)

// DecodeSink is the sink name under which undecodable records are parked:
// they belong to no sink, and replaying them needs a fixed decoder.
const DecodeSink = "_decode"

// Letter is a set of parked events (or undecodable records) of one shard,
// for one sink, for one reason.
type Letter struct {
	Sink   string
	Reason string
	// Error is the last error's text, kept for the operator.
	Error string
	// Stream, Shard, FirstSeq and LastSeq name where the records came
	// from; with Sink and Reason they make the letter's identity, so that
	// parking the same records again (after a crash) overwrites instead of
	// duplicating.
	Stream, Shard     string
	FirstSeq, LastSeq string
	ParkedAt          time.Time
	// Entries are the parked items.
	Entries []LetterEntry
}

// LetterEntry is one parked item: an event's JSON, or an undecodable
// record's raw data.
type LetterEntry struct {
	SequenceNumber string
	// Event is the event JSON (nil for an undecodable record).
	Event []byte
	// Data is an undecodable record's bytes (nil for an event).
	Data []byte
	// Error is why this item was parked, when it differs per item.
	Error string
}

// DeadLetters stores parked letters durably. Park must be idempotent for
// the same letter identity. Implementations must be safe for concurrent
// use.
type DeadLetters interface {
	Park(ctx context.Context, l Letter) error
}
