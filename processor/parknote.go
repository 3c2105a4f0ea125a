package processor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
)

// LetterID names one parked range of one shard for one sink: what the
// processor parked together, and what a replay re-drives together. It is
// derived from the letter alone, so the processor that parks a range and
// the replay that re-drives it name it the same way.
type LetterID struct {
	// Shard is the live shard the records came from.
	Shard string
	// Reason is why they were parked (Reason*).
	Reason string
	// FirstSeq and LastSeq bound the parked records.
	FirstSeq, LastSeq string
}

// Key is a short stable identifier of the range, fit for an attribute
// name: 16 hex digits of a SHA-256 of the reason and bounds (the shard is
// left out; sinks that use it keep it per shard already).
func (id LetterID) Key() string {
	h := sha256.Sum256([]byte(id.Reason + "\x00" + id.FirstSeq + "\x00" + id.LastSeq))
	return hex.EncodeToString(h[:8])
}

// ParkNoter is implemented by a Sink whose destination keeps its own
// progress and must learn what the processor parked before that progress
// passes it: the DynamoDB counters, whose watermark would otherwise make a
// replay unable to tell a range skipped live from one counted live.
//
// After parking records for such a sink, the processor calls ParkNote and
// then Record on the note, retrying it (through the sink's breaker) before
// it gives the sink anything newer: notes are recorded in sequence order,
// and never after a later Write. Until a note is recorded, the sink's
// watermark saved in the lease row stays below the parked range, so that
// a crash meanwhile re-delivers the range to the sink live, and the
// letter, which then has no note, is skipped by a replay.
type ParkNoter interface {
	// ParkNote returns the note for records parked under id. It must do
	// no I/O and keep no reference to recs: the processor may hold the
	// note for as long as the destination is down.
	ParkNote(shard string, id LetterID, recs []Record) ParkNote
}

// ParkNote is one parked range a ParkNoter sink must record.
type ParkNote interface {
	// Record records the note at the destination. It is idempotent:
	// calling it again after a success, or after a failure part way, is
	// harmless.
	Record(ctx context.Context) error
}
