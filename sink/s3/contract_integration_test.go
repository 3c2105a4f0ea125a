//go:build integration

package s3

import (
	"context"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// The S3 sink keeps the Writer contract against s3rver, a bucket per
// subtest; Delivered is the event lines of its objects. Events it cannot
// archive go to the error prefix rather than fail, so there is no partial
// case.
func TestWriterContract(t *testing.T) {
	st := devstack.ForTest(t)
	var bucket string
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) processor.Sink {
			bucket = devstack.UniqueName(t, "contract")
			if err := st.CreateBucket(context.Background(), bucket); err != nil {
				t.Fatal(err)
			}
			s, err := New(st.S3(), Config{Bucket: bucket})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Delivered: func(t *testing.T) int {
			return len(eventLines(t, readBucket(t, st, bucket)))
		},
	})
}
