//go:build integration

package deadletter

import (
	"context"
	"os"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// TestStoreS3rver runs the store's behaviour tests against the S3 emulator,
// a bucket per test.
func TestStoreS3rver(t *testing.T) {
	st := devstack.ForTest(t)
	testStore(t, func(t *testing.T, cfg Config) *Store {
		bucket := devstack.UniqueName(t, "dl")
		if err := st.CreateBucket(context.Background(), bucket); err != nil {
			t.Fatal(err)
		}
		cfg.Bucket = bucket
		s, err := New(st.S3(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
