package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/buildtelemetry/pipeline/internal/loadtest"
)

// benchScaling measures the worker as a fleet: one worker draining a
// 200,000-event backlog on 8 shards (peak memory and drain rate), a
// second worker joining one that holds all 8 shards, and a rolling
// restart of 3 workers on 12 shards (seconds until every worker holds its
// share), with the events delivered twice across those handoffs.
func benchScaling(ctx context.Context, o options) ([]figure, error) {
	r, closeRig, err := newRig(ctx, "bench-scaling")
	if err != nil {
		return nil, err
	}
	defer closeRig()

	// Figures are returned as they are measured: a worker that cannot
	// balance (BENCH_WORKER_BIN of an older build) still shows its
	// backlog figures.
	var figs []figure
	rss, rate, err := r.backlog(ctx, 200000)
	if err != nil {
		return figs, err
	}
	figs = append(figs, figure{"worker_backlog_peak_rss_mb", rss, "MB"}, figure{"worker_backlog_drain_events_per_s", rate, "events/s"})
	join, dupJoin, err := r.join(ctx)
	if err != nil {
		return figs, err
	}
	figs = append(figs, figure{"rebalance_join_s", join.Seconds(), "s"})
	rolling, dupRolling, err := r.rolling(ctx)
	if err != nil {
		return figs, err
	}
	return append(figs, figure{"rebalance_rolling_s", rolling.Seconds(), "s"},
		figure{"handoff_duplicate_events", float64(dupJoin + dupRolling), "events"}), nil
}

// backlog writes n Netlify-shaped events to an 8-shard stream, packed as
// the gateway packs them under load (up to 256 KiB of events per
// record), and then lets one worker with the S3, DynamoDB and file sinks
// drain them.
func (r *failoverRig) backlog(ctx context.Context, n int) (peakMB, eventsPerS float64, err error) {
	const stream, app, bucket = "bench-backlog", "bench-backlog", "bench-backlog"
	if err := r.s.CreateStream(ctx, stream, 8); err != nil {
		return 0, 0, err
	}
	if err := r.s.CreateBucket(ctx, bucket); err != nil {
		return 0, 0, err
	}
	if err := loadtest.PutBacklog(ctx, r.s.Kinesis(), r.enc, stream, n); err != nil {
		return 0, 0, err
	}
	took, rss, err := r.drain(ctx, r.bin, stream, app, "DEADLETTER_BUCKET="+bucket,
		"S3_BUCKET="+bucket, "S3_BUFFER_INTERVAL=2s", "DYNAMODB_COUNTS_TABLE=bench-backlog-counts",
		"SINK_FILE_PATH="+filepath.Join(r.dir, "backlog.ndjson"))
	if err != nil {
		return 0, 0, fmt.Errorf("backlog: %w", err)
	}
	return rss, float64(n) / took.Seconds(), nil
}

// markers writes small events to a stream in the background until
// stopped, and returns their IDs.
type markers struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	ids  []string
	err  error
}

