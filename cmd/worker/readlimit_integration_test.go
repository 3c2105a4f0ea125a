//go:build integration

package main

import (
	"os/exec"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
)

// TestWorkerWithinReadLimits: a worker draining a backlog while `worker
// tail -f` follows the same shard stays within the shard's 5 reads a
// second together with it: the limits layer in front throttles none of
// their GetRecords calls, and every event is delivered. Before the
// worker spaced its reads, the library called again as soon as a batch
// was processed and took every read the shard had.
func TestWorkerWithinReadLimits(t *testing.T) {
	e := newEnv(t, 1)
	ids := e.put("read", 3000)
	lim, err := limits.Start(e.s.Endpoints().Kinesis, e.s.Endpoints().DynamoDB, limits.AWS())
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	via := "AWS_ENDPOINT_URL_KINESIS=" + lim.KinesisURL

	tail := exec.Command(workerBin(t), "tail", "-f")
	tail.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, via)
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { tail.Process.Kill(); tail.Wait() }()
	// Small batches, so that draining takes many calls.
	w := e.startWorker("rl", via, "WORKER_MAX_RECORDS=10", "WORKER_IDLE_TIME=100ms")
	took := waitFor(t, "every event", 2*time.Minute, allDelivered(t, ids, w))
	time.Sleep(2 * time.Second) // both readers at the tip
	st := lim.Stats()
	t.Logf("drained %d events in %v with %d GetRecords calls, at most %d a second; %d throttled",
		len(ids), took.Round(time.Millisecond), st.ReadCalls, st.MaxReadCallsPerSecond, st.ReadThrottled)
	if st.ReadCalls < 30 {
		t.Fatalf("only %d GetRecords calls: the test proved nothing", st.ReadCalls)
	}
	if st.ReadThrottled > 0 {
		t.Errorf("%d GetRecords calls throttled: worker and tail together went over the shard's 5 a second", st.ReadThrottled)
	}
}
