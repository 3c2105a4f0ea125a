package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.uber.org/zap"
)

// Polling of DescribeTable while a table is being created: start fast for
// the emulators, back off to stay far below DescribeTable's rate limit on
// AWS while a real table takes seconds.
const (
	tablePollMin = 50 * time.Millisecond
	tablePollMax = 2 * time.Second
)

// Init makes sure the lease table exists and is ACTIVE, creating it if
// needed. It implements chk.Checkpointer; the library calls it from
// Worker.Start. It is bounded by Config.TableWaitTimeout.
func (c *Checkpointer) Init() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.TableWaitTimeout)
	defer cancel()
	return c.EnsureTable(ctx)
}

// EnsureTable makes sure the lease table exists and is ACTIVE. A missing
// table (DescribeTable answers ResourceNotFoundException, and only that) is
// created PAY_PER_REQUEST with hash key ShardID (S). Several workers may
// call it at once: a CreateTable that loses the race
// (ResourceInUseException) is not an error. An existing table with another
// key schema is. It is idempotent.
func (c *Checkpointer) EnsureTable(ctx context.Context) error {
	// waitActive's first DescribeTable is the existence check: it creates
	// a missing table and returns at once for an ACTIVE one.
	return c.waitActive(ctx)
}

func (c *Checkpointer) describeTable(ctx context.Context) (*types.TableDescription, error) {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	out, err := c.db.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: aws.String(c.cfg.Table)})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: describe table %s: %w", c.cfg.Table, err)
	}
	if out.Table == nil {
		return nil, fmt.Errorf("checkpoint: describe table %s: no table in response", c.cfg.Table)
	}
	return out.Table, nil
}

func (c *Checkpointer) createTable(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	_, err := c.db.CreateTable(cctx, &dynamodb.CreateTableInput{
		TableName: aws.String(c.cfg.Table),
		AttributeDefinitions: []types.AttributeDefinition{{
			AttributeName: aws.String(attrShardID),
			AttributeType: types.ScalarAttributeTypeS,
		}},
		KeySchema: []types.KeySchemaElement{{
			AttributeName: aws.String(attrShardID),
			KeyType:       types.KeyTypeHash,
		}},
		// On demand: the library's PROVISIONED 10/10 is used up by the
		// renewals of about 25 shards.
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	switch {
	case errors.As(err, &inUse):
		// Another worker created it between our DescribeTable and
		// CreateTable; waitActive checks it is what we expect.
		c.log.Debug("lease table created concurrently by another worker")
		return nil
	case err != nil:
		return fmt.Errorf("checkpoint: create table %s: %w", c.cfg.Table, err)
	}
	c.log.Info("created lease table")
	return nil
}

// waitActive polls DescribeTable until the table is ACTIVE. A
// ResourceNotFoundException right after CreateTable is expected
// (DescribeTable is eventually consistent); it creates the table again,
// which is answered ResourceInUseException while the first creation is
// under way, and covers a table that was DELETING when first described.
func (c *Checkpointer) waitActive(ctx context.Context) error {
	delay := tablePollMin
	for {
		desc, err := c.describeTable(ctx)
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			if err := c.createTable(ctx); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := checkKeySchema(desc); err != nil {
				return fmt.Errorf("checkpoint: table %s: %w", c.cfg.Table, err)
			}
			if desc.TableStatus == types.TableStatusActive {
				return nil
			}
			c.log.Debug("waiting for lease table", zap.String("status", string(desc.TableStatus)))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("checkpoint: wait for table %s to be active: %w", c.cfg.Table, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, tablePollMax)
	}
}

// checkKeySchema fails unless the table's key is exactly hash key ShardID:
// any other key would make every lease operation fail later with a less
// helpful message.
func checkKeySchema(d *types.TableDescription) error {
	if len(d.KeySchema) != 1 || aws.ToString(d.KeySchema[0].AttributeName) != attrShardID || d.KeySchema[0].KeyType != types.KeyTypeHash {
		return fmt.Errorf("key schema is %s, want hash key %s only", describeKeys(d.KeySchema), attrShardID)
	}
	return nil
}

func describeKeys(ks []types.KeySchemaElement) string {
	out := "["
	for i, k := range ks {
		if i > 0 {
			out += " "
		}
		out += aws.ToString(k.AttributeName) + ":" + string(k.KeyType)
	}
	return out + "]"
}
