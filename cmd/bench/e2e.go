package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/loadtest"
	"github.com/buildtelemetry/pipeline/internal/streamread"
	"github.com/buildtelemetry/pipeline/processor"
)

// benchEndToEnd runs the real binaries against the emulators: the gateway
// under single-event load writing to kinesalite, next to raw PutRecords of
// one event per record (what a producer without group commit does); then
// a worker with the S3, DynamoDB and file sinks draining what the gateway
// wrote. It reports both processes' peak resident memory (VmHWM).
func benchEndToEnd(ctx context.Context, o options) ([]figure, error) {
	dir, err := os.MkdirTemp("", "bench-e2e")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command("go", "build", "-o", dir+"/", "./cmd/gateway", "./cmd/worker").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build binaries: %v\n%s", err, out)
	}
	s, err := devstack.Start(ctx, devstack.Config{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	const stream, bucket = "bench-e2e", "bench-e2e"
	for _, name := range []string{stream, "bench-raw"} {
		if err := s.CreateStream(ctx, name, 4); err != nil {
			return nil, err
		}
	}
	if err := s.CreateBucket(ctx, bucket); err != nil {
		return nil, err
	}
	g := corpus.NewNetlify(5)
	singles := make([][]byte, 20000)
	for i := range singles {
		singles[i] = g.NextJSON()
	}

	// Reference: raw PutRecords, one event per record, 500 per call.
	rawRate, err := rawPutRecords(ctx, s.Kinesis(), "bench-raw", singles, o.duration)
	if err != nil {
		return nil, err
	}

	gw, addr, err := startGateway(filepath.Join(dir, "gateway"), s, stream, "LOG_LEVEL=warn")
	if err != nil {
		return nil, err
	}
	defer func() { _ = gw.Process.Kill(); _ = gw.Wait() }()
	hdr := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"))}}
	res, err := loadtest.Run(ctx, loadtest.Load{URL: "http://" + addr + "/v1/track", Header: hdr, Bodies: singles, EventsPerBody: 1,
		Concurrency: o.concurrency, Warmup: o.warmup, Duration: o.duration})
	if err != nil {
		return nil, err
	}
	gwRSS := peakRSS(gw.Process.Pid)

	// The worker drains what the gateway wrote.
	r := &failoverRig{s: s}
	drain, wRSS, err := r.drain(ctx, filepath.Join(dir, "worker"), stream, "bench-e2e",
		"DEADLETTER_BUCKET="+bucket, "S3_BUCKET="+bucket, "S3_BUFFER_INTERVAL=2s", "DYNAMODB_COUNTS_TABLE=bench-counts",
		"SINK_FILE_PATH="+filepath.Join(dir, "events.ndjson"))
	if err != nil {
		return nil, err
	}
	return []figure{
		{"gateway_kinesalite_events_per_s", res.EventsPerSecond(), "events/s"},
		{"raw_putrecords_events_per_s", rawRate, "events/s"},
		{"gateway_peak_rss_mb", gwRSS, "MB"},
		{"worker_drain_events_per_s", float64(res.Events) / drain.Seconds(), "events/s"},
		{"worker_peak_rss_mb", wRSS, "MB"},
	}, nil
}

// drain starts a worker of bin on stream (application app) with env
// added, waits until its checkpoints reach the shards' tips as they are
// now, and returns how long that took and the worker's peak RSS in MB.
func (r *failoverRig) drain(ctx context.Context, bin, stream, app string, env ...string) (time.Duration, float64, error) {
	tips, err := shardTips(ctx, r.s, stream)
	if err != nil {
		return 0, 0, err
	}
	w := exec.Command(bin, "run")
	w.Env = append(append(r.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+stream, "WORKER_APP="+app, "WORKER_ID=w1",
		"WORKER_HEALTH_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0", "LOG_LEVEL=warn"), env...)
	if err := w.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	start := time.Now()
	if err := waitUntil(5*time.Minute, func() bool {
		cps := r.checkpoints(ctx, app)
		for shard, tip := range tips {
			if processor.CompareSeq(cps[shard], tip) < 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return 0, 0, fmt.Errorf("worker did not catch up: %w", err)
	}
	return time.Since(start), peakRSS(w.Process.Pid), nil
}

// shardTips returns the last sequence number of each shard.
func shardTips(ctx context.Context, s *devstack.Stack, stream string) (map[string]string, error) {
	shards, err := streamread.Shards(ctx, s.Kinesis(), stream)
	if err != nil {
		return nil, err
	}
	tips := map[string]string{}
	for _, shard := range shards {
		err := streamread.Follow(ctx, s.Kinesis(), stream, shard, types.ShardIteratorTypeTrimHorizon, false, func(recs []types.Record) error {
			tips[shard] = aws.ToString(recs[len(recs)-1].SequenceNumber)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return tips, nil
}

func rawPutRecords(ctx context.Context, kc *kinesis.Client, stream string, events [][]byte, d time.Duration) (float64, error) {
	const conc = 4
	type result struct {
		n   int
		err error
	}
	results := make(chan result, conc)
	deadline := time.Now().Add(d)
	for c := 0; c < conc; c++ {
		go func() {
			n := 0
			for i := c * 500; time.Now().Before(deadline); i += 500 {
				entries := make([]types.PutRecordsRequestEntry, 500)
				for j := range entries {
					entries[j] = types.PutRecordsRequestEntry{Data: events[(i+j)%len(events)], PartitionKey: aws.String(strconv.Itoa(i + j))}
				}
				out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
				if err != nil {
					results <- result{n, err}
					return
				}
				n += 500 - int(aws.ToInt32(out.FailedRecordCount))
			}
			results <- result{n, nil}
		}()
	}
	total := 0
	for c := 0; c < conc; c++ {
		r := <-results
		if r.err != nil {
			return 0, fmt.Errorf("raw put records: %w", r.err)
		}
		total += r.n
	}
	return float64(total) / d.Seconds(), nil
}

// peakRSS returns a process's peak resident set (VmHWM) in MB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// startGateway starts the gateway binary on a port the kernel picks,
// writing to stream with the write key "bench", reads from its log where
// it listens, and waits until it is ready. Its log level is info whatever
// env says: the gateway logs little at info, and the address is there.
func startGateway(bin string, s *devstack.Stack, stream string, env ...string) (*exec.Cmd, string, error) {
	gw := exec.Command(bin)
	gw.Env = append(append(append(s.Endpoints().ChildEnv(), "KINESIS_STREAM="+stream,
		"GATEWAY_METRICS_ADDR=127.0.0.1:0", "GATEWAY_WRITE_KEYS=bench=bench"), env...), "GATEWAY_ADDR=127.0.0.1:0", "LOG_LEVEL=info")
	out, err := gw.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	gw.Stderr = gw.Stdout
	if err := gw.Start(); err != nil {
		return nil, "", err
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "gateway listening" {
				addrc <- line.Addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, out) // the pipe must never fill
	}()
	fail := func(err error) (*exec.Cmd, string, error) {
		_ = gw.Process.Kill()
		_ = gw.Wait()
		return nil, "", err
	}
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		return fail(errors.New("gateway did not log its address in 30 s"))
	}
	if err := waitUntil(30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		return fail(fmt.Errorf("gateway not ready: %w", err))
	}
	return gw, addr, nil
}
