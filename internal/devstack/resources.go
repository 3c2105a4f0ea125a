package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Waiter timing. The SDK's defaults (Kinesis StreamExists MinDelay 10 s) are tuned for
// real AWS; the emulators change state within milliseconds, so a default waiter turns a
// 4 ms stream creation into an 11 s test.
const (
	waitMinDelay = 50 * time.Millisecond
	waitMaxDelay = 500 * time.Millisecond
	// DefaultWaitTimeout bounds each wait of the resource helpers; ctx can cut it
	// shorter.
	DefaultWaitTimeout = 30 * time.Second
)

// CreateStream creates a provisioned stream with the given shard count and waits
// until it is ACTIVE. An existing stream is not an error, whatever its shard count.
func (s *Stack) CreateStream(ctx context.Context, name string, shards int32) error {
	_, err := s.kinesis.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(name),
		ShardCount: aws.Int32(shards),
	})
	var inUse *kinesistypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("devstack: create stream %q: %w", name, err)
	}
	// Always wait: an existing stream may still be CREATING or UPDATING.
	w := kinesis.NewStreamExistsWaiter(s.kinesis, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = waitMinDelay, waitMaxDelay
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, DefaultWaitTimeout); err != nil {
		return fmt.Errorf("devstack: wait for stream %q: %w", name, err)
	}
	return nil
}

// DeleteStream deletes a stream and waits until it is gone. A missing stream is not an
// error.
func (s *Stack) DeleteStream(ctx context.Context, name string) error {
	_, err := s.kinesis.DeleteStream(ctx, &kinesis.DeleteStreamInput{
		StreamName:              aws.String(name),
		EnforceConsumerDeletion: aws.Bool(true),
	})
	var notFound *kinesistypes.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("devstack: delete stream %q: %w", name, err)
	}
	w := kinesis.NewStreamNotExistsWaiter(s.kinesis, func(o *kinesis.StreamNotExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = waitMinDelay, waitMaxDelay
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, DefaultWaitTimeout); err != nil {
		return fmt.Errorf("devstack: wait for stream %q deletion: %w", name, err)
	}
	return nil
}

// CreateBucket creates a bucket. An existing bucket is not an error.
func (s *Stack) CreateBucket(ctx context.Context, name string) error {
	_, err := s.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("devstack: create bucket %q: %w", name, err)
	}
	return nil
}

// Object is one object of a bucket as ReadBucket read it.
type Object struct {
	Body                         []byte
	ContentType, ContentEncoding string
}

// ReadBucket returns every object under prefix in bucket, by key, listing
// pageSize keys at a time (0: the server's default), so that tests also
// walk S3's paging.
func (s *Stack) ReadBucket(ctx context.Context, bucket, prefix string, pageSize int32) (map[string]Object, error) {
	out := map[string]Object{}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
	if pageSize > 0 {
		in.MaxKeys = aws.Int32(pageSize)
	}
	pages := s3.NewListObjectsV2Paginator(s.s3, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("devstack: list s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			obj, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			if err != nil {
				return nil, fmt.Errorf("devstack: get s3://%s/%s: %w", bucket, aws.ToString(o.Key), err)
			}
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("devstack: read s3://%s/%s: %w", bucket, aws.ToString(o.Key), err)
			}
			out[aws.ToString(o.Key)] = Object{Body: b, ContentType: aws.ToString(obj.ContentType), ContentEncoding: aws.ToString(obj.ContentEncoding)}
		}
	}
	return out, nil
}

// WaitTable waits until a DynamoDB table exists and is ACTIVE, for packages that create
// their own tables.
func (s *Stack) WaitTable(ctx context.Context, name string) error {
	w := dynamodb.NewTableExistsWaiter(s.dynamodb, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = waitMinDelay, waitMaxDelay
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, DefaultWaitTimeout); err != nil {
		return fmt.Errorf("devstack: wait for table %q: %w", name, err)
	}
	return nil
}

// PutRecords writes entries to stream, at most 500 per call, and retries
// the entries Kinesis (or the limits layer) refuses, with a backoff from
// 50 ms to 1 s, as a well-behaved producer does, until all are written or
// ctx ends. Test fixtures and tools use it to fill streams at the
// stream's own pace.
func PutRecords(ctx context.Context, kc *kinesis.Client, stream string, entries []kinesistypes.PutRecordsRequestEntry) error {
	wait := 50 * time.Millisecond
	for len(entries) > 0 {
		batch := entries[:min(len(entries), 500)]
		out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: batch})
		if err != nil {
			return fmt.Errorf("devstack: put records to %s: %w", stream, err)
		}
		var failed []kinesistypes.PutRecordsRequestEntry
		for i, res := range out.Records {
			if res.ErrorCode != nil {
				failed = append(failed, batch[i])
			}
		}
		entries = append(failed, entries[len(batch):]...)
		if len(failed) == 0 {
			wait = 50 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: put records to %s: %d left: %w", stream, len(entries), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
	return nil
}
