//go:build integration

package limits_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
)

var (
	stackOnce sync.Once
	stack     *devstack.Stack
	stackErr  error
)

// rig is one test's proxy, in front of emulators without limits of their
// own, and clients through it that do not retry, so that every throttle
// is seen.
type rig struct {
	p   *limits.Proxy
	kc  *kinesis.Client
	ddb *dynamodb.Client
	s   *devstack.Stack
}

func newRig(t *testing.T, cfg limits.Config) *rig {
	t.Helper()
	stackOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), devstack.DefaultStartTimeout)
		defer cancel()
		stack, stackErr = devstack.Start(ctx, devstack.Config{Limits: devstack.LimitsOff})
	})
	if stackErr != nil {
		t.Fatal(stackErr)
	}
	e := stack.Endpoints()
	p, err := limits.Start(e.Kinesis, e.DynamoDB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	awsCfg := stack.AWSConfig()
	awsCfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	return &rig{
		p: p, s: stack,
		kc:  kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(p.KinesisURL) }),
		ddb: dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(p.DynamoDBURL) }),
	}
}

func (r *rig) stream(t *testing.T, shards int32) string {
	t.Helper()
	name := devstack.UniqueName(t, "lim")
	if err := r.s.CreateStream(context.Background(), name, shards); err != nil {
		t.Fatal(err)
	}
	return name
}

func entries(n, size int, key func(i int) string) []types.PutRecordsRequestEntry {
	out := make([]types.PutRecordsRequestEntry, n)
	for i := range out {
		out[i] = types.PutRecordsRequestEntry{Data: bytes.Repeat([]byte{'x'}, size), PartitionKey: aws.String(key(i))}
	}
	return out
}

func byIndex(i int) string { return fmt.Sprint(i) }

// TestPutRecordsThrottledPerEntry: a call over the shard's records/s
// fails the entries beyond it, each with
// ProvisionedThroughputExceededException, counted in FailedRecordCount;
// the others are in the stream. The records limit is a tenth of AWS's
// (100 records/s, a bucket of 120) so that 1,500 entries overrun the
// bucket however slow the machine: at the published 1,000/s a loaded CI
// machine refilled it between the calls. (Only that limit: reads stay at
// AWS's, so that counting the stream is not throttled for ever.)
func TestPutRecordsThrottledPerEntry(t *testing.T) {
	lim := limits.AWS()
	lim.ShardWriteRecords /= 10
	r := newRig(t, lim)
	stream := r.stream(t, 1)
	ctx := context.Background()
	ok, failed := 0, 0
	start := time.Now()
	for call := 0; call < 3; call++ {
		out, err := r.kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries(500, 10, byIndex)})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, res := range out.Records {
			switch code := aws.ToString(res.ErrorCode); code {
			case "":
				ok++
			case "ProvisionedThroughputExceededException":
				n++
				if !strings.Contains(aws.ToString(res.ErrorMessage), "Rate exceeded for shard shardId-000000000000") {
					t.Errorf("error message %q", aws.ToString(res.ErrorMessage))
				}
			default:
				t.Errorf("error code %s", code)
			}
		}
		if int(aws.ToInt32(out.FailedRecordCount)) != n {
			t.Errorf("FailedRecordCount %d, %d entries failed", aws.ToInt32(out.FailedRecordCount), n)
		}
		failed += n
	}
	// The bucket holds 1.2 s of the rate and refills at the rate.
	rate := lim.ShardWriteRecords
	if most := int(rate*1.2+rate*time.Since(start).Seconds()) + 1; failed == 0 || ok > most {
		t.Errorf("%d accepted, %d throttled of 1,500; want at most %d accepted", ok, failed, most)
	}
	if got := countRecords(t, r.kc, stream); got != ok {
		t.Errorf("%d records in the stream, %d acknowledged", got, ok)
	}
}

func countRecords(t *testing.T, kc *kinesis.Client, stream string) int {
	t.Helper()
	ctx := context.Background()
	iter := firstIterator(t, kc, stream)
	n := 0
	for empty := 0; empty < 2; {
		out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		var pte *types.ProvisionedThroughputExceededException
		if errors.As(err, &pte) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Records) == 0 {
			empty++
		}
		n += len(out.Records)
		iter = out.NextShardIterator
	}
	return n
}

