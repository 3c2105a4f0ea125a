package checkpoint

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// listShards returns the stream's shards (open and closed, as long as
// they are within retention) by ID, from a listing at most
// Config.ShardCacheTTL old unless fresh is set. Concurrent callers share
// one refresh.
func (c *Checkpointer) listShards(fresh bool) (map[string]shardInfo, error) {
	c.listMu.Lock()
	defer c.listMu.Unlock()
	// The cache age uses the real clock, not Config.Now: it limits API
	// calls, it decides nothing about leases.
	if !fresh && c.listing != nil && time.Since(c.listingAt) < c.cfg.ShardCacheTTL {
		return c.listing, nil
	}
	listing := make(map[string]shardInfo)
	var next *string
	for {
		in := &kinesis.ListShardsInput{}
		if next == nil {
			in.StreamName = aws.String(c.cfg.Stream)
		} else {
			// With NextToken the stream must not be named again.
			in.NextToken = next
		}
		ctx, cancel := c.callCtx()
		out, err := c.shards.ListShards(ctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("checkpoint: list shards of %s: %w", c.cfg.Stream, err)
		}
		for _, sh := range out.Shards {
			listing[aws.ToString(sh.ShardId)] = shardInfo{
				parent:         aws.ToString(sh.ParentShardId),
				adjacentParent: aws.ToString(sh.AdjacentParentShardId),
			}
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		next = out.NextToken
	}
	c.listing, c.listingAt = listing, time.Now()
	return listing, nil
}

// parentsOf returns the parents of shardID (none, one, or two for a
// merge) and the listing they were checked against. A shard missing from
// a cached listing may be newer than the listing, so it is listed again
// before falling back to the parent the library knows (fallback).
func (c *Checkpointer) parentsOf(ctx context.Context, shardID, fallback string) ([]string, map[string]shardInfo, error) {
	listing, err := c.listShards(false)
	if err != nil {
		return nil, nil, err
	}
	info, ok := listing[shardID]
	if !ok {
		if listing, err = c.listShards(true); err != nil {
			return nil, nil, err
		}
		info, ok = listing[shardID]
	}
	if !ok {
		// The shard itself has aged out (or was never in this stream);
		// the library deletes its row on its next shard sync. Check the
		// parent it knows about anyway.
		info = shardInfo{parent: fallback}
	}
	var parents []string
	for _, p := range []string{info.parent, info.adjacentParent} {
		if p != "" {
			parents = append(parents, p)
		}
	}
	return parents, listing, nil
}
