package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// failoverRig runs worker processes, with default lease settings, against
// a private emulator stack.
type failoverRig struct {
	s    *devstack.Stack
	bin  string
	dir  string
	enc  *event.RecordEncoder
	seqn int
}

// benchFailover measures, with the worker's default settings on an
// 8-shard stream and two workers: the time to lease every shard from
// cold; after SIGKILL of one worker, the time until an event written to
// each of its shards is processed by the other; the same after SIGTERM.
func benchFailover(ctx context.Context, o options) ([]figure, error) {
	r, closeRig, err := newRig(ctx, "bench-failover")
	if err != nil {
		return nil, err
	}
	defer closeRig()

	cold, kill, err := r.scenario(ctx, "kill", syscall.SIGKILL)
	if err != nil {
		return nil, err
	}
	_, term, err := r.scenario(ctx, "term", syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	return []figure{
		{"cold_lease_all_s", cold.Seconds(), "s"},
		{"failover_sigkill_s", kill.Seconds(), "s"},
		{"failover_sigterm_s", term.Seconds(), "s"},
	}, nil
}

// newRig builds the worker binary into a temporary directory and starts
// a private emulator stack; close stops the stack and removes the
// directory. BENCH_WORKER_BIN names another build of the worker to run
// instead, to compare two builds.
func newRig(ctx context.Context, name string) (r *failoverRig, closeRig func(), err error) {
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		return nil, nil, err
	}
	bin := filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/worker").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("build worker: %v\n%s", err, out)
	}
	if other := os.Getenv("BENCH_WORKER_BIN"); other != "" {
		bin = other
	}
	s, err := devstack.Start(ctx, devstack.Config{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	enc, err := event.NewRecordEncoder()
	if err != nil {
		s.Close()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return &failoverRig{s: s, bin: bin, dir: dir, enc: enc}, func() { s.Close(); os.RemoveAll(dir) }, nil
}

type benchWorker struct {
	id, sink string
	cmd      *exec.Cmd
	done     chan error
}

func (r *failoverRig) start(name, stream, app, bucket, id string) (*benchWorker, error) {
	w := &benchWorker{id: id, sink: filepath.Join(r.dir, name+"-"+id+".ndjson"), done: make(chan error, 1)}
	logf, err := os.Create(filepath.Join(r.dir, name+"-"+id+".log"))
	if err != nil {
		return nil, err
	}
	w.cmd = exec.Command(r.bin, "run")
	w.cmd.Env = append(r.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+stream, "WORKER_APP="+app, "WORKER_ID="+id,
		"WORKER_HEALTH_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0", "DEADLETTER_BUCKET="+bucket, "SINK_FILE_PATH="+w.sink)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { w.done <- w.cmd.Wait(); logf.Close() }()
	return w, nil
}

func (w *benchWorker) stop() {
	_ = w.cmd.Process.Kill()
	<-w.done
}

// scenario starts two workers on a fresh 8-shard stream, waits until they
// hold every lease (the cold figure), stops one with sig, writes one
// marker event to each of its shards and waits until the other worker
// delivered them all (the failover figure).
func (r *failoverRig) scenario(ctx context.Context, name string, sig syscall.Signal) (cold, failover time.Duration, err error) {
	stream, app, bucket := "bench-"+name, "bench-app-"+name, "bench-dl-"+name
	if err := r.s.CreateStream(ctx, stream, 8); err != nil {
		return 0, 0, err
	}
	if err := r.s.CreateBucket(ctx, bucket); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	a, err := r.start(name, stream, app, bucket, "a")
	if err != nil {
		return 0, 0, err
	}
	defer a.stop()
	b, err := r.start(name, stream, app, bucket, "b")
	if err != nil {
		return 0, 0, err
	}
	defer b.stop()
	var owners map[string]string
	if err := waitUntil(60*time.Second, func() bool {
		owners = r.owners(ctx, app)
		held := 0
		for _, o := range owners {
			if o == "a" || o == "b" {
				held++
			}
		}
		return held == 8
	}); err != nil {
		return 0, 0, fmt.Errorf("%s: leases: %w", name, err)
	}
	cold = time.Since(start)
	var victim []string
	for shard, o := range owners {
		if o == "a" {
			victim = append(victim, shard)
		}
	}
	if len(victim) == 0 {
		return cold, 0, fmt.Errorf("%s: worker a holds no lease", name)
	}
	if err := a.cmd.Process.Signal(sig); err != nil {
		return 0, 0, err
	}
	stopped := time.Now()
	markers, err := r.markers(ctx, stream, victim)
	if err != nil {
		return 0, 0, err
	}
	if err := waitUntil(90*time.Second, func() bool { return delivered(b.sink, markers) }); err != nil {
		return 0, 0, fmt.Errorf("%s: markers not processed by the survivor: %w", name, err)
	}
	return cold, time.Since(stopped), nil
}

// markers writes one event to each shard, addressed by its hash range.
func (r *failoverRig) markers(ctx context.Context, stream string, shards []string) ([]string, error) {
	out, err := r.s.Kinesis().ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, sh := range out.Shards {
		want := false
		for _, v := range shards {
			want = want || v == aws.ToString(sh.ShardId)
		}
		if !want {
			continue
		}
		r.seqn++
		id := fmt.Sprintf("marker-%s-%d", aws.ToString(sh.ShardId), r.seqn)
		data := r.enc.Encode(nil, [][]byte{fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"marker","userId":"u","timestamp":"2026-11-27T12:00:00.000Z","receivedAt":"2026-11-27T12:00:00.000Z"}`, id)})
		if _, err := r.s.Kinesis().PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), Data: data,
			PartitionKey: aws.String(id), ExplicitHashKey: sh.HashKeyRange.StartingHashKey}); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (r *failoverRig) owners(ctx context.Context, table string) map[string]string {
	return r.column(ctx, table, "AssignedTo")
}

// checkpoints returns each shard's checkpoint in the lease table.
func (r *failoverRig) checkpoints(ctx context.Context, table string) map[string]string {
	return r.column(ctx, table, "Checkpoint")
}

func (r *failoverRig) column(ctx context.Context, table, attr string) map[string]string {
	out := map[string]string{}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for {
		res, err := r.s.DynamoDB().Scan(ctx, in)
		if err != nil {
			return out
		}
		for _, it := range res.Items {
			id, _ := it["ShardID"].(*ddbtypes.AttributeValueMemberS)
			owner, _ := it[attr].(*ddbtypes.AttributeValueMemberS)
			if id != nil && owner != nil {
				out[id.Value] = owner.Value
			}
		}
		if res.LastEvaluatedKey == nil {
			return out
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
}

func delivered(path string, ids []string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), "marker-") {
			continue
		}
		var e struct {
			MessageID string `json:"messageId"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			seen[e.MessageID] = true
		}
	}
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}

func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
