package kclproc

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/buildtelemetry/pipeline/processor"
)

// DefaultMemoryBudget is the budget of decoded records when
// Config.MemoryBudget is zero: enough for every sink to batch well on
// dozens of shards, small enough for a pod with 256 MiB.
const DefaultMemoryBudget = 64 << 20

// budget is the byte budget of decoded records that all shards of a
// worker share. A record is charged from its decoding until every sink
// made it durable: the S3 sink's buffer, records in flight to Segment and
// GA4, and decoded batches waiting for a slow sink all count. A shard
// that cannot get budget delivers and flushes what it holds, then waits;
// while any shard waits, the others flush their sinks at their next batch
// (an idle shard gets an empty batch every WORKER_IDLE_TIME), so that
// buffers waiting for their age limit cannot starve a busy shard.
type budget struct {
	sem     *semaphore.Weighted
	size    int64
	waiting atomic.Int32
	used    atomic.Int64
}

func newBudget(size int64) *budget {
	return &budget{sem: semaphore.NewWeighted(size), size: size}
}

// clamp returns n, or the whole budget for a record larger than it: such
// a record is processed alone rather than never.
func (b *budget) clamp(n int64) int64 { return min(max(n, 1), b.size) }

func (b *budget) tryAcquire(n int64) bool {
	if !b.sem.TryAcquire(n) {
		return false
	}
	b.used.Add(n)
	return true
}

func (b *budget) acquire(ctx context.Context, n int64) error {
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	if err := b.sem.Acquire(ctx, n); err != nil {
		return err
	}
	b.used.Add(n)
	return nil
}

func (b *budget) release(n int64) {
	if n > 0 {
		b.used.Add(-n)
		b.sem.Release(n)
	}
}

// chunk is the most budget one fan-out carries: an eighth of the budget,
// so that eight shards can have a chunk in flight at once. Larger chunks
// make fewer, larger sink calls (the counters sink writes each counter
// once per call); smaller ones bound what sinks build per call.
func (b *budget) chunk() int64 { return b.size / 8 }

// pressed reports whether a shard waits for budget.
func (b *budget) pressed() bool { return b.waiting.Load() > 0 }

// charge is the budget one record holds.
type charge struct {
	seq  string
	size int64
}

// recordCost estimates the memory a decoded record holds: its events'
// bytes and, per event, the parsed Event and its field index. The
// factor covers what the estimate cannot see (allocation size classes,
// the decompressor's slack, copies sinks make while encoding); it was
// measured with heap profiles of a backlog drain.
func recordCost(r processor.Record) int64 {
	n := int64(recordOverhead)
	for i, raw := range r.Raw {
		n += int64(len(raw)) + eventOverhead
		if i < len(r.Events) && r.Events[i] != nil {
			n += int64(r.Events[i].HeapSize())
		}
	}
	return n * costFactor / 2
}

// costFactor is twice the ratio of measured heap to estimated cost.
const costFactor = 3

// Per-record and per-event bookkeeping beyond the bytes: Record, the
// slices' headers, the *Event.
const (
	recordOverhead = 128
	eventOverhead  = 48
)
