package checkpoint

import (
	"context"
	"fmt"

	"github.com/buildtelemetry/pipeline/internal/ddbtable"
)

// Init makes sure the lease table exists and is ACTIVE, creating it if
// needed. It implements chk.Checkpointer; the library calls it from
// Worker.Start. It is bounded by Config.TableWaitTimeout.
func (c *Checkpointer) Init() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.TableWaitTimeout)
	defer cancel()
	return c.EnsureTable(ctx)
}

// EnsureTable makes sure the lease table exists and is ACTIVE: created on
// demand with hash key ShardID (S). On-demand billing, not the library's
// PROVISIONED 10/10, which the renewals of about 25 shards use up. Several
// workers may call it at once; a table with another key schema is an
// error. It is idempotent.
func (c *Checkpointer) EnsureTable(ctx context.Context) error {
	if err := ddbtable.Ensure(ctx, c.db, c.tableSpec(), c.log); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (c *Checkpointer) tableSpec() ddbtable.Spec {
	return ddbtable.Spec{Name: c.cfg.Table, Hash: attrShardID, What: "lease table", CallTimeout: c.cfg.CallTimeout}
}
