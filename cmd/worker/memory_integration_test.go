//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/loadtest"
	"github.com/buildtelemetry/pipeline/internal/testkit"
)

// plainWorkerBin builds the worker without the race detector, whose
// shadow memory would hide what the worker itself holds.
func plainWorkerBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TEST_WORKER_BIN"); bin != "" {
		return bin // another build, to compare
	}
	return testkit.Binary(t, ".", false)
}

// vmHWM returns a process's peak resident set in MB.
func vmHWM(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestBacklogDrainedUnderMemoryBudget: 200,000 events wait on 8 shards,
// as after an outage; one worker drains them all within its memory
// budget. Decoding every shard's whole batch at once peaked at over a
// gigabyte; the shared budget keeps the peak near the budget.
func TestBacklogDrainedUnderMemoryBudget(t *testing.T) {
	const n = 200000
	e := newEnv(t, 8)
	if err := loadtest.PutBacklog(context.Background(), e.s.Kinesis(), e.enc, e.stream, n); err != nil {
		t.Fatal(err)
	}
	w := &worker{id: "mem", sink: filepath.Join(e.dir, "mem.ndjson"), logs: &testkit.Buffer{}, done: make(chan error, 1)}
	w.cmd = exec.Command(plainWorkerBin(t), "run")
	w.cmd.Env = append(e.s.Endpoints().ChildEnv(),
		"KINESIS_STREAM="+e.stream, "WORKER_APP="+e.app, "WORKER_ID=mem",
		"WORKER_HEALTH_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0",
		"DEADLETTER_BUCKET="+e.bucket, "SINK_FILE_PATH="+w.sink, "S3_BUCKET="+e.bucket, "S3_BUFFER_INTERVAL=2s",
		"WORKER_MEMORY_LIMIT=256Mi", "LOG_LEVEL=info")
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			t.Logf("worker logs:\n%s", tail(w.logs.String(), 30))
		}
	})
	start := time.Now()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("backlog-%d", i)
	}
	waitFor(t, "the backlog drained", 3*time.Minute, func() bool {
		got, _ := delivered(t, w)
		return len(got) >= n
	})
	took := time.Since(start)
	peak := vmHWM(t, w.cmd.Process.Pid)
	got, _ := delivered(t, w)
	for _, id := range ids {
		if got[id] == 0 {
			t.Fatalf("%s not delivered", id)
		}
	}
	t.Logf("%d events drained in %v (%.0f events/s), peak RSS %.1f MB", n, took.Round(time.Millisecond), float64(n)/took.Seconds(), peak)
	if peak > 256 {
		t.Errorf("peak RSS %.1f MB, want at most 256 MB (WORKER_MEMORY_LIMIT=256Mi)", peak)
	}
}