// TestWriteBytesPerShard: 1 MiB/s per shard, by hash key range: a shard
// over its bytes refuses while the other shard still accepts.
func TestWriteBytesPerShard(t *testing.T) {
	r := newRig(t, limits.AWS())
	stream := r.stream(t, 2)
	ctx := context.Background()
	// Explicit hash key 0 is the first shard's.
	recs := entries(10, 200<<10, byIndex)
	for i := range recs {
		recs[i].ExplicitHashKey = aws.String("0")
	}
	out, err := r.kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if n := aws.ToInt32(out.FailedRecordCount); n < 3 || n > 5 {
		t.Errorf("%d of ten 200 KiB records throttled, want 4 (the bucket holds 1.2 MiB)", n)
	}
	// 900 KB more: the bucket needs most of a second to hold it again.
	_, err = r.kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), Data: make([]byte, 900<<10), PartitionKey: aws.String("k"), ExplicitHashKey: aws.String("0")})
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Errorf("PutRecord to the full shard: %v, want ProvisionedThroughputExceededException", err)
	}
	_, err = r.kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), Data: make([]byte, 100<<10), PartitionKey: aws.String("k"),
		ExplicitHashKey: aws.String("340282366920938463463374607431768211455")})
	if err != nil {
		t.Errorf("PutRecord to the other shard: %v", err)
	}
	st := r.p.Stats()
	if st.WritesPerShard["shardId-000000000001"] != 1 || st.WriteThrottled < 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestGetRecordsLimits: 5 calls/s per shard, and a read of more than the
// second's bytes makes the following calls fail until it is paid back.
func TestGetRecordsLimits(t *testing.T) {
	r := newRig(t, limits.AWS())
	stream := r.stream(t, 1)
	ctx := context.Background()
	iter := firstIterator(t, r.kc, stream)
	okCalls, throttled := 0, 0
	for i := 0; i < 10; i++ {
		out, err := r.kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		var pte *types.ProvisionedThroughputExceededException
		switch {
		case errors.As(err, &pte):
			throttled++
		case err != nil:
			t.Fatal(err)
		default:
			okCalls++
			iter = out.NextShardIterator
		}
	}
	if okCalls != 6 || throttled != 4 {
		t.Errorf("%d calls served, %d throttled of 10 at once; want 6 and 4 (5/s and 20%% burst)", okCalls, throttled)
	}

	// Bytes, on a shard that reads 256 KiB/s: 900 KB read at once put it
	// seconds into debt.
	cfg := limits.AWS()
	cfg.ShardReadBytes = 256 << 10
	r = newRig(t, cfg)
	stream = r.stream(t, 1)
	if _, err := r.kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries(3, 300<<10, byIndex)}); err != nil {
		t.Fatal(err)
	}
	iter = firstIterator(t, r.kc, stream)
	out, err := r.kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
	if err != nil || len(out.Records) != 3 {
		t.Fatalf("first read: %v, %d records", err, len(out.Records))
	}
	_, err = r.kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: out.NextShardIterator})
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Errorf("read right after 900 KB: %v, want ProvisionedThroughputExceededException", err)
	}
}

// TestDynamoDBHotKeyThrottled: writes to one item beyond its units per
// second fail with ProvisionedThroughputExceededException; another item
// of the same table is not affected.
func TestDynamoDBHotKeyThrottled(t *testing.T) {
	r := newRig(t, limits.AWS().Scaled(0.01)) // 10 write units/s per key
	ctx := context.Background()
	table := devstack.UniqueName(t, "hot")
	_, err := r.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.s.WaitTable(ctx, table); err != nil {
		t.Fatal(err)
	}
	update := func(k string) error {
		_, err := r.ddb.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(table), Key: map[string]ddbtypes.AttributeValue{"k": &ddbtypes.AttributeValueMemberS{Value: k}},
			UpdateExpression:          aws.String("ADD n :one"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":one": &ddbtypes.AttributeValueMemberN{Value: "1"}},
		})
		return err
	}
	okN, throttled := 0, 0
	for i := 0; i < 30; i++ {
		err := update("hot")
		var pte *ddbtypes.ProvisionedThroughputExceededException
		switch {
		case errors.As(err, &pte):
			throttled++
		case err != nil:
			t.Fatal(err)
		default:
			okN++
		}
	}
	if throttled == 0 || okN > 14 {
		t.Errorf("%d writes to one key passed, %d throttled of 30; want about 12 passed", okN, throttled)
	}
	if err := update("cold"); err != nil {
		t.Errorf("another key: %v", err)
	}
	out, err := r.ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]ddbtypes.AttributeValue{"k": &ddbtypes.AttributeValueMemberS{Value: "hot"}}, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if n := out.Item["n"].(*ddbtypes.AttributeValueMemberN).Value; n != fmt.Sprint(okN) {
		t.Errorf("item counts %s, %d writes passed: a throttled write must change nothing", n, okN)
	}
}

// firstIterator returns a TRIM_HORIZON iterator of the stream's first
// shard.
func firstIterator(t *testing.T, kc *kinesis.Client, stream string) *string {
	t.Helper()
	it, err := kc.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String(stream),
		ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	return it.ShardIterator
}
