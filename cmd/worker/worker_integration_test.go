//go:build integration

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// workerBin is the worker under test, built with -race once.
func workerBin(t *testing.T) string { return testkit.Binary(t, ".", true) }

// env is one test's stream, lease table and buckets.
type env struct {
	t      *testing.T
	s      *devstack.Stack
	stream string
	app    string
	bucket string
	dir    string
	enc    *event.RecordEncoder
}

func newEnv(t *testing.T, shards int32) *env {
	t.Helper()
	s := devstack.ForTest(t)
	ctx := context.Background()
	e := &env{t: t, s: s, stream: devstack.UniqueName(t, "w"), app: devstack.UniqueName(t, "app"), bucket: devstack.UniqueName(t, "dl"), dir: t.TempDir()}
	if err := s.CreateStream(ctx, e.stream, shards); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket(ctx, e.bucket); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.enc, err = event.NewRecordEncoder(); err != nil {
		t.Fatal(err)
	}
	return e
}

// worker is one worker process.
type worker struct {
	id   string
	cmd  *exec.Cmd
	sink string
	logs *testkit.Buffer
	done chan error
}

func (e *env) startWorker(id string, extra ...string) *worker {
	e.t.Helper()
	w := &worker{id: id, sink: filepath.Join(e.dir, id+".ndjson"), logs: &testkit.Buffer{}, done: make(chan error, 1)}
	w.cmd = exec.Command(workerBin(e.t), "run")
	w.cmd.Env = append(e.s.Endpoints().ChildEnv(),
		"KINESIS_STREAM="+e.stream, "WORKER_APP="+e.app, "WORKER_ID="+id,
		"WORKER_HEALTH_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0",
		"DEADLETTER_BUCKET="+e.bucket, "SINK_FILE_PATH="+w.sink, "WORKER_IDLE_TIME=250ms", "LOG_LEVEL=info")
	w.cmd.Env = append(w.cmd.Env, extra...)
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	if err := w.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	e.t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
		if e.t.Failed() {
			e.t.Logf("worker %s logs:\n%s", id, tail(w.logs.String(), 40))
		}
	})
	return w
}

