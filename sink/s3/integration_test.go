//go:build integration

package s3

import (
	"context"
	"os"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// TestSinkS3rver runs the behaviour tests against the S3 emulator, a
// bucket per test.
func TestSinkS3rver(t *testing.T) {
	st := devstack.ForTest(t)
	runSuite(t, func(t *testing.T) *target {
		bucket := devstack.UniqueName(t, "s3sink")
		if err := st.CreateBucket(context.Background(), bucket); err != nil {
			t.Fatal(err)
		}
		return &target{api: &hookS3{api: st.S3()}, bucket: bucket, objects: func(t testing.TB) map[string][]byte {
			return readBucket(t, st, bucket)
		}}
	})
}

// readBucket returns every object of a bucket, by key, listing in pages
// of 50, and checks each is stored as the sink must store it.
func readBucket(t testing.TB, st *devstack.Stack, bucket string) map[string][]byte {
	t.Helper()
	objs, err := st.ReadBucket(context.Background(), bucket, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(objs))
	for k, o := range objs {
		if o.ContentType != ContentType || o.ContentEncoding != "" {
			t.Errorf("%s: Content-Type %q, Content-Encoding %q; want %q and none", k, o.ContentType, o.ContentEncoding, ContentType)
		}
		out[k] = o.Body
	}
	return out
}
