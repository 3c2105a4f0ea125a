//go:build integration

package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	kclcfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
	kclworker "github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
	kcllog "github.com/vmware/vmware-go-kcl-v2/logger"
	"go.uber.org/zap/zaptest"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/testkit"
	"github.com/buildtelemetry/pipeline/processor"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// testLease is the lease duration of the tests; the fake clock moves past
// it instead of the tests sleeping.
const testLease = 10 * time.Second

// env is one test's stream, lease table and clock.
type env struct {
	t      *testing.T
	s      *devstack.Stack
	stream string
	table  string
	clock  *testkit.Clock
}

// newEnv creates a stream with the given number of shards and a lease
// table (through a first worker's Init).
func newEnv(t *testing.T, shards int32) *env {
	t.Helper()
	s := devstack.ForTest(t)
	e := &env{
		t:      t,
		s:      s,
		stream: devstack.UniqueName(t, "chk"),
		table:  devstack.UniqueName(t, "lease"),
		clock:  testkit.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
	ctx := context.Background()
	if err := s.CreateStream(ctx, e.stream, shards); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Frees the emulator's account-wide shard limit for other tests.
		if err := s.DeleteStream(context.Background(), e.stream); err != nil {
			t.Error(err)
		}
	})
	if err := e.worker("init").Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return e
}

