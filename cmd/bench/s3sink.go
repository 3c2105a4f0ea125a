package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/processor"
	s3sink "github.com/buildtelemetry/pipeline/sink/s3"
)

// benchS3Sink measures events/s through the S3 sink into s3rver: corpus
// events, normalised as the gateway stores them, in records of 100 events
// and batches of 10 records (as the gateway packs them and the KCL reads
// them), written by one shard's writer with the sink's default buffering
// (5 MiB objects), for o.duration after o.warmup, each run ending with a
// Flush so that every event counted is in S3. It starts a private emulator
// stack and closes it after. The pending-state save before each upload
// goes to memory here; in production it is one DynamoDB write per object.
func benchS3Sink(ctx context.Context, o options) ([]figure, error) {
	st, err := devstack.Start(ctx, devstack.Config{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	const bucket = "bench-s3-sink"
	if err := st.CreateBucket(ctx, bucket); err != nil {
		return nil, err
	}
	events, err := normalizedCorpus(10000)
	if err != nil {
		return nil, err
	}
	const perRecord, perBatch = 100, 10
	var batch []processor.Record
	var rawBytes int64
	for i := 0; i < len(events) && len(batch) < perBatch; i += perRecord {
		r := processor.Record{}
		for _, raw := range events[i : i+perRecord] {
			e, err := event.ParseTrusted(raw)
			if err != nil {
				return nil, fmt.Errorf("parse corpus event: %w", err)
			}
			r.Events = append(r.Events, e)
			r.Raw = append(r.Raw, raw)
			rawBytes += int64(len(raw)) + 1
		}
		batch = append(batch, r)
	}
	api := &countingS3{S3API: st.S3()}
	sink, err := s3sink.New(api, s3sink.Config{Bucket: bucket})
	if err != nil {
		return nil, err
	}
	w, err := sink.Open(ctx, processor.Shard{Stream: "bench", ID: "shardId-000000000000", Worker: "bench", Saver: nopSaver{}})
	if err != nil {
		return nil, err
	}
	defer w.Close()

	seq := 0
	run := func(d time.Duration) (events int, elapsed time.Duration, err error) {
		start := time.Now()
		for time.Since(start) < d {
			now := time.Now()
			for i := range batch {
				seq++
				batch[i].SequenceNumber = fmt.Sprint(seq)
				batch[i].ArrivalTime = now
			}
			if err := w.Write(ctx, batch); err != nil {
				return 0, 0, err
			}
			events += perRecord * len(batch)
		}
		if err := w.Flush(ctx); err != nil {
			return 0, 0, err
		}
		return events, time.Since(start), nil
	}
	if _, _, err := run(o.warmup); err != nil {
		return nil, fmt.Errorf("warm up: %w", err)
	}
	api.bytes.Store(0)
	n, elapsed, err := run(o.duration)
	if err != nil {
		return nil, err
	}
	figs := []figure{{"s3_sink_events_per_s", float64(n) / elapsed.Seconds(), "events/s"}}
	if stored := api.bytes.Load(); stored > 0 {
		in := float64(n) / float64(perRecord*len(batch)) * float64(rawBytes)
		figs = append(figs, figure{"s3_sink_gzip_ratio", in / float64(stored), "x"})
	}
	return figs, nil
}

// countingS3 counts the bytes of the objects put.
type countingS3 struct {
	s3sink.S3API
	bytes atomic.Int64
}

func (c *countingS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, o ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	out, err := c.S3API.PutObject(ctx, in, o...)
	if err == nil && in.ContentLength != nil {
		c.bytes.Add(*in.ContentLength)
	}
	return out, err
}

func (c *countingS3) UploadPart(ctx context.Context, in *awss3.UploadPartInput, o ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	out, err := c.S3API.UploadPart(ctx, in, o...)
	if err == nil && in.ContentLength != nil {
		c.bytes.Add(*in.ContentLength)
	}
	return out, err
}

// nopSaver stands for the lease row.
type nopSaver struct{}

func (nopSaver) SaveState(context.Context, []byte) error { return nil }
