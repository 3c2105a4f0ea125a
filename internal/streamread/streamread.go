// Package streamread reads a Kinesis stream shard by shard without leases:
// for tests that count what reached the stream and for the worker's tail
// subcommand. The real consumer is the KCL worker.
package streamread

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// API is the subset of the Kinesis client the reader uses.
type API interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// Shards lists the stream's shard IDs.
func Shards(ctx context.Context, api API, stream string) ([]string, error) {
	var ids []string
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		out, err := api.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list shards of %s: %w", stream, err)
		}
		for _, s := range out.Shards {
			ids = append(ids, aws.ToString(s.ShardId))
		}
		if out.NextToken == nil {
			return ids, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// ReadAll returns every record in the stream now, from TRIM_HORIZON of
// every shard up to the tip.
func ReadAll(ctx context.Context, api API, stream string) ([]types.Record, error) {
	shards, err := Shards(ctx, api, stream)
	if err != nil {
		return nil, err
	}
	var all []types.Record
	for _, shard := range shards {
		err := Follow(ctx, api, stream, shard, types.ShardIteratorTypeTrimHorizon, false, func(recs []types.Record) error {
			all = append(all, recs...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return all, nil
}

// followInterval is the least time between two reads of a shard by
// Follow in follow mode.
const followInterval = time.Second

// Follow reads one shard from the given position and calls fn with each
// non-empty batch. With follow false it returns at the tip of the shard;
// with follow true it keeps polling until ctx ends or the shard closes.
func Follow(ctx context.Context, api API, stream, shard string, from types.ShardIteratorType, follow bool, fn func([]types.Record) error) error {
	it, err := api.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: aws.String(shard), ShardIteratorType: from,
	})
	if err != nil {
		return fmt.Errorf("get iterator of %s: %w", shard, err)
	}
	iter := it.ShardIterator
	var last time.Time
	for iter != nil {
		if follow {
			// A shard serves 5 reads a second to all its readers: a
			// follower takes one, leaving the rest to the workers.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(last.Add(followInterval))):
			}
			last = time.Now()
		}
		out, err := api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
		var pte *types.ProvisionedThroughputExceededException
		if errors.As(err, &pte) {
			// The shard's reads are spent (by us or by other readers):
			// wait for them to come back and read the same place again.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return fmt.Errorf("get records of %s: %w", shard, err)
		}
		if len(out.Records) > 0 {
			if err := fn(out.Records); err != nil {
				return err
			}
		}
		iter = out.NextShardIterator
		atTip := len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0
		if atTip && !follow {
			return nil
		}

	}
	return nil
}
