package dynamodb

import (
	"context"
	"fmt"

	"github.com/buildtelemetry/pipeline/internal/ddbtable"
)

// EnsureTable makes sure the counters' table exists and is ACTIVE: created
// on demand with hash key pk (S) and range key sk (S), billed on demand (a
// few writes per window, bursty with the stream). Several workers may
// call it at once; a table with another key schema is an error. It is
// idempotent and bounded by ctx.
func (s *Sink) EnsureTable(ctx context.Context) error {
	spec := ddbtable.Spec{Name: s.table, Hash: attrPK, Range: attrSK, What: "counters table"}
	if err := ddbtable.Ensure(ctx, s.db, spec, s.log); err != nil {
		return fmt.Errorf("dynamodb: %w", err)
	}
	return nil
}
