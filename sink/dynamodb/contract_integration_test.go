//go:build integration

package dynamodb

import (
	"context"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// The counters keep the Writer contract against dynalite, with the
// default windows (so Close has a buffer to drop). Delivered is the builds
// counted. Every event counts (one without the dimension counts as a
// build), so there is no partial case.
func TestWriterContract(t *testing.T) {
	st := devstack.ForTest(t)
	var table string
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) processor.Sink {
			table = devstack.UniqueName(t, "contract")
			s, err := New(st.DynamoDB(), Config{Table: table}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Delivered: func(t *testing.T) int {
			dcs, err := ReadCounts(context.Background(), st.DynamoDB(), table, "buildVersion", "", "")
			if err != nil {
				return 0 // no table yet: nothing counted
			}
			n := 0
			for _, dc := range dcs {
				n += int(dc.Events)
			}
			return n
		},
	})
}
