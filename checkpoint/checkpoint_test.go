package checkpoint

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"

	"github.com/buildtelemetry/pipeline/processor"
)

// fakeDB is a DynamoDBAPI of function fields; calling an unset one panics,
// so a test states every call it expects.
type fakeDB struct {
	getItem       func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	updateItem    func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	deleteItem    func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error)
	scan          func(*dynamodb.ScanInput) (*dynamodb.ScanOutput, error)
	describeTable func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	createTable   func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
}

func (f *fakeDB) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return f.getItem(in)
}

func (f *fakeDB) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return f.updateItem(in)
}

func (f *fakeDB) DeleteItem(_ context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return f.deleteItem(in)
}

func (f *fakeDB) Scan(_ context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	return f.scan(in)
}

func (f *fakeDB) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return f.describeTable(in)
}

func (f *fakeDB) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return f.createTable(in)
}

// listerFunc adapts a function to ShardLister.
type listerFunc func(*kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error)

func (f listerFunc) ListShards(_ context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return f(in)
}

func noLister(*kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
	panic("unexpected ListShards")
}

func newTest(t *testing.T, db DynamoDBAPI, l ShardLister, mod func(*Config)) *Checkpointer {
	t.Helper()
	cfg := Config{Table: "leases", Stream: "events", WorkerID: "w1"}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(db, l, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func shard(id, parent string) *par.ShardStatus {
	return &par.ShardStatus{ID: id, ParentShardId: parent, Mux: &sync.RWMutex{}}
}

func keyOf(k map[string]types.AttributeValue) string {
	return k[attrShardID].(*types.AttributeValueMemberS).Value
}

func TestNewValidatesConfig(t *testing.T) {
	ok := Config{Table: "t", Stream: "s", WorkerID: "w"}
	tests := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"no table", func(c *Config) { c.Table = "" }, "Table"},
		{"no stream", func(c *Config) { c.Stream = "" }, "Stream"},
		{"no worker", func(c *Config) { c.WorkerID = "" }, "WorkerID"},
		{"negative lease", func(c *Config) { c.LeaseDuration = -1 }, "LeaseDuration"},
		{"negative timeout", func(c *Config) { c.CallTimeout = -1 }, "CallTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := New(&fakeDB{}, listerFunc(noLister), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v, want an error naming %s", err, tt.field)
			}
		})
	}
	c, err := New(&fakeDB{}, listerFunc(noLister), ok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.LeaseDuration != DefaultLeaseDuration || c.cfg.CallTimeout != DefaultCallTimeout ||
		c.cfg.ShardCacheTTL != DefaultShardCacheTTL || c.cfg.TableWaitTimeout != DefaultTableWaitTimeout || c.cfg.Now == nil {
		t.Errorf("defaults not applied: %+v", c.cfg)
	}
}

func TestDecodeRow(t *testing.T) {
	full := map[string]types.AttributeValue{
		attrShardID:        sAttr("shardId-1"),
		attrOwner:          sAttr("w1"),
		attrTimeout:        sAttr("2026-01-02T03:04:05.123456789Z"),
		attrCheckpoint:     sAttr("42"),
		attrParent:         sAttr("shardId-0"),
		attrClaimRequest:   sAttr("w2"),
		attrCounter:        nAttr(7),
		attrToken:          sAttr("tok"),
		attrSinkWatermarks: &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"s3": sAttr("40")}},
		attrSinkState:      &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"s3": &types.AttributeValueMemberB{Value: []byte("x")}}},
	}
	r, err := decodeRow(full)
	if err != nil {
		t.Fatal(err)
	}
	wantT := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	if r.ShardID != "shardId-1" || r.Owner != "w1" || !r.Timeout.Equal(wantT) || r.Checkpoint != "42" ||
		r.Parent != "shardId-0" || r.ClaimRequest != "w2" || r.Counter != 7 || !r.HasCounter || r.Token != "tok" ||
		r.Watermarks["s3"] != "40" || string(r.State["s3"]) != "x" || !r.HasCheckpoint || !r.HasTimeout {
		t.Errorf("decoded %+v", r)
	}

	r, err = decodeRow(map[string]types.AttributeValue{attrShardID: sAttr("s")})
	if err != nil || r.HasCounter || r.HasCheckpoint || r.HasTimeout || !r.Timeout.IsZero() {
		t.Errorf("minimal row: %+v, %v", r, err)
	}

	bad := []struct {
		name string
		attr string
		v    types.AttributeValue
	}{
		{"owner not S", attrOwner, nAttr(1)},
		{"timeout unparsable", attrTimeout, sAttr("yesterday")},
		{"counter not N", attrCounter, sAttr("1")},
		{"counter not integer", attrCounter, &types.AttributeValueMemberN{Value: "1.5"}},
		{"watermarks not M", attrSinkWatermarks, sAttr("x")},
		{"watermark not S", attrSinkWatermarks, &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"s3": nAttr(1)}}},
		{"state not B", attrSinkState, &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"s3": sAttr("x")}}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRow(map[string]types.AttributeValue{attrShardID: sAttr("s"), tt.attr: tt.v}); err == nil {
				t.Fatal("decoded without error")
			}
		})
	}
}

