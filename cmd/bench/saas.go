package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/sink/ga4"
	"github.com/buildtelemetry/pipeline/sink/segment"
)

// saasBatchEvents is the events of each Write: 20 records of 100, a
// GetRecords batch of a lightly loaded shard. GA4 sends about one request
// per Netlify event (a client_id per site), so a Write of this size takes
// well under the measured time and the count stays fine-grained.
const saasBatchEvents = 2000

// benchSaaSSinks measures events/s through one shard's writer of the
// Segment and of the GA4 sink, each against a loopback server that reads
// the body and answers at once (200 for Segment, 204 for GA4): the cost
// of mapping, encoding and HTTP, not of the services. Events are the
// Netlify corpus as the gateway stores them.
func benchSaaSSinks(ctx context.Context, o options) ([]figure, error) {
	raws, err := normalizedCorpus(saasBatchEvents)
	if err != nil {
		return nil, err
	}
	recs := make([]processor.Record, 0, saasBatchEvents/100)
	for i := 0; i < len(raws); i += 100 {
		var r processor.Record
		for _, raw := range raws[i : i+100] {
			e, err := event.ParseTrusted(raw)
			if err != nil {
				return nil, fmt.Errorf("parse corpus event: %w", err)
			}
			r.Events = append(r.Events, e)
			r.Raw = append(r.Raw, raw)
		}
		recs = append(recs, r)
	}

	instant := func(status int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		})
	}
	segURL, stopSeg, err := serve(instant(http.StatusOK, `{"success":true}`))
	if err != nil {
		return nil, err
	}
	defer stopSeg()
	gaURL, stopGA, err := serve(instant(http.StatusNoContent, ""))
	if err != nil {
		return nil, err
	}
	defer stopGA()

	seg, err := segment.New(segment.Config{Endpoint: segURL, WriteKey: "bench-key"}, nil)
	if err != nil {
		return nil, err
	}
	ga, err := ga4.New(ga4.Config{Endpoint: gaURL, MeasurementID: "G-BENCH", APISecret: "bench-secret"}, nil)
	if err != nil {
		return nil, err
	}
	var figs []figure
	for _, s := range []struct {
		name string
		sink processor.Sink
	}{
		{"segment_sink_events_per_s", seg},
		{"ga4_sink_events_per_s", ga},
	} {
		rate, err := sinkRate(ctx, s.sink, recs, o)
		if err != nil {
			return figs, fmt.Errorf("%s: %w", s.sink.Name(), err)
		}
		figs = append(figs, figure{s.name, rate, "events/s"})
	}
	return figs, nil
}

// sinkRate writes recs to one writer of s over and over, o.warmup
// unmeasured and then o.duration measured (at least one Write), and
// returns events/s.
func sinkRate(ctx context.Context, s processor.Sink, recs []processor.Record, o options) (float64, error) {
	w, err := s.Open(ctx, processor.Shard{Stream: "bench", ID: "shardId-000000000000", Worker: "bench"})
	if err != nil {
		return 0, err
	}
	defer w.Close()
	perWrite := 0
	for _, r := range recs {
		perWrite += len(r.Events)
	}
	seq := 0
	run := func(d time.Duration) (int, time.Duration, error) {
		start, n := time.Now(), 0
		for n == 0 || time.Since(start) < d {
			if err := ctx.Err(); err != nil {
				return n, time.Since(start), err
			}
			// Fresh sequence numbers, as the processor's next batch has.
			for i := range recs {
				seq++
				recs[i].SequenceNumber = strconv.Itoa(seq)
			}
			if err := w.Write(ctx, recs); err != nil {
				return n, time.Since(start), err
			}
			n += perWrite
		}
		return n, time.Since(start), nil
	}
	if o.warmup > 0 {
		if _, _, err := run(o.warmup); err != nil {
			return 0, err
		}
	}
	n, elapsed, err := run(o.duration)
	if err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}
