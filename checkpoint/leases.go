package checkpoint

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Lease is one row of the lease table, as Leases reports it.
type Lease struct {
	// ShardID is the shard.
	ShardID string
	// Owner is the worker named in the row, "" if released or never
	// leased. The lease may have expired: compare Timeout with the clock.
	Owner string
	// Timeout is when the lease expires, by the owner's clock; zero if
	// never leased.
	Timeout time.Time
	// Checkpoint is the last checkpoint, SHARD_END, or "".
	Checkpoint string
	// Counter counts acquisitions and renewals.
	Counter int64
	// ParentShardID is the shard's parent as recorded at acquisition.
	ParentShardID string
	// ClaimRequest is the worker that claimed the shard for a handoff,
	// "" if none (the claim may have expired).
	ClaimRequest string
}

// Leases returns every shard row of the lease table, sorted by shard ID,
// from a consistent, paginated Scan, for metrics, tooling and tests.
// Worker rows are left out. It reads the whole table: call it at a
// metrics cadence, not per shard.
func (c *Checkpointer) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := c.scanRows(ctx)
	if err != nil {
		return nil, err
	}
	var leases []Lease
	for _, r := range rows {
		if r.IsWorker {
			continue
		}
		leases = append(leases, Lease{
			ShardID:       r.ShardID,
			Owner:         r.Owner,
			Timeout:       r.Timeout,
			Checkpoint:    r.Checkpoint,
			Counter:       r.Counter,
			ParentShardID: r.Parent,
			ClaimRequest:  r.ClaimRequest,
		})
	}
	slices.SortFunc(leases, func(a, b Lease) int { return strings.Compare(a.ShardID, b.ShardID) })
	return leases, nil
}

// scanRows reads every row of the table, shard and worker rows alike,
// with a consistent, paginated Scan: the library's own scan reads one
// eventually consistent page, which misses rows beyond 1 MB and can show
// a lease as held after its release.
func (c *Checkpointer) scanRows(ctx context.Context) ([]row, error) {
	var rows []row
	var start map[string]types.AttributeValue
	for {
		in := &dynamodb.ScanInput{
			TableName:         aws.String(c.cfg.Table),
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		}
		if c.scanLimit > 0 {
			in.Limit = aws.Int32(c.scanLimit)
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		out, err := c.db.Scan(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("checkpoint: scan table %s: %w", c.cfg.Table, err)
		}
		for _, item := range out.Items {
			r, err := decodeRow(item)
			if err != nil {
				id, _ := item[attrShardID].(*types.AttributeValueMemberS)
				if id == nil {
					id = &types.AttributeValueMemberS{}
				}
				return nil, fmt.Errorf("checkpoint: decode lease row %q: %w", id.Value, err)
			}
			rows = append(rows, r)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return rows, nil
		}
		start = out.LastEvaluatedKey
	}
}
