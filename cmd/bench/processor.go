package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// nopSink accepts everything at once: the bench measures decoding and
// fan-out, not a destination.
type nopSink struct{ name string }

func (s nopSink) Name() string { return s.name }
func (s nopSink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &nopWriter{}, nil
}

type nopWriter struct{ durable string }

func (w *nopWriter) Write(_ context.Context, recs []processor.Record) error {
	if len(recs) > 0 {
		w.durable = recs[len(recs)-1].SequenceNumber
	}
	return nil
}
func (w *nopWriter) Flush(context.Context) error { return nil }
func (w *nopWriter) Durable() string             { return w.durable }
func (w *nopWriter) Close() error                { return nil }

// normalizedCorpus returns n Netlify-shaped events as the gateway stores them.
func normalizedCorpus(n int) ([][]byte, error) {
	g := corpus.NewNetlify(7)
	norm := &event.Normalizer{}
	out := make([][]byte, 0, n)
	for len(out) < n {
		req, err := event.DecodeRequest(g.NextJSON(), event.Single, event.Track, 0)
		if err != nil {
			return nil, err
		}
		evs, err := norm.Normalize(req, event.Meta{Source: "bench", ReceivedAt: time.Now()})
		if err != nil {
			return nil, err
		}
		out = append(out, evs[0].AppendJSON(nil))
	}
	return out, nil
}

// benchProcessor measures events/s through one record processor on one
// core (GOMAXPROCS=1): decode our records and fan out to four sinks that
// do nothing, checkpointing as in production. The reference is plain
// encoding/json decoding of the same events into map[string]any, what a
// consumer without our record format would at least do.
func benchProcessor(ctx context.Context, o options) ([]figure, error) {
	events, err := normalizedCorpus(10000)
	if err != nil {
		return nil, err
	}
	enc, err := event.NewRecordEncoder()
	if err != nil {
		return nil, err
	}
	// One GetRecords batch: 100 records of 100 events, as the gateway packs them under load.
	const perRecord = 100
	var batch []types.Record
	now := time.Now()
	for i := 0; i < len(events); i += perRecord {
		batch = append(batch, types.Record{Data: enc.Encode(nil, events[i:i+perRecord]), ApproximateArrivalTimestamp: &now, PartitionKey: aws.String("k")})
	}

	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	sinks := []processor.Sink{nopSink{"segment"}, nopSink{"ga4"}, nopSink{"s3"}, nopSink{"dynamodb"}}
	f, err := kclproc.NewFactory(kclproc.Config{WorkerID: "bench", Stream: "bench"}, sinks, &pt.DeadLetters{}, &pt.Store{}, zap.NewNop())
	if err != nil {
		return nil, err
	}
	p := f.CreateProcessor()
	p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000000"})
	seq := 0
	start := time.Now()
	n := 0
	for time.Since(start) < o.duration {
		for i := range batch {
			seq++
			batch[i].SequenceNumber = aws.String(strconv.Itoa(seq))
		}
		p.ProcessRecords(&kcl.ProcessRecordsInput{Records: batch, Checkpointer: &pt.Checkpointer{}})
		n += len(events)
	}
	procRate := float64(n) / time.Since(start).Seconds()
	p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED})

	start, n = time.Now(), 0
	for time.Since(start) < o.duration {
		for _, e := range events {
			var m map[string]any
			if err := json.Unmarshal(e, &m); err != nil {
				return nil, fmt.Errorf("decode corpus event: %w", err)
			}
		}
		n += len(events)
	}
	jsonRate := float64(n) / time.Since(start).Seconds()
	return []figure{
		{"processor_events_per_s_per_core", procRate, "events/s"},
		{"json_decode_events_per_s_per_core", jsonRate, "events/s"},
	}, nil
}
