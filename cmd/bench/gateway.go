package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/gateway"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/loadtest"
)

// instantKinesis accepts every record at once: the bench measures the
// gateway, not the network or an emulator.
func instantKinesis(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	out := &kinesis.PutRecordsOutput{Records: make([]types.PutRecordsResultEntry, len(in.Records))}
	for i := range out.Records {
		out.Records[i] = types.PutRecordsResultEntry{SequenceNumber: aws.String("1"), ShardId: aws.String("shardId-000000000000")}
	}
	return out, nil
}

// serve runs h on a loopback port until the returned stop is called.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// benchGateway measures the gateway with an instant Kinesis against a bare
// net/http handler that only reads the body, under the same load.
func benchGateway(ctx context.Context, o options) ([]figure, error) {
	const key = "bench-key"
	hdr := http.Header{
		"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))},
		"Content-Type":  {"application/json"},
	}
	g := corpus.NewNetlify(42)
	singles := make([][]byte, 20000)
	for i := range singles {
		singles[i] = g.NextJSON()
	}
	batches := make([][]byte, 400)
	for i := range batches {
		batches[i] = g.Batch(100)
	}

	run := func(h http.Handler, path string, bodies [][]byte, perBody, conc int) (loadtest.Result, error) {
		url, stop, err := serve(h)
		if err != nil {
			return loadtest.Result{}, err
		}
		defer stop()
		r, err := loadtest.Run(ctx, loadtest.Load{URL: url + path, Header: hdr, Bodies: bodies, EventsPerBody: perBody,
			Concurrency: conc, Warmup: o.warmup, Duration: o.duration})
		if err == nil && r.Errors > 0 {
			fmt.Fprintf(os.Stderr, "bench: %s: %d errors, first: %s\n", path, r.Errors, r.FirstError)
		}
		return r, err
	}
	newGateway := func() (http.Handler, *gateway.Producer, error) {
		enc, err := event.NewRecordEncoder()
		if err != nil {
			return nil, nil, err
		}
		p, err := gateway.NewProducer(gateway.PutRecordsFunc(instantKinesis), enc, gateway.ProducerConfig{StreamName: "bench", Linger: o.linger}, zap.NewNop())
		if err != nil {
			return nil, nil, err
		}
		h, err := gateway.NewHandler(p, gateway.Config{WriteKeys: map[string]string{key: "bench"}}, zap.NewNop())
		return h, p, err
	}
	closeProducer := func(p *gateway.Producer) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = p.Close(cctx)
	}

	singleConc, batchConc := o.concurrency, max(o.concurrency/4, 1)
	h, p, err := newGateway()
	if err != nil {
		return nil, err
	}
	single, err := run(h, "/v1/track", singles, 1, singleConc)
	if err != nil {
		return nil, err
	}
	singleStats := p.Stats()
	closeProducer(p)

	h, p, err = newGateway()
	if err != nil {
		return nil, err
	}
	batch, err := run(h, "/v1/batch", batches, 100, batchConc)
	if err != nil {
		return nil, err
	}
	batchStats := p.Stats()
	closeProducer(p)

	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true}` + "\n"))
	})
	bareSingle, err := run(bare, "/v1/track", singles, 1, singleConc)
	if err != nil {
		return nil, err
	}

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	perEvent := func(s gateway.ProducerStats) float64 {
		if s.Events == 0 {
			return 0
		}
		return float64(s.Bytes) / float64(s.Events)
	}
	rawPerEvent := 0
	for _, b := range singles[:1000] {
		rawPerEvent += len(b)
	}
	return []figure{
		{"gateway_events_per_s_single", single.EventsPerSecond(), "events/s"},
		{"gateway_events_per_s_batch100", batch.EventsPerSecond(), "events/s"},
		{"bare_handler_events_per_s_single", bareSingle.EventsPerSecond(), "events/s"},
		{"gateway_vs_bare_ratio", single.EventsPerSecond() / bareSingle.EventsPerSecond(), "ratio"},
		{"gateway_p50_ms", ms(single.P50), "ms"},
		{"gateway_p99_ms", ms(single.P99), "ms"},
		{"gateway_batch100_p50_ms", ms(batch.P50), "ms"},
		{"gateway_batch100_p99_ms", ms(batch.P99), "ms"},
		{"bare_handler_p50_ms", ms(bareSingle.P50), "ms"},
		{"bare_handler_p99_ms", ms(bareSingle.P99), "ms"},
		{"kinesis_bytes_per_event", perEvent(singleStats), "bytes"},
		{"kinesis_bytes_per_event_batch100", perEvent(batchStats), "bytes"},
		{"kinesis_events_per_record_single", float64(singleStats.Events) / float64(max(singleStats.Records, 1)), "events"},
		{"client_event_bytes", float64(rawPerEvent) / 1000, "bytes"},
	}, nil
}
