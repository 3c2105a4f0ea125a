//go:build integration

package athena_test

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

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
	objects, recs := writeSamples(t, st.S3(), bucket, func() map[string][]byte { return readBucket(t, st.S3(), bucket) })
	checkObjects(t, mustParse(t, bucket), bucket, objects, recs)
}

// readBucket returns every object of a bucket, by key.
func readBucket(t testing.TB, c *awss3.Client, bucket string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	pages := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			obj, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			if err != nil {
				t.Fatalf("get %s: %v", *o.Key, err)
			}
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil {
				t.Fatalf("read %s: %v", *o.Key, err)
			}
			out[*o.Key] = b
		}
	}
	return out
}
