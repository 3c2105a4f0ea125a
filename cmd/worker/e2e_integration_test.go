//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/klauspost/compress/gzip"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/testkit"
)

// segmentServer stands in for Segment's /v1/batch: Basic auth with the
// write key, and an outage switch.
type segmentServer struct {
	key  string
	mu   sync.Mutex
	down bool
	got  map[string]int
	srv  *httptest.Server
}

func newSegmentServer(t *testing.T, key string) *segmentServer {
	s := &segmentServer{key: key, got: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down := s.down
		s.mu.Unlock()
		if down {
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path != "/v1/batch" || r.Header.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var body struct {
			Batch []struct {
				MessageID string `json:"messageId"`
			} `json:"batch"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, e := range body.Batch {
			s.got[e.MessageID]++
		}
		s.mu.Unlock()
		w.Write([]byte(`{"success":true}`))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *segmentServer) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *segmentServer) received() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

// startGateway runs the gateway binary on e's stream with the write keys
// given (key=source,...), waits until it is ready and returns its address
// and its output; the test's cleanup stops it.
func startGateway(t *testing.T, e *env, keys string) (string, *testkit.Buffer) {
	t.Helper()
	gw := exec.Command(testkit.Binary(t, "../gateway", true))
	gw.Env = append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "GATEWAY_ADDR=127.0.0.1:0",
		"GATEWAY_METRICS_ADDR=127.0.0.1:0", "GATEWAY_WRITE_KEYS="+keys)
	logs := &testkit.Buffer{}
	gw.Stdout, gw.Stderr = logs, logs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = gw.Process.Kill()
		_ = gw.Wait()
		if t.Failed() {
			t.Logf("gateway logs:\n%s", tail(logs.String(), 20))
		}
	})
	addr := testkit.LoggedField(t, logs, "gateway listening", "addr", 30*time.Second)
	waitFor(t, "gateway ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addr, logs
}

// TestSegmentOutageEndToEnd: gateway → Kinesis → worker. Segment is down
// for a few seconds: its breaker opens, the other sinks keep receiving,
// and after the outage every event reaches Segment, directly or re-driven
// by the worker from the dead letters, with no replay command run.
func TestSegmentOutageEndToEnd(t *testing.T) {
	e := newEnv(t, 4)
	seg := newSegmentServer(t, "seg-key")
	segEnv := []string{"SEGMENT_WRITE_KEY=seg-key", "SEGMENT_ENDPOINT=" + seg.srv.URL,
		"WORKER_BREAKER_FAILURES=3", "WORKER_BREAKER_OPEN_TIMEOUT=2s", "WORKER_RETRY_BUDGET=3s", "WORKER_REDRIVE_INTERVAL=1s"}
	counts := devstack.UniqueName(t, "counts")
	w := e.startWorker("wa", append(segEnv, "S3_BUCKET="+e.bucket, "S3_BUFFER_INTERVAL=1s", "DYNAMODB_COUNTS_TABLE="+counts)...)

	addr, _ := startGateway(t, e, "gw-key=e2e")

	var acked []string
	send := func(batch int) {
		var items []string
		var ids []string
		for j := 0; j < 10; j++ {
			id := fmt.Sprintf("e2e-%d-%d", batch, j)
			ids = append(ids, id)
			items = append(items, fmt.Sprintf(`{"type":"track","messageId":%q,"userId":"buildbot_user","event":"build:ci_build_process_completed","properties":{"buildVersion":"29.%d.0"}}`, id, j))
		}
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/batch", strings.NewReader(`{"batch":[`+strings.Join(items, ",")+`]}`))
		req.SetBasicAuth("gw-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			acked = append(acked, ids...)
		}
	}
	for i := 0; i < 10; i++ {
		send(i)
	}
	seg.setDown(true)
	for i := 10; i < 40; i++ {
		send(i)
		time.Sleep(100 * time.Millisecond)
	}
	// The other sinks keep receiving during the outage.
	waitFor(t, "file sink to receive every event during the outage", 60*time.Second, allDelivered(t, acked, w))
	waitFor(t, "S3 objects to hold every event during the outage", 60*time.Second, func() bool {
		got := s3Events(t, e)
		for _, id := range acked {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	waitFor(t, "DynamoDB counts to cover every event during the outage", 60*time.Second, func() bool {
		return countedBuilds(t, e, counts) == len(acked)
	})
	waitFor(t, "segment breaker to open", 30*time.Second, func() bool {
		return strings.Contains(w.logs.String(), `"to":"open"`)
	})
	seg.setDown(false)
	// Once a half-open probe succeeds the breaker closes, and new events
	// go straight to Segment again.
	// The probe needs traffic: keep sending until the breaker closed.
	closedBefore := strings.Count(w.logs.String(), `"to":"closed"`)
	batch := 40
	waitFor(t, "segment breaker to close after the outage", 60*time.Second, func() bool {
		send(batch)
		batch++
		time.Sleep(100 * time.Millisecond)
		return strings.Count(w.logs.String(), `"to":"closed"`) > closedBefore
	})
	after := len(acked)
	for i := 0; i < 10; i++ {
		send(batch + i)
	}
	waitFor(t, "file sink", 60*time.Second, allDelivered(t, acked, w))
	waitFor(t, "events after the outage to reach Segment directly", 60*time.Second, func() bool {
		got := seg.received()
		for _, id := range acked[after:] {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})

	// What was parked during the outage reaches Segment by itself: the
	// worker re-drives its shards' transient letters once the breaker
	// closed, without anyone running `worker replay`.
	redrive := waitFor(t, "parked events to reach Segment without a replay", 60*time.Second, func() bool {
		got := seg.received()
		for _, id := range acked {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	if !strings.Contains(w.logs.String(), "re-drove parked events") {
		t.Error("the worker logged no re-drive")
	}
	// Each letter was deleted once re-driven: a replay finds nothing.
	var out []byte
	waitFor(t, "every letter re-driven and deleted", 30*time.Second, func() bool {
		cmd := exec.Command(workerBin(t), "replay", "-sink", "segment")
		cmd.Env = append(e.s.Endpoints().ChildEnv(), append(segEnv, "KINESIS_STREAM="+e.stream, "DEADLETTER_BUCKET="+e.bucket)...)
		var err error
		out, err = cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("replay: %v\n%s", err, out)
		}
		return strings.Contains(string(out), "replayed 0 letters")
	})
	got := seg.received()
	t.Logf("parked events reached Segment %v after the breaker closed", redrive.Round(time.Millisecond))
	t.Logf("%d events acknowledged, all reached Segment (%d distinct); replay: %s", len(acked), len(got), strings.TrimSpace(lastLine(string(out))))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// s3Events counts messageIds in the S3 sink's objects.
func s3Events(t *testing.T, e *env) map[string]int {
	t.Helper()
	got := map[string]int{}
	s3Lines(t, e, "events/", func(line []byte) {
		var ev struct {
			MessageID string `json:"messageId"`
		}
		if json.Unmarshal(line, &ev) == nil {
			got[ev.MessageID]++
		}
	})
	return got
}

// s3Lines calls fn with each line of every gzip NDJSON object under
// prefix in e's bucket; a listing that fails (the bucket not made yet)
// calls it with none.
func s3Lines(t *testing.T, e *env, prefix string, fn func(line []byte)) {
	t.Helper()
	ctx := context.Background()
	objs, err := e.s.ReadBucket(ctx, e.bucket, prefix, 0)
	if err != nil {
		return // not there yet; the caller polls
	}
	for key, o := range objs {
		zr, err := gzip.NewReader(bytes.NewReader(o.Body))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			fn(sc.Bytes())
		}
	}
}

// countedBuilds sums the buildVersion day counters.
func countedBuilds(t *testing.T, e *env, table string) int {
	t.Helper()
	out, err := e.s.DynamoDB().Query(context.Background(), &dynamodb.QueryInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":pk": &ddbtypes.AttributeValueMemberS{Value: "buildVersion"}},
	})
	if err != nil {
		return -1
	}
	total := 0
	for _, it := range out.Items {
		if n, ok := it["n"].(*ddbtypes.AttributeValueMemberN); ok {
			v, _ := strconv.Atoi(n.Value)
			total += v
		}
	}
	return total
}
