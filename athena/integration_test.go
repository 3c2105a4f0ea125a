//go:build integration

package athena_test

import (
	"context"
	"os"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// TestObjectsMatchTableS3rver checks the objects as the S3 emulator
// stores and lists them.
func TestObjectsMatchTableS3rver(t *testing.T) {
	st := devstack.ForTest(t)
	bucket := devstack.UniqueName(t, "athena")
	if err := st.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	objects, recs := writeSamples(t, st.S3(), bucket, func() map[string][]byte { return readBucket(t, st, bucket) })
	checkObjects(t, mustParse(t, bucket), bucket, objects, recs)
}

// readBucket returns every object of a bucket, by key.
func readBucket(t testing.TB, st *devstack.Stack, bucket string) map[string][]byte {
	t.Helper()
	objs, err := st.ReadBucket(context.Background(), bucket, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(objs))
	for k, o := range objs {
		out[k] = o.Body
	}
	return out
}