func TestHeldByOther(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	tests := []struct {
		name string
		r    row
		want bool
	}{
		{"never leased", row{}, false},
		{"released with future timeout", row{Timeout: now.Add(time.Hour)}, false},
		{"other, valid", row{Owner: "w2", Timeout: now.Add(time.Second)}, true},
		{"other, expired", row{Owner: "w2", Timeout: now.Add(-time.Second)}, false},
		{"other, expiring now", row{Owner: "w2", Timeout: now}, false},
		{"me, valid", row{Owner: "w1", Timeout: now.Add(time.Second)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.heldByOther("w1", now); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProgressUpdate(t *testing.T) {
	tests := []struct {
		name   string
		p      processor.Progress
		expr   string
		values []string
	}{
		{"nothing", processor.Progress{}, "SET #token = :tok", nil},
		{"checkpoint only", processor.Progress{Checkpoint: "9"}, "SET #cp = :cp", []string{":cp"}},
		{
			"sinks in name order, empty watermark and nil state skipped, empty state removed",
			processor.Progress{Checkpoint: "9", Sinks: map[string]processor.SinkProgress{
				"segment": {Watermark: "8"},
				"s3":      {Watermark: "7", State: []byte("r")},
				"ga4":     {State: []byte{}},
				"ddb":     {},
			}},
			"SET #cp = :cp, #wm.#s2 = :w2, #st.#s2 = :bs2, #wm.#s3 = :w3 REMOVE #st.#s1",
			[]string{":cp", ":w2", ":bs2", ":w3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := progressUpdate(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.expression(); got != tt.expr {
				t.Errorf("expression %q, want %q", got, tt.expr)
			}
			if len(u.values) != len(tt.values) {
				t.Errorf("values %v, want %v", u.values, tt.values)
			}
			for _, v := range tt.values {
				if _, ok := u.values[v]; !ok {
					t.Errorf("value %s missing", v)
				}
			}
			// Every name placeholder must be used, or DynamoDB rejects the
			// request.
			for ph := range u.names {
				if ph != "#token" && !strings.Contains(u.expression(), ph) {
					t.Errorf("unused name %s", ph)
				}
			}
		})
	}
	if _, err := progressUpdate(processor.Progress{Sinks: map[string]processor.SinkProgress{"": {Watermark: "1"}}}); err == nil {
		t.Error("empty sink name accepted")
	}
}

func TestAcquireCondition(t *testing.T) {
	tests := []struct {
		name  string
		r     row
		found bool
		want  string
	}{
		{"new row", row{}, false, "attribute_not_exists(#id)"},
		{"our row", row{Counter: 4, HasCounter: true}, true, "#c = :seen AND (attribute_not_exists(#cp) OR #cp <> :end)"},
		{
			"library row, released", row{TimeoutRaw: "t0", HasTimeout: true}, true,
			"attribute_exists(#id) AND attribute_not_exists(#c) AND (attribute_not_exists(#cp) OR #cp <> :end) AND attribute_not_exists(#owner) AND #t = :seenT",
		},
		{
			"library row, owned", row{Owner: "w2"}, true,
			"attribute_exists(#id) AND attribute_not_exists(#c) AND (attribute_not_exists(#cp) OR #cp <> :end) AND #owner = :seenOwner AND attribute_not_exists(#t)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := acquireCondition(newUpdate(), tt.r, tt.found); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func apiError(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: code}
}

func TestInitDoesNotCreateOnOtherErrors(t *testing.T) {
	db := &fakeDB{
		describeTable: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return nil, apiError("AccessDeniedException")
		},
		// createTable unset: calling it panics.
	}
	err := newTest(t, db, listerFunc(noLister), nil).Init()
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("got %v, want the AccessDenied error", err)
	}
}

func TestInitCreatesAndToleratesConcurrentCreate(t *testing.T) {
	for _, createErr := range []error{nil, &types.ResourceInUseException{Message: aws.String("exists")}} {
		var describes int
		var created *dynamodb.CreateTableInput
		db := &fakeDB{
			describeTable: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
				describes++
				switch describes {
				case 1, 2: // missing, then not yet visible after CreateTable
					return nil, &types.ResourceNotFoundException{Message: aws.String("no")}
				case 3:
					return &dynamodb.DescribeTableOutput{Table: leaseTable(types.TableStatusCreating)}, nil
				default:
					return &dynamodb.DescribeTableOutput{Table: leaseTable(types.TableStatusActive)}, nil
				}
			},
			createTable: func(in *dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
				if created != nil { // the second call finds it being created
					return nil, &types.ResourceInUseException{Message: aws.String("creating")}
				}
				created = in
				return &dynamodb.CreateTableOutput{}, createErr
			},
		}
		if err := newTest(t, db, listerFunc(noLister), nil).Init(); err != nil {
			t.Fatalf("create error %v: Init: %v", createErr, err)
		}
		if created.BillingMode != types.BillingModePayPerRequest || aws.ToString(created.KeySchema[0].AttributeName) != attrShardID {
			t.Errorf("CreateTable input %+v", created)
		}
		if describes != 4 {
			t.Errorf("%d DescribeTable calls, want 4", describes)
		}
	}
}

func leaseTable(status types.TableStatus) *types.TableDescription {
	return &types.TableDescription{
		TableStatus: status,
		KeySchema:   []types.KeySchemaElement{{AttributeName: aws.String(attrShardID), KeyType: types.KeyTypeHash}},
	}
}

func TestInitGivesUpWaiting(t *testing.T) {
	db := &fakeDB{describeTable: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		return &dynamodb.DescribeTableOutput{Table: leaseTable(types.TableStatusCreating)}, nil
	}}
	c := newTest(t, db, listerFunc(noLister), func(c *Config) { c.TableWaitTimeout = 200 * time.Millisecond })
	if err := c.Init(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
}

func TestGetLeaseForAnotherWorkerID(t *testing.T) {
	c := newTest(t, &fakeDB{}, listerFunc(noLister), nil)
	err := c.GetLease(shard("s", ""), "w2")
	if err == nil || errors.As(err, &chk.ErrLeaseNotAcquired{}) {
		t.Fatalf("got %v, want a configuration error", err)
	}
}

func TestFencedWritesWithoutLeaseMakeNoCall(t *testing.T) {
	c := newTest(t, &fakeDB{}, listerFunc(noLister), nil) // any call panics
	sh := shard("s", "")
	sh.Checkpoint = "5"
	ctx := context.Background()
	for name, err := range map[string]error{
		"CheckpointSequence": c.CheckpointSequence(sh),
		"SaveProgress":       c.SaveProgress(ctx, "s", processor.Progress{Checkpoint: "5"}),
		"SaveSinkState":      c.SaveSinkState(ctx, "s", "s3", []byte("x")),
	} {
		if !errors.Is(err, processor.ErrLeaseLost) {
			t.Errorf("%s: got %v, want ErrLeaseLost", name, err)
		}
	}
}

func TestFetchCheckpointErrors(t *testing.T) {
	db := &fakeDB{getItem: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		return nil, apiError("ProvisionedThroughputExceededException")
	}}
	err := newTest(t, db, listerFunc(noLister), nil).FetchCheckpoint(shard("s", ""))
	// A failed read must not look like "no checkpoint": the library would
	// start the shard from its initial position.
	if err == nil || err == chk.ErrSequenceIDNotFound {
		t.Fatalf("got %v, want the read error", err)
	}
}

// listing returns a ShardLister for the given shards (ID → parent,
// adjacent parent), counting calls and serving them in pages of one to
// exercise NextToken.
func listing(calls *int, shards ...[3]string) listerFunc {
	return func(in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		i := 0
		if in.NextToken != nil {
			if in.StreamName != nil {
				return nil, errors.New("StreamName and NextToken both set")
			}
			i = int(aws.ToString(in.NextToken)[0] - '0')
		} else {
			*calls++
			if aws.ToString(in.StreamName) != "events" {
				return nil, errors.New("wrong stream")
			}
		}
		if i >= len(shards) {
			return &kinesis.ListShardsOutput{}, nil
		}
		sh := shards[i]
		out := &kinesis.ListShardsOutput{Shards: []kintypes.Shard{{ShardId: aws.String(sh[0])}}}
		if sh[1] != "" {
			out.Shards[0].ParentShardId = aws.String(sh[1])
		}
		if sh[2] != "" {
			out.Shards[0].AdjacentParentShardId = aws.String(sh[2])
		}
		if i+1 < len(shards) {
			out.NextToken = aws.String(string(rune('0' + i + 1)))
		}
		return out, nil
	}
}

func TestLookupShardPaginatesAndCaches(t *testing.T) {
	var calls int
	l := listing(&calls, [3]string{"a", "", ""}, [3]string{"b", "", ""}, [3]string{"c", "a", "b"})
	c := newTest(t, &fakeDB{}, l, func(c *Config) { c.ShardCacheTTL = time.Hour })
	info, _, ok, err := c.lookupShard("c")
	if err != nil || !ok || info.parent != "a" || info.adjacentParent != "b" {
		t.Fatalf("lookupShard(c) = %+v %v %v", info, ok, err)
	}
	if _, _, ok, _ := c.lookupShard("a"); !ok || calls != 1 {
		t.Errorf("cached lookup: ok %v, %d listings, want true 1", ok, calls)
	}
	// A shard not in the cached listing may be new: list again once.
	if _, _, ok, _ := c.lookupShard("d"); ok || calls != 2 {
		t.Errorf("unknown shard: ok %v, %d listings, want false 2", ok, calls)
	}
}

// rowsDB serves GetItem from rows and records UpdateItem and DeleteItem
// keys.
func rowsDB(rows map[string]map[string]types.AttributeValue, updated, deleted *[]string) *fakeDB {
	return &fakeDB{
		getItem: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			if !aws.ToBool(in.ConsistentRead) {
				return nil, errors.New("inconsistent read")
			}
			return &dynamodb.GetItemOutput{Item: rows[keyOf(in.Key)]}, nil
		},
		updateItem: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			*updated = append(*updated, keyOf(in.Key))
			return &dynamodb.UpdateItemOutput{}, nil
		},
		deleteItem: func(in *dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error) {
			*deleted = append(*deleted, keyOf(in.Key))
			return &dynamodb.DeleteItemOutput{}, nil
		},
	}
}