// worker returns a Checkpointer for worker id on the test's table, stream
// and clock.
func (e *env) worker(id string) *Checkpointer {
	e.t.Helper()
	c, err := New(e.s.DynamoDB(), e.s.Kinesis(), Config{
		Table:         e.table,
		Stream:        e.stream,
		WorkerID:      id,
		LeaseDuration: testLease,
		Now:           e.clock.Now,
	}, zaptest.NewLogger(e.t).Named(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// shardIDs returns the stream's shard IDs in order.
func (e *env) shardIDs() []string {
	e.t.Helper()
	out, err := e.s.Kinesis().ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(e.stream)})
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, sh := range out.Shards {
		ids = append(ids, aws.ToString(sh.ShardId))
	}
	return ids
}

// waitActive waits for the stream to be ACTIVE after a reshard.
func (e *env) waitActive() {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err := e.s.Kinesis().DescribeStreamSummary(context.Background(),
			&kinesis.DescribeStreamSummaryInput{StreamName: aws.String(e.stream)})
		if err != nil {
			e.t.Fatal(err)
		}
		if out.StreamDescriptionSummary.StreamStatus == kintypes.StreamStatusActive {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("stream %s not ACTIVE: %s", e.stream, out.StreamDescriptionSummary.StreamStatus)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// split splits shard in two halves of its hash range (the stream's first
// shard covers the whole range) and returns the two children.
func (e *env) split(shard string) (string, string) {
	e.t.Helper()
	before := e.shardIDs()
	_, err := e.s.Kinesis().SplitShard(context.Background(), &kinesis.SplitShardInput{
		StreamName:         aws.String(e.stream),
		ShardToSplit:       aws.String(shard),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728"), // 2^127
	})
	if err != nil {
		e.t.Fatalf("SplitShard: %v", err)
	}
	e.waitActive()
	added := newShards(before, e.shardIDs())
	if len(added) != 2 {
		e.t.Fatalf("split added shards %v, want 2", added)
	}
	return added[0], added[1]
}

// merge merges two adjacent shards and returns the child.
func (e *env) merge(a, b string) string {
	e.t.Helper()
	before := e.shardIDs()
	_, err := e.s.Kinesis().MergeShards(context.Background(), &kinesis.MergeShardsInput{
		StreamName:           aws.String(e.stream),
		ShardToMerge:         aws.String(a),
		AdjacentShardToMerge: aws.String(b),
	})
	if err != nil {
		e.t.Fatalf("MergeShards: %v", err)
	}
	e.waitActive()
	added := newShards(before, e.shardIDs())
	if len(added) != 1 {
		e.t.Fatalf("merge added shards %v, want 1", added)
	}
	return added[0]
}

func newShards(before, after []string) []string {
	seen := map[string]bool{}
	for _, id := range before {
		seen[id] = true
	}
	var added []string
	for _, id := range after {
		if !seen[id] {
			added = append(added, id)
		}
	}
	return added
}

// row reads shardID's row directly (consistent read), failing the test if
// it is missing.
func (e *env) row(shardID string) row {
	e.t.Helper()
	out, err := e.s.DynamoDB().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(e.table),
		Key:            key(shardID),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(out.Item) == 0 {
		e.t.Fatalf("no row for %s", shardID)
	}
	r, err := decodeRow(out.Item)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// status is the library's view of a shard, as its event loop builds it.
func status(id, parent string) *par.ShardStatus {
	return &par.ShardStatus{ID: id, ParentShardId: parent, Mux: &sync.RWMutex{}}
}

// acquire takes the lease for c's worker, as the library's event loop
// does (FetchCheckpoint, then GetLease), and fails the test if refused.
func acquire(t *testing.T, c *Checkpointer, sh *par.ShardStatus) {
	t.Helper()
	if err := c.FetchCheckpoint(sh); err != nil && err != chk.ErrSequenceIDNotFound {
		t.Fatalf("FetchCheckpoint(%s): %v", sh.ID, err)
	}
	if err := c.GetLease(sh, c.cfg.WorkerID); err != nil {
		t.Fatalf("%s: GetLease(%s): %v", c.cfg.WorkerID, sh.ID, err)
	}
}

// refused asserts that GetLease returns chk.ErrLeaseNotAcquired, the
// error the library treats as contention.
func refused(t *testing.T, c *Checkpointer, sh *par.ShardStatus) {
	t.Helper()
	err := c.GetLease(sh, c.cfg.WorkerID)
	if !errors.As(err, &chk.ErrLeaseNotAcquired{}) {
		t.Fatalf("%s: GetLease(%s) = %v, want ErrLeaseNotAcquired", c.cfg.WorkerID, sh.ID, err)
	}
}

// checkpoint writes seq through the library's path.
func checkpoint(sh *par.ShardStatus, c *Checkpointer, seq string) error {
	sh.SetCheckpoint(seq)
	return c.CheckpointSequence(sh)
}

func TestLostLeaseCannotCheckpoint(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a, b := e.worker("a"), e.worker("b")
	sa, sb := status(id, ""), status(id, "")

	acquire(t, a, sa)
	if err := checkpoint(sa, a, "100"); err != nil {
		t.Fatalf("checkpoint while holding the lease: %v", err)
	}
	e.clock.Advance(testLease + time.Second) // a stalls, its lease expires
	acquire(t, b, sb)
	if got := sb.GetCheckpoint(); got != "100" {
		t.Errorf("b resumes at %q, want 100", got)
	}
	if err := checkpoint(sb, b, "200"); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveProgress(context.Background(), id, processor.Progress{
		Sinks: map[string]processor.SinkProgress{"s3": {Watermark: "200", State: []byte("b")}},
	}); err != nil {
		t.Fatal(err)
	}
	before := e.row(id)

	// a wakes up and writes what it had: every fenced write must fail
	// with ErrLeaseLost and leave b's row alone.
	writes := map[string]func() error{
		"CheckpointSequence": func() error { return checkpoint(sa, a, "150") },
		"SaveProgress": func() error {
			return a.SaveProgress(context.Background(), id, processor.Progress{
				Checkpoint: "150",
				Sinks:      map[string]processor.SinkProgress{"s3": {Watermark: "150", State: []byte("a")}},
			})
		},
		"SaveSinkState": func() error { return a.SaveSinkState(context.Background(), id, "s3", []byte("a")) },
		"SHARD_END":     func() error { return checkpoint(sa, a, chk.ShardEnd) },
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			if err := write(); !errors.Is(err, processor.ErrLeaseLost) {
				t.Fatalf("got %v, want ErrLeaseLost", err)
			}
			if after := e.row(id); !reflect.DeepEqual(after, before) {
				t.Fatalf("row changed by a lost lease:\n got %+v\nwant %+v", after, before)
			}
		})
	}
}

func TestRestartedWorkerFencesOldInstance(t *testing.T) {
	// A pod restarted under the same name (same WorkerID) takes its own
	// unexpired lease at once; the old process, if still alive, is fenced
	// by the token.
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	old, restarted := e.worker("pod-0"), e.worker("pod-0")
	sOld, sNew := status(id, ""), status(id, "")
	acquire(t, old, sOld)
	acquire(t, restarted, sNew)
	if err := checkpoint(sOld, old, "1"); !errors.Is(err, processor.ErrLeaseLost) {
		t.Fatalf("old instance checkpoint: got %v, want ErrLeaseLost", err)
	}
	if err := checkpoint(sNew, restarted, "2"); err != nil {
		t.Fatal(err)
	}
	refused(t, old, sOld) // its renewal fails, which ends its consumer,
	refused(t, old, sOld) // and keeps failing: no silent re-acquisition
	// The old consumer's exit releases only its own token.
	if err := old.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	if r := e.row(id); r.Owner != "pod-0" || r.Checkpoint != "2" {
		t.Fatalf("row owner %q checkpoint %q after the old release, want pod-0 2", r.Owner, r.Checkpoint)
	}
	if err := checkpoint(sNew, restarted, "3"); err != nil {
		t.Fatalf("restarted instance lost its lease to the old one's release: %v", err)
	}
}

func TestRenewalBumpsCounter(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a := e.worker("a")
	sa := status(id, "")
	acquire(t, a, sa)
	r := e.row(id)
	if r.Counter != 1 || r.Owner != "a" || r.Token == "" {
		t.Fatalf("after acquisition: counter %d owner %q token %q, want 1, a, a token", r.Counter, r.Owner, r.Token)
	}
	if want := e.clock.Now().Add(testLease); !r.Timeout.Equal(want) {
		t.Errorf("LeaseTimeout %v, want %v", r.Timeout, want)
	}
	if err := a.SaveProgress(context.Background(), id, processor.Progress{
		Checkpoint: "5",
		Sinks:      map[string]processor.SinkProgress{"segment": {Watermark: "5", State: []byte{1}}},
	}); err != nil {
		t.Fatal(err)
	}

	for i := int64(2); i <= 4; i++ {
		e.clock.Advance(3 * time.Second)
		if err := a.GetLease(sa, "a"); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
		r := e.row(id)
		want := e.clock.Now().Add(testLease)
		if r.Counter != i || !r.Timeout.Equal(want) {
			t.Errorf("renewal %d: counter %d timeout %v, want %d %v", i, r.Counter, r.Timeout, i, want)
		}
		if got := sa.GetLeaseTimeout(); !got.Equal(want) {
			t.Errorf("renewal %d: shard.LeaseTimeout %v, want %v", i, got, want)
		}
	}
	// Renewals update, they do not rewrite the row.
	p, err := a.LoadProgress(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := processor.Progress{Checkpoint: "5", Sinks: map[string]processor.SinkProgress{"segment": {Watermark: "5", State: []byte{1}}}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("progress after renewals %+v, want %+v", p, want)
	}
}

func TestExpiredLeaseTakenOver(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a, b := e.worker("a"), e.worker("b")
	sa, sb := status(id, ""), status(id, "")
	acquire(t, a, sa) // expires at T+10s

	refused(t, b, sb)
	e.clock.Advance(5 * time.Second)
	if err := a.GetLease(sa, "a"); err != nil { // now expires at T+15s
		t.Fatal(err)
	}
	e.clock.Advance(6 * time.Second) // T+11s: only the renewal keeps it
	refused(t, b, sb)

	e.clock.Advance(5 * time.Second) // T+16s: a missed its renewals
	acquire(t, b, sb)
	if got := sb.GetLeaseOwner(); got != "b" {
		t.Errorf("shard.AssignedTo = %q, want b", got)
	}
	r := e.row(id)
	if r.Owner != "b" || r.Counter != 3 {
		t.Errorf("row owner %q counter %d, want b 3", r.Owner, r.Counter)
	}

	// a's renewal fails, which makes the library end its consumer.
	refused(t, a, sa)
	if got := e.row(id); got.Owner != "b" || got.Counter != 3 {
		t.Errorf("after a's renewal: owner %q counter %d, want b 3", got.Owner, got.Counter)
	}
	// Even once the shard is free again, a's consumer, which missed what
	// b did, must not get it back through its next renewal...
	if err := b.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	refused(t, a, sa)
	// ...only a fresh acquisition after the old consumer released it.
	if err := a.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	acquire(t, a, sa)
	if got := e.row(id); got.Owner != "a" || got.Counter != 4 {
		t.Errorf("after a's new acquisition: owner %q counter %d, want a 4", got.Owner, got.Counter)
	}
}

func TestFinishedShardIsNotLeased(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a, b := e.worker("a"), e.worker("b")
	sa := status(id, "")
	acquire(t, a, sa)
	if err := checkpoint(sa, a, chk.ShardEnd); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	refused(t, b, status(id, ""))
}

func TestChildWaitsForLeasedParent(t *testing.T) {
	e := newEnv(t, 1)
	parent := e.shardIDs()[0]
	a, b := e.worker("a"), e.worker("b")
	sp := status(parent, "")
	acquire(t, a, sp) // leased, never checkpointed: the library's defect 3 case
	left, right := e.split(parent)
	sl, sr := status(left, parent), status(right, parent)

	refused(t, b, sl)
	refused(t, b, sr)

	// The library's waitOnParentShard must see "not finished", not
	// ErrSequenceIDNotFound ("parent deleted").
	pv := status(parent, "")
	if err := b.FetchCheckpoint(pv); err != nil || pv.GetCheckpoint() != "" {
		t.Fatalf("FetchCheckpoint(parent) = %v, checkpoint %q; want nil, \"\"", err, pv.GetCheckpoint())
	}

	if err := checkpoint(sp, a, "49590338271490256608559692538361571095921575989136588898"); err != nil {
		t.Fatal(err)
	}
	refused(t, b, sl) // checkpointed, but not to the end

	if err := checkpoint(sp, a, chk.ShardEnd); err != nil {
		t.Fatal(err)
	}
	acquire(t, b, sl)
	acquire(t, a, sr)
	if got := e.row(left).Parent; got != parent {
		t.Errorf("child row ParentShardId %q, want %q", got, parent)
	}
}

func TestNeverLeasedParentBlocksChild(t *testing.T) {
	e := newEnv(t, 1)
	parent := e.shardIDs()[0]
	left, _ := e.split(parent)
	a, b := e.worker("a"), e.worker("b")
	sl := status(left, parent)

	// The parent has no row at all: it still has unread records.
	if err := b.FetchCheckpoint(status(parent, "")); err != chk.ErrSequenceIDNotFound {
		t.Fatalf("FetchCheckpoint(parent) = %v, want ErrSequenceIDNotFound", err)
	}
	refused(t, b, sl)

	sp := status(parent, "")
	acquire(t, a, sp)
	if err := checkpoint(sp, a, chk.ShardEnd); err != nil {
		t.Fatal(err)
	}
	acquire(t, b, sl)
}

func TestMergeChildWaitsForBothParents(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.shardIDs()
	p0, p1 := ids[0], ids[1]
	child := e.merge(p0, p1)
	a, b, c := e.worker("a"), e.worker("b"), e.worker("c")
	// The library knows only ParentShardId; the adjacent parent comes from
	// ListShards.
	sc := status(child, p0)
	refused(t, c, sc)

	s0, s1 := status(p0, ""), status(p1, "")
	acquire(t, a, s0)
	acquire(t, b, s1)
	refused(t, c, sc)
	if err := checkpoint(s0, a, chk.ShardEnd); err != nil {
		t.Fatal(err)
	}
	refused(t, c, sc) // the adjacent parent is still being read

	if err := checkpoint(s1, b, chk.ShardEnd); err != nil {
		t.Fatal(err)
	}
	acquire(t, c, sc)
}

func TestFetchCheckpointContract(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a, b := e.worker("a"), e.worker("b")

	t.Run("no row", func(t *testing.T) {
		// The library compares with ==, so the error must not be wrapped.
		if err := b.FetchCheckpoint(status(id, "")); err != chk.ErrSequenceIDNotFound {
			t.Fatalf("got %v, want chk.ErrSequenceIDNotFound itself", err)
		}
	})

	sa := status(id, "")
	acquire(t, a, sa)
	t.Run("row without checkpoint", func(t *testing.T) {
		sh := status(id, "")
		sh.Checkpoint = "stale"
		if err := b.FetchCheckpoint(sh); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		if sh.Checkpoint != "" || sh.AssignedTo != "a" || !sh.LeaseTimeout.Equal(e.clock.Now().Add(testLease)) {
			t.Errorf("got checkpoint %q owner %q timeout %v, want \"\", a, %v",
				sh.Checkpoint, sh.AssignedTo, sh.LeaseTimeout, e.clock.Now().Add(testLease))
		}
	})

	if err := checkpoint(sa, a, "42"); err != nil {
		t.Fatal(err)
	}
	// The library's stealing writes ClaimRequest; its checkpointer never
	// loads it back (v1#100).
	_, err := e.s.DynamoDB().UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName:                 aws.String(e.table),
		Key:                       key(id),
		UpdateExpression:          aws.String("SET ClaimRequest = :c, ParentShardId = :p"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":c": sAttr("b"), ":p": sAttr("shardId-parent")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("row with checkpoint", func(t *testing.T) {
		sh := status(id, "")
		if err := b.FetchCheckpoint(sh); err != nil {
			t.Fatal(err)
		}
		if sh.Checkpoint != "42" || sh.AssignedTo != "a" || sh.ClaimRequest != "b" || sh.ParentShardId != "shardId-parent" {
			t.Errorf("got %+v", sh)
		}
	})

	t.Run("row naming us from an earlier process", func(t *testing.T) {
		// A restarted process with the same WorkerID holds no lease yet:
		// the library must not read the shard as already consumed here.
		restarted := e.worker("a")
		sh := status(id, "")
		if err := restarted.FetchCheckpoint(sh); err != nil {
			t.Fatal(err)
		}
		if sh.AssignedTo != "" {
			t.Errorf("AssignedTo %q, want \"\" (not held by this process)", sh.AssignedTo)
		}
		if err := a.FetchCheckpoint(sh); err != nil || sh.AssignedTo != "a" {
			t.Errorf("holder's view: AssignedTo %q, err %v; want a", sh.AssignedTo, err)
		}
	})

	if err := a.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	t.Run("released row", func(t *testing.T) {
		sh := status(id, "")
		sh.AssignedTo = "a" // stale local view
		if err := b.FetchCheckpoint(sh); err != nil {
			t.Fatal(err)
		}
		if sh.AssignedTo != "" || sh.Checkpoint != "42" {
			t.Errorf("got owner %q checkpoint %q, want \"\", 42", sh.AssignedTo, sh.Checkpoint)
		}
	})
}

func TestConcurrentInit(t *testing.T) {
	s := devstack.ForTest(t)
	table := devstack.UniqueName(t, "lease")
	const n = 4
	errs := make(chan error, n)
	var start sync.WaitGroup
	start.Add(1)
	for i := range n {
		c, err := New(s.DynamoDB(), s.Kinesis(), Config{Table: table, Stream: "unused", WorkerID: fmt.Sprint("w", i)}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			start.Wait()
			errs <- c.Init()
		}()
	}
	start.Done()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Init: %v", err)
		}
	}
	out, err := s.DynamoDB().DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	d := out.Table
	if d.TableStatus != ddbtypes.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", d.TableStatus)
	}
	if d.BillingModeSummary == nil || d.BillingModeSummary.BillingMode != ddbtypes.BillingModePayPerRequest {
		t.Errorf("billing %+v, want PAY_PER_REQUEST", d.BillingModeSummary)
	}
	if len(d.KeySchema) != 1 || aws.ToString(d.KeySchema[0].AttributeName) != attrShardID || d.KeySchema[0].KeyType != ddbtypes.KeyTypeHash {
		t.Errorf("key schema %+v, want hash key %s only", d.KeySchema, attrShardID)
	}
}

func TestInitRejectsForeignTable(t *testing.T) {
	s := devstack.ForTest(t)
	table := devstack.UniqueName(t, "foreign")
	_, err := s.DynamoDB().CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(s.DynamoDB(), s.Kinesis(), Config{Table: table, Stream: "unused", WorkerID: "w"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(); err == nil {
		t.Fatal("Init on a table keyed by pk succeeded")
	}
}

func TestRemoveLeaseOwnerAllowsImmediateTakeover(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a, b := e.worker("a"), e.worker("b")
	sa, sb := status(id, ""), status(id, "")
	acquire(t, a, sa)
	if err := checkpoint(sa, a, "7"); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveLeaseOwner(id); err != nil { // SIGTERM handover
		t.Fatal(err)
	}
	// No clock change: b does not wait for a's lease to expire.
	acquire(t, b, sb)
	if sb.GetCheckpoint() != "7" {
		t.Errorf("b resumes at %q, want 7", sb.GetCheckpoint())
	}
	if err := checkpoint(sa, a, "8"); !errors.Is(err, processor.ErrLeaseLost) {
		t.Errorf("a's checkpoint after release: got %v, want ErrLeaseLost", err)
	}
	// A second release by a (the library releases on every consumer exit)
	// must neither fail nor strip b's lease.
	if err := a.RemoveLeaseOwner(id); err != nil {
		t.Errorf("second release: %v", err)
	}
	if r := e.row(id); r.Owner != "b" || r.Checkpoint != "7" {
		t.Errorf("row owner %q checkpoint %q, want b 7", r.Owner, r.Checkpoint)
	}
	if err := checkpoint(sb, b, "9"); err != nil {
		t.Errorf("b's checkpoint: %v", err)
	}
}

func TestProgressRoundTripAndFencing(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	ctx := context.Background()
	a, b := e.worker("a"), e.worker("b")
	load := func(c *Checkpointer) processor.Progress {
		t.Helper()
		p, err := c.LoadProgress(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(c *Checkpointer, want processor.Progress) {
		t.Helper()
		if got := load(c); !reflect.DeepEqual(got, want) {
			t.Fatalf("LoadProgress:\n got %+v\nwant %+v", got, want)
		}
	}

	check(a, processor.Progress{}) // no row
	if err := a.SaveProgress(ctx, id, processor.Progress{Checkpoint: "1"}); !errors.Is(err, processor.ErrLeaseLost) {
		t.Fatalf("SaveProgress without a lease: got %v, want ErrLeaseLost", err)
	}
	sa := status(id, "")
	acquire(t, a, sa)
	check(a, processor.Progress{}) // leased, nothing saved yet

	if err := a.SaveProgress(ctx, id, processor.Progress{
		Checkpoint: "100",
		Sinks: map[string]processor.SinkProgress{
			"s3":       {Watermark: "100", State: []byte("range 90-110")},
			"segment":  {Watermark: "95"},
			"odd name": {Watermark: "80"}, // any sink name works as a map key
		},
	}); err != nil {
		t.Fatal(err)
	}
	check(a, processor.Progress{Checkpoint: "100", Sinks: map[string]processor.SinkProgress{
		"s3":       {Watermark: "100", State: []byte("range 90-110")},
		"segment":  {Watermark: "95"},
		"odd name": {Watermark: "80"},
	}})

	// A partial save keeps what it does not mention: the checkpoint when
	// empty, other sinks, and states passed as nil.
	if err := a.SaveProgress(ctx, id, processor.Progress{Sinks: map[string]processor.SinkProgress{
		"segment": {Watermark: "120"},
		"s3":      {Watermark: "110"},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := a.SaveSinkState(ctx, id, "ga4", []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	check(a, processor.Progress{Checkpoint: "100", Sinks: map[string]processor.SinkProgress{
		"s3":       {Watermark: "110", State: []byte("range 90-110")},
		"segment":  {Watermark: "120"},
		"odd name": {Watermark: "80"},
		"ga4":      {State: []byte{0, 1, 2}},
	}})

	// An empty state clears it; the library's checkpoint keeps watermarks.
	if err := a.SaveSinkState(ctx, id, "ga4", []byte{}); err != nil {
		t.Fatal(err)
	}
	if err := a.SaveProgress(ctx, id, processor.Progress{Sinks: map[string]processor.SinkProgress{"s3": {Watermark: "130", State: []byte{}}}}); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint(sa, a, "130"); err != nil {
		t.Fatal(err)
	}
	want := processor.Progress{Checkpoint: "130", Sinks: map[string]processor.SinkProgress{
		"s3":       {Watermark: "130"},
		"segment":  {Watermark: "120"},
		"odd name": {Watermark: "80"},
	}}
	check(a, want)
	// A save with nothing to write still reports the lease.
	if err := a.SaveProgress(ctx, id, processor.Progress{}); err != nil {
		t.Fatalf("empty SaveProgress while holding the lease: %v", err)
	}

	// b takes over after expiry and inherits every sink's progress.
	e.clock.Advance(testLease + time.Second)
	acquire(t, b, status(id, ""))
	check(b, want)
	before := e.row(id)
	for name, err := range map[string]error{
		"SaveProgress":       a.SaveProgress(ctx, id, processor.Progress{Checkpoint: "999", Sinks: map[string]processor.SinkProgress{"s3": {Watermark: "999"}}}),
		"SaveSinkState":      a.SaveSinkState(ctx, id, "s3", []byte("zombie")),
		"empty SaveProgress": a.SaveProgress(ctx, id, processor.Progress{}),
	} {
		if !errors.Is(err, processor.ErrLeaseLost) {
			t.Errorf("%s by the old owner: got %v, want ErrLeaseLost", name, err)
		}
	}
	if after := e.row(id); !reflect.DeepEqual(after, before) {
		t.Errorf("row changed by a lost lease:\n got %+v\nwant %+v", after, before)
	}
	check(b, want)
}

// countingDB counts Scan calls.
type countingDB struct {
	DynamoDBAPI
	scans atomic.Int32
}

func (d *countingDB) Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	d.scans.Add(1)
	return d.DynamoDBAPI.Scan(ctx, in, optFns...)
}

func TestLeasesPaginates(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a := e.worker("a")
	acquire(t, a, status(id, ""))
	if err := checkpoint(status(id, ""), a, "5"); err != nil {
		t.Fatal(err)
	}
	// Rows of other shards (as left by earlier reshards), written directly.
	const extra = 22
	for i := range extra {
		_, err := e.s.DynamoDB().UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
			TableName:                 aws.String(e.table),
			Key:                       key(fmt.Sprintf("shardId-old-%03d", i)),
			UpdateExpression:          aws.String("SET Checkpoint = :e"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":e": sAttr(chk.ShardEnd)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db := &countingDB{DynamoDBAPI: e.s.DynamoDB()}
	c, err := New(db, e.s.Kinesis(), Config{Table: e.table, Stream: e.stream, WorkerID: "m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.scanLimit = 5
	leases, err := c.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != extra+1 {
		t.Fatalf("got %d leases, want %d", len(leases), extra+1)
	}
	if got := db.scans.Load(); got < (extra+1)/5 {
		t.Errorf("%d Scan calls, want at least %d pages", got, (extra+1)/5)
	}
	for i := 1; i < len(leases); i++ {
		if leases[i-1].ShardID >= leases[i].ShardID {
			t.Fatalf("not sorted: %s before %s", leases[i-1].ShardID, leases[i].ShardID)
		}
	}
	var got Lease
	for _, l := range leases {
		if l.ShardID == id {
			got = l
		}
	}
	if got.Owner != "a" || got.Checkpoint != "5" || got.Counter != 1 || !got.Timeout.Equal(e.clock.Now().Add(testLease)) {
		t.Errorf("lease %+v, want owner a, checkpoint 5, counter 1, timeout %v", got, e.clock.Now().Add(testLease))
	}
	if old := leases[len(leases)-1]; old.Checkpoint != chk.ShardEnd || old.Owner != "" || old.Counter != 0 {
		t.Errorf("old row %+v, want SHARD_END, no owner, counter 0", old)
	}
}

// nopLogger discards the library's logs.
type nopLogger struct{}

func (nopLogger) Debugf(string, ...any)                    {}
func (nopLogger) Infof(string, ...any)                     {}
func (nopLogger) Warnf(string, ...any)                     {}
func (nopLogger) Errorf(string, ...any)                    {}
func (nopLogger) Fatalf(string, ...any)                    {}
func (nopLogger) Panicf(string, ...any)                    {}
func (l nopLogger) WithFields(kcllog.Fields) kcllog.Logger { return l }

// recorder logs the data of every record processed, across shards, in
// processing order.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, s)
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func (r *recorder) CreateProcessor() kcl.IRecordProcessor { return &recordingProcessor{r: r} }

// recordingProcessor checkpoints after every batch and at shard end, as
// the library requires.
type recordingProcessor struct{ r *recorder }

func (p *recordingProcessor) Initialize(*kcl.InitializationInput) {}

func (p *recordingProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	for _, rec := range in.Records {
		p.r.add(string(rec.Data))
	}
	if n := len(in.Records); n > 0 {
		_ = in.Checkpointer.Checkpoint(in.Records[n-1].SequenceNumber)
	}
}

func (p *recordingProcessor) Shutdown(in *kcl.ShutdownInput) {
	if in.ShutdownReason == kcl.TERMINATE {
		_ = in.Checkpointer.Checkpoint(nil)
	}
}

// TestKCLWorkerReadsParentBeforeChildren runs the real library's worker
// on a split stream with this Checkpointer: every record of the parent
// must be processed before any record of the children, and a shutdown
// releases every lease.
func TestKCLWorkerReadsParentBeforeChildren(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	put := func(prefix string, n int) {
		t.Helper()
		var entries []kintypes.PutRecordsRequestEntry
		for i := range n {
			entries = append(entries, kintypes.PutRecordsRequestEntry{
				Data:         fmt.Appendf(nil, "%s-%02d", prefix, i),
				PartitionKey: aws.String(fmt.Sprint(i)),
			})
		}
		out, err := e.s.Kinesis().PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(e.stream), Records: entries})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("PutRecords: %v, %d failed", err, aws.ToInt32(out.FailedRecordCount))
		}
	}
	parent := e.shardIDs()[0]
	put("p", 30)
	left, right := e.split(parent)
	put("c", 30)

	const workerID = "kcl-worker"
	c, err := New(e.s.DynamoDB(), e.s.Kinesis(), Config{
		Table: e.table, Stream: e.stream, WorkerID: workerID, LeaseDuration: 3 * time.Second,
	}, zaptest.NewLogger(t).Named("kcl"))
	if err != nil {
		t.Fatal(err)
	}
	kcfg := kclcfg.NewKinesisClientLibConfigWithCredential("chk-test", e.stream, devstack.DefaultRegion, workerID,
		credentials.NewStaticCredentialsProvider(devstack.AccessKeyID, devstack.SecretAccessKey, "")).
		WithTableName(e.table).
		WithInitialPositionInStream(kclcfg.TRIM_HORIZON).
		WithShardSyncIntervalMillis(200).
		WithFailoverTimeMillis(3000). // = Config.LeaseDuration
		WithLeaseRefreshWaitTime(1000).
		WithIdleTimeBetweenReadsInMillis(100).
		WithLogger(nopLogger{})
	rec := &recorder{}
	w := kclworker.NewWorker(rec, kcfg).WithKinesis(e.s.Kinesis()).WithCheckpointer(c)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.Shutdown()
		}
	}
	defer stop()

	for deadline := time.Now().Add(60 * time.Second); len(rec.snapshot()) < 60; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("processed %d of 60 records: %v", len(rec.snapshot()), rec.snapshot())
		}
	}
	stop()

	seen := rec.snapshot()
	lastParent, firstChild := -1, len(seen)
	count := map[string]int{}
	for i, s := range seen {
		count[s]++
		if strings.HasPrefix(s, "p-") {
			lastParent = i
		} else if i < firstChild {
			firstChild = i
		}
	}
	if lastParent > firstChild {
		t.Errorf("child record %s processed at %d, before parent record %s at %d", seen[firstChild], firstChild, seen[lastParent], lastParent)
	}
	if len(count) != 60 {
		t.Errorf("%d distinct records, want 60: %v", len(count), seen)
	}

	leases, err := c.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		switch l.ShardID {
		case parent:
			if l.Checkpoint != chk.ShardEnd {
				t.Errorf("parent checkpoint %q, want SHARD_END", l.Checkpoint)
			}
		case left, right:
			if l.ParentShardID != parent || l.Checkpoint == "" {
				t.Errorf("child lease %+v, want parent %s and a checkpoint", l, parent)
			}
		}
		if l.Owner != "" {
			t.Errorf("lease on %s still owned by %s after Shutdown", l.ShardID, l.Owner)
		}
	}
	if len(leases) != 3 {
		t.Errorf("%d lease rows, want 3: %+v", len(leases), leases)
	}
}
