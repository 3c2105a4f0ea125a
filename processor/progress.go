package processor

import "context"

// Progress is what the lease row stores about a shard beyond the lease.
type Progress struct {
	// Checkpoint is the sequence number every sink has made durable: a
	// new lease resumes after it. SHARD_END once the shard is done.
	Checkpoint string
	// Sinks holds each sink's own progress, by Sink.Name.
	Sinks map[string]SinkProgress
}

// SinkProgress is one sink's progress on a shard.
type SinkProgress struct {
	// Watermark is the sequence number up to which the sink made every
	// record durable (delivered or parked). On a new lease the sink is
	// not given records at or below it, so a replay from Checkpoint
	// reaches only the sinks that had not finished.
	Watermark string
	// State is the sink's saved state (see StateWriter), nil if none.
	State []byte
}

// ProgressStore persists progress in the lease table. Every write is
// fenced: it fails with an error wrapping ErrLeaseLost once this worker no
// longer holds the shard's lease, and then changes nothing.
// Implementations must be safe for concurrent use by several shards.
type ProgressStore interface {
	// LoadProgress returns the shard's stored progress; a shard never
	// checkpointed has an empty Progress.
	LoadProgress(ctx context.Context, shardID string) (Progress, error)
	// SaveProgress writes the checkpoint (unless empty) and every sink
	// watermark in p, in one conditional write. Sink states are written
	// only for sinks whose State is non-nil.
	SaveProgress(ctx context.Context, shardID string, p Progress) error
	// SaveSinkState writes one sink's state.
	SaveSinkState(ctx context.Context, shardID, sink string, state []byte) error
}

// Handoffs is implemented by a ProgressStore whose leases other workers
// can claim, to balance shards. When HandoffRequested reports a claim,
// the processor flushes every sink, saves its progress, then calls
// Handoff, and delivers nothing more for the shard: the claimant resumes
// from exactly the saved progress, so the move duplicates and skips
// nothing (KCL 3.x's graceful lease handoff).
type Handoffs interface {
	// HandoffRequested reports whether another worker waits for
	// shardID's lease. It must be cheap: it is called before each batch.
	HandoffRequested(shardID string) bool
	// Handoff releases shardID's lease to its claimant. It fails with an
	// error wrapping ErrLeaseLost once the lease is no longer held.
	Handoff(ctx context.Context, shardID string) error
}
