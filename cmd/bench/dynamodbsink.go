package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/processor"
	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
)

// Shape of the DynamoDB sink bench: a worker holding 8 shards, each
// getting GetRecords batches of 500 events, in records of 10 as the
// gateway packs them under load.
const (
	ddbBenchShards       = 8
	ddbBenchPerRecord    = 10
	ddbBenchBatchRecords = 50
)

// benchDynamoDBSink measures the DynamoDB counter sink against dynalite
// on a private emulator stack: events/s counted through one writer per
// shard, and UpdateItem calls and write units per 1,000 events (the bill
// on AWS; dynalite reports the units by item size, as DynamoDB does).
// Events are Netlify-shaped, spread over two UTC days as the corpus makes
// them; writers use the default windows and are flushed at the end.
func benchDynamoDBSink(ctx context.Context, o options) ([]figure, error) {
	stack, err := devstack.Start(ctx, devstack.Config{})
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	sink, err := ddbsink.New(stack.DynamoDB(), ddbsink.Config{Table: fmt.Sprintf("bench-counts-%d", time.Now().UnixNano())}, nil)
	if err != nil {
		return nil, err
	}
	if err := sink.EnsureTable(ctx); err != nil {
		return nil, err
	}
	evs, err := ddbBenchEvents(10000)
	if err != nil {
		return nil, err
	}

	var (
		mu       sync.Mutex
		measured bool
		base     ddbsink.Stats
		start    time.Time
	)
	stop := time.Now().Add(o.warmup + o.duration)
	begin := time.Now().Add(o.warmup)
	var wg sync.WaitGroup
	errs := make([]error, ddbBenchShards)
	for shard := range ddbBenchShards {
		w, err := sink.Open(ctx, processor.Shard{Stream: "bench", ID: fmt.Sprintf("shardId-%012d", shard), Worker: "bench"})
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			defer w.Close()
			defer func() {
				if errs[shard] == nil {
					errs[shard] = w.Flush(ctx)
				}
			}()
			seq, next := 0, shard*1000 // each shard starts elsewhere in the corpus
			for time.Now().Before(stop) {
				if !time.Now().Before(begin) {
					mu.Lock()
					if !measured {
						measured, base, start = true, sink.Stats(), time.Now()
					}
					mu.Unlock()
				}
				batch := make([]processor.Record, ddbBenchBatchRecords)
				for i := range batch {
					seq++
					if next+ddbBenchPerRecord > len(evs) {
						next = 0
					}
					batch[i] = processor.Record{SequenceNumber: fmt.Sprintf("4959%052d", seq), ArrivalTime: time.Now(), Events: evs[next : next+ddbBenchPerRecord]}
					next += ddbBenchPerRecord
				}
				if err := w.Write(ctx, batch); err != nil {
					errs[shard] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("write counters: %w", err)
		}
	}
	if !measured {
		return nil, fmt.Errorf("no batch started after the %s warm-up", o.warmup)
	}
	elapsed := time.Since(start)
	st := sink.Stats()
	events, updates, units := st.Events-base.Events, st.Updates-base.Updates, st.WriteUnits-base.WriteUnits
	if events == 0 {
		return nil, fmt.Errorf("no events counted in %s", elapsed)
	}
	return []figure{
		{"dynamodb_sink_events_per_s", float64(events) / elapsed.Seconds(), "events/s"},
		{"dynamodb_writes_per_1000_events", float64(updates) * 1000 / float64(events), "writes"},
		{"dynamodb_wcu_per_1000_events", units * 1000 / float64(events), "write units"},
	}, nil
}

// ddbBenchEvents returns n corpus events as the worker reads them, with
// the gateway's receivedAt at the corpus clock, so that each event counts
// on the day of its own timestamp.
func ddbBenchEvents(n int) ([]*event.Event, error) {
	g := corpus.NewNetlify(11)
	norm := &event.Normalizer{}
	received := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) // the corpus generator's clock
	out := make([]*event.Event, 0, n)
	for len(out) < n {
		body, err := json.Marshal(g.Next())
		if err != nil {
			return nil, err
		}
		req, err := event.DecodeRequest(body, event.Single, event.Track, 0)
		if err != nil {
			return nil, err
		}
		evs, err := norm.Normalize(req, event.Meta{Source: "bench", ReceivedAt: received})
		if err != nil {
			return nil, err
		}
		e, err := event.Parse(evs[0].AppendJSON(nil))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