// waitReady waits until w logged where its health server listens and
// answers /readyz: its first balance pass wrote its heartbeat, so the
// other workers count it in.
func (w *worker) waitReady(t *testing.T) {
	t.Helper()
	addr := testkit.LoggedField(t, w.logs, "worker started", "health_addr", 60*time.Second)
	testkit.WaitFor(t, "worker "+w.id+" ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// put writes n events, 10 per record, and returns their messageIds.
func (e *env) put(prefix string, n int) []string {
	e.t.Helper()
	var ids []string
	for i := 0; i < n; i += 5000 { // PutRecords takes 500 records
		got, err := e.putEvents(fmt.Sprintf("%s-%d", prefix, i), min(n-i, 5000))
		if err != nil {
			e.t.Fatalf("put records: %v", err)
		}
		ids = append(ids, got...)
	}
	return ids
}

// delivered reads the file sinks of the workers and counts each messageId.
func delivered(t *testing.T, workers ...*worker) (map[string]int, []string) {
	t.Helper()
	got := map[string]int{}
	var order []string
	for _, w := range workers {
		f, err := os.Open(w.sink)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev struct {
				MessageID string `json:"messageId"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.MessageID != "" {
				got[ev.MessageID]++
				order = append(order, ev.MessageID)
			}
		}
		f.Close()
	}
	return got, order
}

// waitFor is testkit.WaitFor, the name these tests grew up with.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	return testkit.WaitFor(t, what, timeout, cond)
}

func allDelivered(t *testing.T, ids []string, workers ...*worker) func() bool {
	return func() bool {
		got, _ := delivered(t, workers...)
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	}
}

// leases returns shard -> owner ("" when free) and shard -> checkpoint.
func (e *env) leases() (map[string]string, map[string]string) {
	owners, cps := map[string]string{}, map[string]string{}
	in := &dynamodb.ScanInput{TableName: aws.String(e.app), ConsistentRead: aws.Bool(true)}
	for {
		out, err := e.s.DynamoDB().Scan(context.Background(), in)
		if err != nil {
			return owners, cps // the table may not exist yet
		}
		for _, it := range out.Items {
			str := func(k string) string {
				if v, ok := it[k].(*ddbtypes.AttributeValueMemberS); ok {
					return v.Value
				}
				return ""
			}
			owners[str("ShardID")] = str("AssignedTo")
			cps[str("ShardID")] = str("Checkpoint")
		}
		if out.LastEvaluatedKey == nil {
			return owners, cps
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

func (e *env) ownedBy(n int, owners ...string) func() bool {
	return func() bool {
		got, cps := e.leases()
		count := 0
		for shard, o := range got {
			if cps[shard] == "SHARD_END" {
				continue
			}
			for _, want := range owners {
				if o == want {
					count++
				}
			}
		}
		return count == n
	}
}

// TestTwoWorkersSplitFailover: two workers on 8 shards split the leases
// and both process; after SIGKILL of one, the other takes its shards and
// every event is delivered at least once; after SIGTERM, the handover
// happens without waiting for the lease to expire.
func TestTwoWorkersSplitFailover(t *testing.T) {
	e := newEnv(t, 8)
	a, b := e.startWorker("wa"), e.startWorker("wb")
	cold := waitFor(t, "8 leases", 60*time.Second, e.ownedBy(8, "wa", "wb"))
	ids := e.put("first", 800)
	waitFor(t, "first events", 60*time.Second, allDelivered(t, ids, a, b))
	owners, _ := e.leases()
	perOwner := map[string]int{}
	for _, o := range owners {
		perOwner[o]++
	}
	ga, _ := delivered(t, a)
	gb, _ := delivered(t, b)
	if perOwner["wa"] == 0 || perOwner["wb"] == 0 || len(ga) == 0 || len(gb) == 0 {
		t.Fatalf("leases %v, delivered %d/%d: both workers must hold leases and process", perOwner, len(ga), len(gb))
	}
	t.Logf("cold start: all 8 shards leased in %v, split %v", cold.Round(time.Millisecond), perOwner)

	// SIGKILL a; b takes over after a's leases expire.
	a.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	more := e.put("second", 800)
	takeover := waitFor(t, "b to own all shards", 60*time.Second, e.ownedBy(8, "wb"))
	waitFor(t, "second events", 60*time.Second, allDelivered(t, more, a, b))
	t.Logf("SIGKILL: b owned every shard %v after the kill, all events delivered %v after", takeover.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	// SIGTERM b with c waiting: b releases its leases on the way out.
	c := e.startWorker("wc")
	c.waitReady(t)
	b.cmd.Process.Signal(syscall.SIGTERM)
	termed := time.Now()
	select {
	case err := <-b.done:
		if err != nil {
			t.Errorf("b exited with %v after SIGTERM", err)
		}
		b.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("b did not exit within 30 s of SIGTERM")
	}
	// b released its leases on the way out, so c's first acquisition
	// comes on its next shard-sync tick, well before the 8 s a lease takes
	// to expire; taking all 8 then takes one tick per shard.
	first := waitFor(t, "c to own a shard", 60*time.Second, func() bool {
		owners, _ := e.leases()
		for _, o := range owners {
			if o == "wc" {
				return true
			}
		}
		return false
	})
	if first >= 8*time.Second {
		t.Errorf("c took its first shard %v after b exited: the handover waited for lease expiry", first)
	}
	waitFor(t, "c to own all shards", 60*time.Second, e.ownedBy(8, "wc"))
	last := e.put("third", 400)
	waitFor(t, "third events", 60*time.Second, allDelivered(t, last, a, b, c))
	t.Logf("SIGTERM: c owned every shard %v after SIGTERM", time.Since(termed).Round(time.Millisecond))

	got, _ := delivered(t, a, b, c)
	dups := 0
	for _, id := range append(append(ids, more...), last...) {
		if got[id] == 0 {
			t.Errorf("%s never delivered", id)
		}
		dups += got[id] - 1
	}
	t.Logf("2000 events, %d duplicate deliveries (at least once)", dups)
}

// TestChildWaitsForParent: after a split, the children are processed only
// once the parent reached SHARD_END, and the closed parent is not leased
// again and again.
func TestChildWaitsForParent(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	before := e.put("parent", 300)
	desc, err := e.s.Kinesis().DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(e.stream)})
	if err != nil {
		t.Fatal(err)
	}
	parent := desc.StreamDescription.Shards[0]
	// Split before any worker reads the parent: its children are open
	// and hold data at once, the case the library gets wrong.
	if _, err := e.s.Kinesis().SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String(e.stream), ShardToSplit: parent.ShardId, NewStartingHashKey: aws.String("170141183460469231731687303715884105728"),
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream active", 10*time.Second, func() bool {
		d, err := e.s.Kinesis().DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(e.stream)})
		return err == nil && d.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive
	})
	after := e.put("child", 300)
	w := e.startWorker("wa")
	waitFor(t, "all events", 60*time.Second, allDelivered(t, append(before, after...), w))
	_, order := delivered(t, w)
	lastParent, firstChild := -1, len(order)
	for i, id := range order {
		if strings.HasPrefix(id, "parent-") {
			lastParent = i
		} else if i < firstChild {
			firstChild = i
		}
	}
	if lastParent > firstChild {
		t.Errorf("a child event was delivered at %d, before the parent's last event at %d", firstChild, lastParent)
	}
	time.Sleep(3 * time.Second) // several shard-sync ticks
	_, cps := e.leases()
	if cps[aws.ToString(parent.ShardId)] != "SHARD_END" {
		t.Errorf("parent checkpoint %q, want SHARD_END", cps[aws.ToString(parent.ShardId)])
	}
	if n := strings.Count(w.logs.String(), "shard end checkpointed"); n != 1 {
		t.Errorf("shard end checkpointed %d times, want once: the closed shard loops", n)
	}
}

// TestSinkDownParkedAndReplayed: a sink that is down (its directory does
// not exist) is parked while the shard moves on; the replay command then
// re-drives every parked event into it.
func TestSinkDownParkedAndReplayed(t *testing.T) {
	e := newEnv(t, 2)
	missing := filepath.Join(e.dir, "not-yet")
	sink := filepath.Join(missing, "events.ndjson")
	w := e.startWorker("wa", "SINK_FILE_PATH="+sink, "WORKER_BREAKER_FAILURES=2", "WORKER_RETRY_BUDGET=2s")
	w.sink = sink
	ids := e.put("down", 200)
	waitFor(t, "checkpoints past the parked events", 60*time.Second, func() bool {
		_, cps := e.leases()
		n := 0
		for _, cp := range cps {
			if cp != "" {
				n++
			}
		}
		return n == 2 && strings.Contains(w.logs.String(), "parked records")
	})
	if _, err := os.Stat(sink); err == nil {
		t.Fatal("the sink file exists although its directory did not")
	}
	if err := os.MkdirAll(missing, 0o755); err != nil {
		t.Fatal(err)
	}
	// -list shows the letters and replays nothing.
	list := exec.Command(workerBin(t), "replay", "-sink", "file", "-list")
	list.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "DEADLETTER_BUCKET="+e.bucket, "SINK_FILE_PATH="+sink)
	out, err := list.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deadletter/file/") || strings.Contains(string(out), " 0 letters") {
		t.Fatalf("replay -list: %v\n%s", err, out)
	}
	if _, err := os.Stat(sink); err == nil {
		t.Fatal("replay -list delivered events")
	}
	cmd := exec.Command(workerBin(t), "replay", "-sink", "file")
	cmd.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "DEADLETTER_BUCKET="+e.bucket, "SINK_FILE_PATH="+sink)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	t.Logf("replay: %s", strings.TrimSpace(string(out)))
	got, _ := delivered(t, w)
	for _, id := range ids {
		if got[id] == 0 {
			t.Errorf("%s lost", id)
		}
	}
	// A second replay finds nothing: parked data was removed only after
	// it was re-driven.
	cmd = exec.Command(workerBin(t), "replay", "-sink", "file")
	cmd.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "DEADLETTER_BUCKET="+e.bucket, "SINK_FILE_PATH="+sink)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second replay: %v\n%s", err, out)
	}
	again, _ := delivered(t, w)
	if len(again) != len(got) {
		t.Errorf("second replay delivered %d new events", len(again)-len(got))
	}
}
