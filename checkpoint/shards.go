package checkpoint

import (
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

// lookupShard returns shardID's entry in the stream listing, and the
// listing. A shard missing from a cached listing may be newer than the
// listing, so the stream is listed again before ok is false.
func (c *Checkpointer) lookupShard(shardID string) (info shardInfo, listing map[string]shardInfo, ok bool, err error) {
	if listing, err = c.listShards(false); err != nil {
		return shardInfo{}, nil, false, err
	}
	if info, ok = listing[shardID]; ok {
		return info, listing, true, nil
	}
	if listing, err = c.listShards(true); err != nil {
		return shardInfo{}, nil, false, err
	}
	info, ok = listing[shardID]
	return info, listing, ok, nil
}

// parents returns the shard's parents: none, one after a split, two after
// a merge.
func (i shardInfo) parents() []string {
	var ps []string
	for _, p := range []string{i.parent, i.adjacentParent} {
		if p != "" {
			ps = append(ps, p)
		}
	}
	return ps
}
