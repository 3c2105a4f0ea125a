//go:build integration

package s3

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
			return readBucket(t, st.S3(), bucket)
		}}
	})
}

// readBucket returns every object of a bucket, by key, listing in pages.
func readBucket(t testing.TB, c *awss3.Client, bucket string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	pages := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(50)})
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
			if ct := aws.ToString(obj.ContentType); ct != ContentType || obj.ContentEncoding != nil {
				t.Errorf("%s: Content-Type %q, Content-Encoding %q; want %q and none", *o.Key, ct, aws.ToString(obj.ContentEncoding), ContentType)
			}
			out[*o.Key] = b
		}
	}
	return out
}