func (r *failoverRig) produce(ctx context.Context, stream, prefix string) *markers {
	m := &markers{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for tick := 0; ; tick++ {
			select {
			case <-m.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var evs [][]byte
			var ids []string
			for j := 0; j < 10; j++ {
				id := fmt.Sprintf("marker-%s-%d-%d", prefix, tick, j)
				ids = append(ids, id)
				evs = append(evs, fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"marker","userId":"u","timestamp":"2026-11-27T12:00:00.000Z","receivedAt":"2026-11-27T12:00:00.000Z"}`, id))
			}
			_, err := r.s.Kinesis().PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), Data: r.enc.Encode(nil, evs), PartitionKey: aws.String(ids[0])})
			m.mu.Lock()
			if err != nil {
				m.err = err
			} else {
				m.ids = append(m.ids, ids...)
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *markers) halt() ([]string, error) {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids, m.err
}

// fair waits until the named workers hold floor or ceil of shards over
// them, all shards in all.
func (r *failoverRig) fair(ctx context.Context, app string, shards int, ids ...string) error {
	return waitUntil(2*time.Minute, func() bool {
		counts := map[string]int{}
		for _, o := range r.owners(ctx, app) {
			counts[o]++
		}
		lo, hi := shards/len(ids), (shards+len(ids)-1)/len(ids)
		total := 0
		for _, id := range ids {
			if counts[id] < lo || counts[id] > hi {
				return false
			}
			total += counts[id]
		}
		return total == shards
	})
}

// duplicates waits until every id is in the workers' file sinks and
// returns how many deliveries beyond the first there were.
func duplicates(ids []string, workers []*benchWorker) (int, error) {
	var dups int
	err := waitUntil(time.Minute, func() bool {
		seen := map[string]int{}
		for _, w := range workers {
			countIDs(w.sink, seen)
		}
		dups = 0
		for _, id := range ids {
			if seen[id] == 0 {
				return false
			}
			dups += seen[id] - 1
		}
		return true
	})
	return dups, err
}

func countIDs(path string, seen map[string]int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			MessageID string `json:"messageId"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			seen[e.MessageID]++
		}
	}
}

func (w *benchWorker) sigterm() error {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		w.done <- nil
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("worker %s did not exit within a minute of SIGTERM", w.id)
	}
}

// join: one worker holds all 8 shards, a second starts; seconds from its
// start until both hold 4, with events flowing throughout.
func (r *failoverRig) join(ctx context.Context) (time.Duration, int, error) {
	const stream, app, bucket = "bench-join", "bench-join", "bench-join"
	if err := r.s.CreateStream(ctx, stream, 8); err != nil {
		return 0, 0, err
	}
	if err := r.s.CreateBucket(ctx, bucket); err != nil {
		return 0, 0, err
	}
	a, err := r.start("join", stream, app, bucket, "a")
	if err != nil {
		return 0, 0, err
	}
	defer a.stop()
	if err := r.fair(ctx, app, 8, "a"); err != nil {
		return 0, 0, fmt.Errorf("join: a alone: %w", err)
	}
	m := r.produce(ctx, stream, "join")
	start := time.Now()
	b, err := r.start("join", stream, app, bucket, "b")
	if err != nil {
		return 0, 0, err
	}
	defer b.stop()
	if err := r.fair(ctx, app, 8, "a", "b"); err != nil {
		return 0, 0, fmt.Errorf("join: 4/4: %w", err)
	}
	took := time.Since(start)
	time.Sleep(time.Second) // events across the settled split
	ids, err := m.halt()
	if err != nil {
		return 0, 0, err
	}
	dups, err := duplicates(ids, []*benchWorker{a, b})
	return took, dups, err
}

// rolling: three workers on 12 shards are restarted one by one (SIGTERM,
// exit, replacement); seconds from the last replacement's start until
// each holds 4.
func (r *failoverRig) rolling(ctx context.Context) (time.Duration, int, error) {
	const stream, app, bucket = "bench-rolling", "bench-rolling", "bench-rolling"
	if err := r.s.CreateStream(ctx, stream, 12); err != nil {
		return 0, 0, err
	}
	if err := r.s.CreateBucket(ctx, bucket); err != nil {
		return 0, 0, err
	}
	var live, all []*benchWorker
	defer func() {
		for _, w := range all {
			w.stop()
		}
	}()
	for _, id := range []string{"r1", "r2", "r3"} {
		w, err := r.start("rolling", stream, app, bucket, id)
		if err != nil {
			return 0, 0, err
		}
		live, all = append(live, w), append(all, w)
	}
	if err := r.fair(ctx, app, 12, "r1", "r2", "r3"); err != nil {
		return 0, 0, fmt.Errorf("rolling: 4/4/4: %w", err)
	}
	m := r.produce(ctx, stream, "rolling")
	var start time.Time
	for i := range live {
		if err := live[i].sigterm(); err != nil {
			return 0, 0, err
		}
		start = time.Now()
		w, err := r.start("rolling", stream, app, bucket, live[i].id+"n")
		if err != nil {
			return 0, 0, err
		}
		live[i], all = w, append(all, w)
		if err := r.fair(ctx, app, 12, live[0].id, live[1].id, live[2].id); err != nil {
			return 0, 0, fmt.Errorf("rolling: step %d: %w", i+1, err)
		}
	}
	took := time.Since(start)
	ids, err := m.halt()
	if err != nil {
		return 0, 0, err
	}
	dups, err := duplicates(ids, all)
	return took, dups, err
}
