package deadletter

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// fakeS3 is an S3API whose behaviour each test sets. An unset function
// panics.
type fakeS3 struct {
	putObject     func(ctx context.Context, in *s3.PutObjectInput) (*s3.PutObjectOutput, error)
	getObject     func(ctx context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, error)
	listObjectsV2 func(ctx context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error)
	deleteObject  func(ctx context.Context, in *s3.DeleteObjectInput) (*s3.DeleteObjectOutput, error)
}

var _ S3API = (*fakeS3)(nil)

func (f *fakeS3) PutObject(ctx context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return f.putObject(ctx, in)
}

func (f *fakeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return f.getObject(ctx, in)
}

func (f *fakeS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return f.listObjectsV2(ctx, in)
}

func (f *fakeS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return f.deleteObject(ctx, in)
}

// testSink is a processor.Sink that records what its writers deliver and
// fails on demand. Its writers deliver on Flush.
type testSink struct {
	name string

	// Set before use.
	failOpen, failWrite, failFlush, failClose error
	// reject, when set, returns an error for events the sink can never
	// take: Write reports them in a *processor.PartialError.
	reject func(*event.Event) error
	// stuck makes Durable report nothing, as a sink that lost track.
	stuck bool

	mu        sync.Mutex
	shards    []processor.Shard
	delivered []processor.Record // one Record per flushed record, rejected events left out
}

var _ processor.Sink = (*testSink)(nil)

func (s *testSink) Name() string { return s.name }

func (s *testSink) Open(_ context.Context, shard processor.Shard) (processor.Writer, error) {
	if s.failOpen != nil {
		return nil, s.failOpen
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shards = append(s.shards, shard)
	return &testWriter{s: s}, nil
}

// raws returns the raw bytes of every delivered event, in order.
func (s *testSink) raws() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.delivered {
		for _, b := range r.Raw {
			out = append(out, string(b))
		}
	}
	return out
}

type testWriter struct {
	s                *testSink
	buf              []processor.Record
	written, durable string
	closed           bool
}

func (w *testWriter) Write(_ context.Context, recs []processor.Record) error {
	if w.closed {
		return errors.New("test sink: write after close")
	}
	if w.s.failWrite != nil {
		return w.s.failWrite
	}
	var pe processor.PartialError
	for i := range recs {
		r := &recs[i]
		if processor.CompareSeq(r.SequenceNumber, w.written) <= 0 {
			return fmt.Errorf("test sink: record %s out of order after %s", r.SequenceNumber, w.written)
		}
		if len(r.Events) != len(r.Raw) {
			return fmt.Errorf("test sink: record %s has %d events and %d raws", r.SequenceNumber, len(r.Events), len(r.Raw))
		}
		keep := processor.Record{SequenceNumber: r.SequenceNumber, ArrivalTime: r.ArrivalTime}
		for j, ev := range r.Events {
			if w.s.reject != nil {
				if err := w.s.reject(ev); err != nil {
					cp := *r // a copy, as a sink may report
					pe.Failed = append(pe.Failed, processor.FailedEvent{Record: &cp, Index: j, Err: err})
					continue
				}
			}
			keep.Events = append(keep.Events, ev)
			keep.Raw = append(keep.Raw, r.Raw[j])
		}
		w.buf = append(w.buf, keep)
		w.written = r.SequenceNumber
	}
	if len(pe.Failed) > 0 {
		return &pe
	}
	return nil
}

func (w *testWriter) Flush(context.Context) error {
	if w.s.failFlush != nil {
		return w.s.failFlush
	}
	w.s.mu.Lock()
	w.s.delivered = append(w.s.delivered, w.buf...)
	w.s.mu.Unlock()
	w.buf = nil
	if !w.s.stuck {
		w.durable = w.written
	}
	return nil
}

func (w *testWriter) Durable() string { return w.durable }

func (w *testWriter) Close() error {
	w.closed = true
	return w.s.failClose
}
