//go:build integration

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
)

// TestCountsExactUnderThrottling: every event of the stream updates the
// same few counter items, the hot-key case, in windows of 10 events so
// that there are many updates. With DynamoDB's per-item limit scaled down
// to 2 write units a second, the counters sink is throttled again and
// again; its retries (the SDK's, then the processor's within the default
// retry budget) absorb it, the shard reaches the tip, and the counts equal
// the events exactly, and still do after a replay of anything parked.
func TestCountsExactUnderThrottling(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.put("hot", 2000)
	lim, err := limits.Start(e.s.Endpoints().Kinesis, e.s.Endpoints().DynamoDB, limits.AWS().Scaled(0.002))
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	table := devstack.UniqueName(t, "counts")
	sinkEnv := []string{"AWS_ENDPOINT_URL_DYNAMODB=" + lim.DynamoDBURL, "DYNAMODB_COUNTS_TABLE=" + table, "DYNAMODB_COUNT_EVENTS=*",
		"DYNAMODB_COUNT_FLUSH_EVENTS=10", "WORKER_MAX_RECORDS=2"}
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

// tableOutage is a reverse proxy to DynamoDB that, while down, answers
// 500 to every call naming one table (the counters), as an outage of that
// table would look, and passes the rest (the lease table) through.
type tableOutage struct {
	table  string
	down   atomic.Bool
	failed atomic.Int64
	proxy  *httputil.ReverseProxy
}

func (o *tableOutage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if o.down.Load() && bytes.Contains(body, []byte(`"TableName":"`+o.table+`"`)) {
		o.failed.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected outage"}`))
		return
	}
	o.proxy.ServeHTTP(w, r)
}

// TestCountsExactAfterOutage: the counters' table fails while events
// flow, so their ranges are parked (the other sinks go on), and the
// worker is killed with SIGKILL during the outage, its parked ranges not
// yet noted in the items. The next worker delivers those ranges to the
// counters live once DynamoDB is back, notes what it parks itself, and
// re-drives its letters by itself: the counts equal the events exactly,
// with no replay by hand, and a replay afterwards adds nothing (the
// killed worker's letters have no holes).
func TestCountsExactAfterOutage(t *testing.T) {
	e := newEnv(t, 2)
	table := devstack.UniqueName(t, "counts")
	target, err := url.Parse(e.s.Endpoints().DynamoDB)
	if err != nil {
		t.Fatal(err)
	}
	out := &tableOutage{table: table, proxy: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(out)
	defer srv.Close()
	sinkEnv := []string{"AWS_ENDPOINT_URL_DYNAMODB=" + srv.URL, "DYNAMODB_COUNTS_TABLE=" + table, "DYNAMODB_COUNT_EVENTS=*",
		"DYNAMODB_COUNT_FLUSH_INTERVAL=200ms", "WORKER_BREAKER_FAILURES=2", "WORKER_BREAKER_OPEN_TIMEOUT=1s", "WORKER_REDRIVE_INTERVAL=1s"}

	a := e.startWorker("oa", sinkEnv...)
	ids := e.put("pre", 500)
	waitFor(t, "the first events counted", time.Minute, func() bool { return countedBuilds(t, e, table) == len(ids) })

	// Events keep coming during the outage, in small batches: a window
	// that fails on an idle tick waits for the next real Write to fail
	// and be parked.
	out.down.Store(true)
	for i := range 10 {
		ids = append(ids, e.put(fmt.Sprintf("during%d", i), 100)...)
		time.Sleep(300 * time.Millisecond)
	}
	waitFor(t, "every event in the file sink during the outage", time.Minute, allDelivered(t, ids, a))
	var b *worker
	defer func() {
		if !t.Failed() {
			return
		}
		t.Logf("%d calls failed by the outage; counted %d", out.failed.Load(), countedBuilds(t, e, table))
		for _, w := range []*worker{a, b} {
			if w == nil {
				continue
			}
			for line := range strings.SplitSeq(w.logs.String(), "\n") {
				if !strings.HasPrefix(line, "SDK ") && strings.Contains(line, "dynamodb") && !strings.Contains(line, `"level":"info"`) {
					t.Log(w.id, line[:min(len(line), 400)])
				}
			}
		}
	}()
	waitFor(t, "counter ranges parked", time.Minute, func() bool {
		return logLines(a.logs.String(), "parked records", "dynamodb") > 0
	})
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	a.done <- nil // for the cleanup's wait

	b = e.startWorker("ob", sinkEnv...)
	for i := range 6 { // the outage goes on under the new worker
		ids = append(ids, e.put(fmt.Sprintf("after-kill%d", i), 50)...)
		time.Sleep(500 * time.Millisecond)
	}
	out.down.Store(false)
	ids = append(ids, e.put("after", 200)...)
	waitFor(t, "the counts complete without a replay", 3*time.Minute, func() bool { return countedBuilds(t, e, table) >= len(ids) })
	direct := countedBuilds(t, e, table)

	replay := exec.Command(workerBin(t), "replay", "-sink", "dynamodb")
	replay.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "DEADLETTER_BUCKET="+e.bucket,
		"DYNAMODB_COUNTS_TABLE="+table, "DYNAMODB_COUNT_EVENTS=*")
	res, err := replay.CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, res)
	}
	got := countedBuilds(t, e, table)
	logs := b.logs.String()
	t.Logf("%d calls failed by the outage; counted %d of %d without a replay, %d after one (%s); the new worker parked %d counter ranges and re-drove %d times",
		out.failed.Load(), direct, len(ids), got, strings.TrimSpace(lastLine(string(res))),
		logLines(logs, "parked records", "dynamodb"), logLines(logs, "re-drove parked events", "dynamodb"))
	if out.failed.Load() == 0 {
		t.Fatal("no call failed: the outage proved nothing")
	}
	if direct != len(ids) || got != len(ids) {
		t.Errorf("counted %d, %d after a replay; want exactly %d both times", direct, got, len(ids))
	}
}

// logLines counts the JSON log lines with message msg about sink.
func logLines(logs, msg, sink string) int {
	n := 0
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"sink":"`+sink+`"`) {
			n++
		}
	}
	return n
}