func TestParentGating(t *testing.T) {
	unfinished := map[string]types.AttributeValue{attrShardID: sAttr("p"), attrCheckpoint: sAttr("12")}
	finished := map[string]types.AttributeValue{attrShardID: sAttr("p"), attrCheckpoint: sAttr(chk.ShardEnd)}
	tests := []struct {
		name        string
		listed      [][3]string
		parentRow   map[string]types.AttributeValue
		wantRefused bool
		wantDeleted bool
	}{
		{"parent listed, no row", [][3]string{{"p", "", ""}, {"c", "p", ""}}, nil, true, false},
		{"parent listed, unfinished", [][3]string{{"p", "", ""}, {"c", "p", ""}}, unfinished, true, false},
		{"parent listed, finished", [][3]string{{"p", "", ""}, {"c", "p", ""}}, finished, false, false},
		{"parent aged out, no row", [][3]string{{"c", "p", ""}}, nil, false, false},
		// Its row would keep the library's waitOnParentShard polling forever.
		{"parent aged out, unfinished row", [][3]string{{"c", "p", ""}}, unfinished, false, true},
		{"parent aged out, finished row", [][3]string{{"c", "p", ""}}, finished, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls int
			var updated, deleted []string
			rows := map[string]map[string]types.AttributeValue{}
			if tt.parentRow != nil {
				rows["p"] = tt.parentRow
			}
			c := newTest(t, rowsDB(rows, &updated, &deleted), listing(&calls, tt.listed...), nil)
			sh := shard("c", "p")
			err := c.GetLease(sh, "w1")
			if tt.wantRefused {
				if !errors.As(err, &chk.ErrLeaseNotAcquired{}) {
					t.Fatalf("got %v, want ErrLeaseNotAcquired", err)
				}
				if len(updated) != 0 {
					t.Errorf("refused lease wrote %v", updated)
				}
			} else {
				if err != nil {
					t.Fatalf("got %v, want the lease", err)
				}
				if sh.GetLeaseOwner() != "w1" || sh.GetLeaseTimeout().IsZero() {
					t.Errorf("shard not updated: %+v", sh)
				}
			}
			if got := len(deleted) == 1 && deleted[0] == "p"; got != tt.wantDeleted {
				t.Errorf("deleted %v, want parent deleted: %v", deleted, tt.wantDeleted)
			}
		})
	}
}

func TestUnlistedShardIsNotContention(t *testing.T) {
	var calls int
	var updated, deleted []string
	c := newTest(t, rowsDB(nil, &updated, &deleted), listing(&calls, [3]string{"a", "", ""}), nil)
	err := c.GetLease(shard("elsewhere", ""), "w1")
	// Not ErrLeaseNotAcquired, which the library does not log: a wrong
	// Config.Stream must be visible.
	if err == nil || errors.As(err, &chk.ErrLeaseNotAcquired{}) {
		t.Fatalf("got %v, want a logged error", err)
	}
}
