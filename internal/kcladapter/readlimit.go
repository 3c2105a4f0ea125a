package kcladapter

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
)

// assumedRecordBytes is the record size assumed before any GetRecords
// answer was seen: Kinesis' maximum, so the first call cannot overshoot.
const assumedRecordBytes = 1 << 20

// ReadLimit bounds the bytes of the GetRecords batches the library holds
// at once. The library asks for a fixed MaxRecords per call and keeps the
// whole answer until ProcessRecords returns, so without this a worker
// holding many shards of large records (1 MiB from some producers) would
// hold MaxRecords × record size × shards before the processor's memory
// budget sees a byte. ReadLimit lowers each call's Limit to what fits the
// shard's part of Budget, at the average record size seen so far. It is
// safe for concurrent use by every shard consumer.
type ReadLimit struct {
	// Budget is the bytes of undecoded records all shards may hold.
	Budget int64
	// Shards returns how many shards this worker reads now.
	Shards func() int
	// MinInterval spaces the GetRecords calls of each shard. A shard
	// serves 5 calls a second to all its readers together; the library
	// calls again as soon as a batch is processed, so without a spacing it
	// would take all five and throttle every other reader (`worker tail`,
	// a second application). 0: no spacing.
	MinInterval time.Duration

	mu    sync.Mutex
	avg   float64              // moving average of record data bytes; 0: none seen
	iters map[string]string    // shard iterator -> shard, for the spacing
	last  map[string]time.Time // shard -> start of its last GetRecords
}

// Option returns the kinesis.Options function that installs the limit
// on a client.
func (l *ReadLimit) Option() func(*kinesis.Options) {
	return func(o *kinesis.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(middleware.InitializeMiddlewareFunc("ReadLimit", l.handle), middleware.After)
		})
	}
}

func (l *ReadLimit) handle(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	if gi, ok := in.Parameters.(*kinesis.GetShardIteratorInput); ok {
		out, md, err := next.HandleInitialize(ctx, in)
		if res, ok := out.Result.(*kinesis.GetShardIteratorOutput); ok && err == nil {
			l.follow(aws.ToString(res.ShardIterator), aws.ToString(gi.ShardId))
		}
		return out, md, err
	}
	gr, ok := in.Parameters.(*kinesis.GetRecordsInput)
	if !ok {
		return next.HandleInitialize(ctx, in)
	}
	shard := l.space(ctx, aws.ToString(gr.ShardIterator))
	// A copy: the library reuses its input.
	c := *gr
	c.Limit = aws.Int32(l.limit(aws.ToInt32(gr.Limit)))
	in.Parameters = &c
	out, md, err := next.HandleInitialize(ctx, in)
	if res, ok := out.Result.(*kinesis.GetRecordsOutput); ok && err == nil {
		l.observe(res)
		l.advance(aws.ToString(gr.ShardIterator), aws.ToString(res.NextShardIterator), shard)
	}
	return out, md, err
}

// follow records that iter reads shard.
func (l *ReadLimit) follow(iter, shard string) {
	if l.MinInterval <= 0 || iter == "" || shard == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.iters == nil {
		l.iters, l.last = map[string]string{}, map[string]time.Time{}
	}
	l.iters[iter] = shard
}

// advance replaces a read iterator by the next one of its shard. A
// failed call keeps its iterator, which a retry uses again.
func (l *ReadLimit) advance(used, next, shard string) {
	if l.MinInterval <= 0 || shard == "" {
		return
	}
	l.mu.Lock()
	delete(l.iters, used)
	l.mu.Unlock()
	l.follow(next, shard)
}

// space waits until MinInterval has passed since the shard's last call,
// or ctx ends, and returns the shard iter reads ("" if unknown).
func (l *ReadLimit) space(ctx context.Context, iter string) string {
	if l.MinInterval <= 0 {
		return ""
	}
	l.mu.Lock()
	shard, ok := l.iters[iter]
	var wait time.Duration
	if ok {
		now := time.Now()
		at := now
		if t := l.last[shard].Add(l.MinInterval); t.After(now) {
			at = t
		}
		l.last[shard] = at
		wait = at.Sub(now)
	}
	l.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return shard
}

// limit returns the records one call may ask for, at most want (0: the
// API's 10,000).
func (l *ReadLimit) limit(want int32) int32 {
	if want <= 0 {
		want = 10000
	}
	shards := 1
	if l.Shards != nil {
		shards = max(l.Shards(), 1)
	}
	l.mu.Lock()
	avg := l.avg
	l.mu.Unlock()
	if avg <= 0 {
		avg = assumedRecordBytes
	}
	n := float64(l.Budget) / float64(shards) / avg
	return int32(max(1, min(float64(want), n)))
}

func (l *ReadLimit) observe(res *kinesis.GetRecordsOutput) {
	if len(res.Records) == 0 {
		return
	}
	total := 0
	for _, r := range res.Records {
		total += len(r.Data) + len(aws.ToString(r.PartitionKey))
	}
	size := float64(total) / float64(len(res.Records))
	l.mu.Lock()
	defer l.mu.Unlock()
	if size >= l.avg {
		// Up at once: underestimating the size is what overshoots.
		l.avg = size
		return
	}
	// Down slowly, weighted by the records seen, so that one small
	// answer does not undo what many large ones taught.
	w := min(float64(len(res.Records))/100, 1)
	l.avg += w * (size - l.avg) / 2
}
