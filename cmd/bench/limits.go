package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
	"github.com/buildtelemetry/pipeline/internal/streamread"
)

// benchLimits runs the gateway and a worker against a 1-shard stream
// behind Kinesis' real per-shard limits (one shard, so that twice its
// capacity is a load this machine can offer beside the gateway) (the limits layer, on whatever
// DEVSTACK_LIMITS says): the gateway under twice the stream's write
// capacity (events/s it gets in, next to the capacity computed from the
// limits and the bytes an event takes in the stream; the share of 429s),
// a worker draining what it wrote (next to the read capacity), and the
// same events written one per record, as an API Gateway → Kinesis
// integration does.
func benchLimits(ctx context.Context, o options) ([]figure, error) {
	r, closeRig, err := newRig(ctx, "bench-limits")
	if err != nil {
		return nil, err
	}
	defer closeRig()
	if r.s.Limits() == nil {
		return nil, fmt.Errorf("the stack runs without limits (%s=off): nothing to measure", devstack.EnvLimits)
	}
	gwBin := filepath.Join(r.dir, "gateway")
	if out, err := exec.Command("go", "build", "-o", gwBin, "./cmd/gateway").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build gateway: %v\n%s", err, out)
	}
	const stream, shards = "bench-limits", 1
	if err := r.s.CreateStream(ctx, stream, shards); err != nil {
		return nil, err
	}
	if err := r.s.CreateBucket(ctx, stream); err != nil {
		return nil, err
	}
	gw, addr, err := startGateway(gwBin, r.s, stream, "LOG_LEVEL=error")
	if err != nil {
		return nil, err
	}
	defer func() { _ = gw.Process.Kill(); _ = gw.Wait() }()

	// Twice the write capacity at ~128 bytes an event (measured below).
	lim := limits.AWS()
	target := 2 * shards * lim.ShardWriteBytes / 128
	// Long enough that the buckets' 1.2 s of burst weighs little.
	d := max(o.duration, 20*time.Second)
	res := openLoop(ctx, "http://"+addr+"/v1/batch", target, d)
	bytesPerEvent, events, err := streamBytes(ctx, r.s, stream)
	if err != nil {
		return nil, err
	}
	writeCap := shards * lim.ShardWriteBytes / bytesPerEvent
	readCap := shards * lim.ShardReadBytes / bytesPerEvent

	// The worker drains what the gateway wrote.
	took, _, err := r.drain(ctx, r.bin, stream, stream, "DEADLETTER_BUCKET="+stream,
		"SINK_FILE_PATH="+filepath.Join(r.dir, "limits.ndjson"))
	if err != nil {
		return nil, err
	}
	drain := float64(events) / took.Seconds()

	seed, err := oneEventPerRecord(ctx, r.s, shards, d)
	if err != nil {
		return nil, err
	}
	return []figure{
		{"stream_write_capacity_events_per_s", writeCap, "events/s"},
		{"gateway_offered_events_per_s", res.offered() / res.seconds, "events/s"},
		{"gateway_throttled_events_per_s", res.acked / res.seconds, "events/s"},
		{"gateway_429_share", res.share(http.StatusTooManyRequests), ""},
		{"gateway_503_share", res.share(http.StatusServiceUnavailable), ""},
		{"stream_read_capacity_events_per_s", readCap, "events/s"},
		{"worker_drain_events_per_s_limited", drain, "events/s"},
		{"seed_style_events_per_s_limited", seed, "events/s"},
		{"gateway_vs_seed_style_ratio", res.acked / res.seconds / seed, ""},
	}, nil
}

// loadResult counts an open-loop run's answers.
type loadResult struct {
	codes   map[int]int
	acked   float64
	seconds float64
}

// offered returns the events sent (answered or not).
func (l loadResult) offered() float64 {
	total := 0
	for _, n := range l.codes {
		total += n
	}
	return float64(100 * total)
}

func (l loadResult) share(code int) float64 {
	total := 0
	for _, n := range l.codes {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(l.codes[code]) / float64(total)
}

// openLoop sends 100-event Netlify batches at rate events/s for d, each
// on its own tick whether or not earlier ones were answered, as a fleet
// of build machines does.
func openLoop(ctx context.Context, url string, rate float64, d time.Duration) loadResult {
	g := corpus.NewNetlify(7)
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = g.Batch(100)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"))
	tr := &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		acked atomic.Int64
		wg    sync.WaitGroup
	)
	every := time.Duration(float64(time.Second) * 100 / rate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		<-tick.C
		wg.Add(1)
		go func(body []byte) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
			req.Header.Set("Authorization", auth)
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if code == http.StatusOK {
				acked.Add(100)
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}(bodies[i%len(bodies)])
	}
	wg.Wait()
	return loadResult{codes: codes, acked: float64(acked.Load()), seconds: time.Since(start).Seconds()}
}

// streamBytes reads the whole stream and returns the data and partition
// key bytes per event, and the events.
func streamBytes(ctx context.Context, s *devstack.Stack, stream string) (float64, int, error) {
	dec, err := event.NewRecordDecoder()
	if err != nil {
		return 0, 0, err
	}
	recs, err := streamread.ReadAll(ctx, s.Kinesis(), stream)
	if err != nil {
		return 0, 0, err
	}
	size, events := 0, 0
	for _, rec := range recs {
		evs, err := dec.Decode(rec.Data)
		if err != nil {
			return 0, 0, err
		}
		events += len(evs)
		size += len(rec.Data) + len(aws.ToString(rec.PartitionKey))
	}
	if events == 0 {
		return 0, 0, fmt.Errorf("no event in stream %s", stream)
	}
	return float64(size) / float64(events), events, nil
}

// oneEventPerRecord writes Netlify events one per record, 500 per
// PutRecords call, to a fresh stream of the given shards for d, retrying throttled
// entries, and returns the events written per second.
func oneEventPerRecord(ctx context.Context, s *devstack.Stack, shards int32, d time.Duration) (float64, error) {
	const stream = "bench-limits-seed"
	if err := s.CreateStream(ctx, stream, shards); err != nil {
		return 0, err
	}
	g := corpus.NewNetlify(9)
	written := 0
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		entries := make([]types.PutRecordsRequestEntry, 500)
		for j := range entries {
			entries[j] = types.PutRecordsRequestEntry{Data: g.NextJSON(), PartitionKey: aws.String(strconv.Itoa(i*500 + j))}
		}
		cctx, cancel := context.WithDeadline(ctx, start.Add(d))
		err := devstack.PutRecords(cctx, s.Kinesis(), stream, entries)
		cancel()
		if err == nil {
			written += len(entries)
		}
	}
	return float64(written) / time.Since(start).Seconds(), nil
}
