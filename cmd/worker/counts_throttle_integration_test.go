//go:build integration

package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
)

// TestCountsExactUnderThrottling: every event of the stream updates the
// same few counter items, the hot-key case. With DynamoDB's per-item
// limit scaled down to 4 write units a second, the counters sink is
// throttled again and again; its retries (the SDK's, then the
// processor's within the default retry budget) absorb it, the shard
// reaches the tip, and the counts equal the events exactly, after a
// replay of anything parked. (A batch parked after DynamoDB applied it
// would be counted twice by that replay: a known gap, not re-driven
// automatically.)
func TestCountsExactUnderThrottling(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.put("hot", 2000)
	lim, err := limits.Start(e.s.Endpoints().Kinesis, e.s.Endpoints().DynamoDB, limits.AWS().Scaled(0.004))
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	table := devstack.UniqueName(t, "counts")
	sinkEnv := []string{"AWS_ENDPOINT_URL_DYNAMODB=" + lim.DynamoDBURL, "DYNAMODB_COUNTS_TABLE=" + table, "DYNAMODB_COUNT_EVENTS=*",
		"WORKER_MAX_RECORDS=2"}
	w := e.startWorker("ct", sinkEnv...)
	start := time.Now()
	waitFor(t, "every event in the file sink", 2*time.Minute, allDelivered(t, ids, w))
	waitFor(t, "checkpoints at the tip", 2*time.Minute, func() bool {
		_, cps := e.leases()
		n := 0
		for shard, cp := range cps {
			if !strings.HasPrefix(shard, "worker/") && cp != "" {
				n++
			}
		}
		return n == 2
	})
	drained := time.Since(start)
	direct := countedBuilds(t, e, table)
	replay := exec.Command(workerBin(t), "replay", "-sink", "dynamodb")
	replay.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "DEADLETTER_BUCKET="+e.bucket,
		"DYNAMODB_COUNTS_TABLE="+table, "DYNAMODB_COUNT_EVENTS=*")
	out, err := replay.CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	st := lim.Stats()
	got := countedBuilds(t, e, table)
	t.Logf("drained in %v; %d counter writes passed, %d throttled; counted %d directly, %d after replay (%s)",
		drained.Round(time.Millisecond), st.DynamoDBWrites, st.DynamoDBThrottled, direct, got, strings.TrimSpace(lastLine(string(out))))
	if st.DynamoDBThrottled == 0 {
		t.Fatal("no write was throttled: the test proved nothing")
	}
	if got != len(ids) {
		t.Errorf("counted %d builds, want exactly %d", got, len(ids))
	}
}
