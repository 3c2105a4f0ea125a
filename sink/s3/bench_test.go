package s3

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkS3Sink measures the sink's own work per batch of 1,000 corpus
// events (10 records of 100, as the gateway packs them): line checks,
// gzip, object cuts at the default 5 MiB, into an S3 that discards the
// bodies. The s3rver figure is cmd/bench's s3_sink_events_per_s.
func BenchmarkS3Sink(b *testing.B) {
	events := corpusEvents(b, 1000, t0)
	batch := corpusRecords(b, events, 1, 100, t0)
	var raw int64
	for _, e := range events {
		raw += int64(len(e)) + 1
	}
	var stored atomic.Int64
	api := &fakeS3{putObject: func(_ context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
		n, err := io.Copy(io.Discard, in.Body)
		stored.Add(n)
		return &awss3.PutObjectOutput{}, err
	}}
	s, err := New(api, Config{Bucket: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	w := open(b, s, nil, &stateRow{})
	b.SetBytes(raw)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i := range batch {
			n++
			batch[i].SequenceNumber = seq(n)
		}
		if err := w.Write(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n*100)/b.Elapsed().Seconds(), "events/s")
	if st := stored.Load(); st > 0 {
		b.ReportMetric(float64(int64(n/len(batch))*raw)/float64(st), "gzip-ratio")
	}
}
