//go:build integration

package devstack_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestKinesisRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := devstack.ForTest(t)
	kc := s.Kinesis()
	stream := devstack.UniqueName(t, "stream")

	if err := s.CreateStream(ctx, stream, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(ctx, stream, 4); err != nil {
		t.Fatalf("second CreateStream: got %v, want nil (idempotent)", err)
	}
	t.Cleanup(func() {
		if err := s.DeleteStream(context.WithoutCancel(ctx), stream); err != nil {
			t.Error(err)
		}
	})

	const n = 200
	want := map[string]bool{}
	var entries []kinesistypes.PutRecordsRequestEntry
	for i := range n {
		data := fmt.Sprintf("event-%03d", i)
		want[data] = true
		entries = append(entries, kinesistypes.PutRecordsRequestEntry{
			Data:         []byte(data),
			PartitionKey: aws.String(fmt.Sprintf("build-%d", i)),
		})
	}
	out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	if err != nil {
		t.Fatalf("put records: %v", err)
	}
	if got := aws.ToInt32(out.FailedRecordCount); got != 0 {
		t.Fatalf("FailedRecordCount: got %d, want 0", got)
	}

	shards, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("list shards: %v", err)
	}
	if got := len(shards.Shards); got != 4 {
		t.Fatalf("shards: got %d, want 4", got)
	}
	got := map[string]bool{}
	nonEmpty := 0
	for _, sh := range shards.Shards {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName:        aws.String(stream),
			ShardId:           sh.ShardId,
			ShardIteratorType: kinesistypes.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatalf("get shard iterator %s: %v", aws.ToString(sh.ShardId), err)
		}
		before := len(got)
		for iter := it.ShardIterator; iter != nil; {
			page, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
			if err != nil {
				t.Fatalf("get records %s: %v", aws.ToString(sh.ShardId), err)
			}
			for _, r := range page.Records {
				got[string(r.Data)] = true
			}
			if len(page.Records) == 0 {
				break // open shard, caught up
			}
			iter = page.NextShardIterator
		}
		if len(got) > before {
			nonEmpty++
		}
	}
	if len(got) != n {
		t.Fatalf("distinct records read: got %d, want %d", len(got), n)
	}
	for d := range want {
		if !got[d] {
			t.Errorf("record %q not read back", d)
		}
	}
	if nonEmpty < 2 {
		t.Errorf("shards holding records: got %d, want >= 2 (partition keys should spread)", nonEmpty)
	}
}

func TestDynamoDBConditionalPut(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := devstack.ForTest(t)
	dc := s.DynamoDB()
	table := devstack.UniqueName(t, "table")

	_, err := dc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if _, err := dc.DeleteTable(context.WithoutCancel(ctx), &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
			t.Error(err)
		}
	})
	if err := s.WaitTable(ctx, table); err != nil {
		t.Fatal(err)
	}

	put := &dynamodb.PutItemInput{
		TableName:           aws.String(table),
		Item:                map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "event-1"}},
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	}
	if _, err := dc.PutItem(ctx, put); err != nil {
		t.Fatalf("first put: %v", err)
	}
	_, err = dc.PutItem(ctx, put)
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("second put: got %v, want *types.ConditionalCheckFailedException", err)
	}
}

func gzipBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestS3GzipAndPagedList(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := devstack.ForTest(t)
	sc := s.S3()
	bucket := devstack.UniqueName(t, "bucket")

	if err := s.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket(ctx, bucket); err != nil {
		t.Fatalf("second CreateBucket: got %v, want nil (idempotent)", err)
	}

	keys := []string{"events/dt=2026-01-01/a.json.gz", "events/dt=2026-01-01/b.json.gz", "events/dt=2026-01-02/c.json.gz"}
	bodies := map[string][]byte{}
	for _, k := range keys {
		body := gzipBytes(t, `{"key":"`+k+`"}`+"\n")
		bodies[k] = body
		_, err := sc.PutObject(ctx, &s3.PutObjectInput{
			Bucket:          aws.String(bucket),
			Key:             aws.String(k),
			Body:            bytes.NewReader(body), // seekable: the SDK signs the body over plain http, and re-sends it on retry
			ContentEncoding: aws.String("gzip"),
			ContentType:     aws.String("application/x-ndjson"),
		})
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}

	obj, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(keys[0])})
	if err != nil {
		t.Fatalf("get %s: %v", keys[0], err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatalf("read %s: %v", keys[0], err)
	}
	if !bytes.Equal(got, bodies[keys[0]]) {
		t.Fatalf("get %s: got %d bytes %x..., want the %d gzip bytes put", keys[0], len(got), got[:min(len(got), 8)], len(bodies[keys[0]]))
	}
	if enc := aws.ToString(obj.ContentEncoding); enc != "gzip" {
		t.Errorf("ContentEncoding: got %q, want gzip", enc)
	}

	// MaxKeys=1 forces continuation tokens, which s3rver makes with DES: this fails
	// with HTTP 500 unless node runs with --openssl-legacy-provider.
	p := s3.NewListObjectsV2Paginator(sc, &s3.ListObjectsV2Input{
		Bucket:  aws.String(bucket),
		Prefix:  aws.String("events/"),
		MaxKeys: aws.Int32(1),
	})
	var listed []string
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("list page %d: %v", pages+1, err)
		}
		pages++
		for _, o := range page.Contents {
			listed = append(listed, aws.ToString(o.Key))
		}
	}
	if fmt.Sprint(listed) != fmt.Sprint(keys) {
		t.Errorf("listed keys: got %v, want %v", listed, keys)
	}
	if pages < len(keys) {
		t.Errorf("pages: got %d, want >= %d", pages, len(keys))
	}
}

// TestStartPersistsDataDir checks what a restart test relies on: a private stack on a
// DataDir keeps streams, tables and objects across Close and Start.
func TestStartPersistsDataDir(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := t.TempDir()
	var log bytes.Buffer

	s1, err := devstack.Start(ctx, devstack.Config{DataDir: dataDir, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.CreateStream(ctx, "persisted", 2); err != nil {
		s1.Close()
		t.Fatal(err)
	}
	if err := s1.CreateBucket(ctx, "persisted"); err != nil {
		s1.Close()
		t.Fatal(err)
	}
	if _, err := s1.S3().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("persisted"), Key: aws.String("k"), Body: bytes.NewReader([]byte("v")),
	}); err != nil {
		s1.Close()
		t.Fatalf("put object: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("close first stack: %v\nlog:\n%s", err, &log)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
	select {
	case <-s1.Done():
	default:
		t.Fatal("Done not closed after Close")
	}

	s2, err := devstack.Start(ctx, devstack.Config{DataDir: dataDir, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s2.Close(); err != nil {
			t.Error(err)
		}
	})
	d, err := s2.Kinesis().DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("persisted")})
	if err != nil {
		t.Fatalf("describe stream after restart: %v", err)
	}
	if got := len(d.StreamDescription.Shards); got != 2 {
		t.Errorf("shards after restart: got %d, want 2", got)
	}
	obj, err := s2.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("persisted"), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("get object after restart: %v", err)
	}
	obj.Body.Close()
}

// TestAttachedCloseIsNoop checks that closing an attached stack leaves the emulators
// running for everyone else.
func TestAttachedCloseIsNoop(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := devstack.ForTest(t)
	a := devstack.Attach(s.Endpoints())
	if err := a.Close(); err != nil {
		t.Fatalf("Close on attached stack: got %v, want nil", err)
	}
	if _, err := s.Kinesis().ListStreams(ctx, &kinesis.ListStreamsInput{}); err != nil {
		t.Fatalf("list streams after attached Close: %v", err)
	}
}

// TestForTestStartsPrivateStack covers the path without `make test`'s shared stack.
// Not parallel: it clears process-wide variables (parallel tests resume only after it).
func TestForTestStartsPrivateStack(t *testing.T) {
	shared, sharedOK, _ := devstack.EndpointsFromEnv()
	for _, k := range []string{devstack.EnvKinesisEndpoint, devstack.EnvDynamoDBEndpoint, devstack.EnvS3Endpoint} {
		t.Setenv(k, "")
	}
	s := devstack.ForTest(t)
	if sharedOK && s.Endpoints() == shared {
		t.Fatalf("ForTest with no env: got the shared endpoints %+v, want a private stack", shared)
	}
	if _, err := s.DynamoDB().ListTables(testContext(t), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatalf("list tables on private stack: %v", err)
	}
}

func TestStartCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := devstack.Start(ctx, devstack.Config{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with canceled ctx: got %v, want context.Canceled", err)
	}
}
