package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/gzip"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// runS3 is `devstack s3 [-bucket B] [-prefix P] [-cat]`: list the local
// stack's objects, or print their decompressed lines, for a person
// checking what the S3 sink wrote. It reads the endpoints from the env
// file `make run` writes (source .run/stack.env first).
func runS3(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devstack s3", flag.ContinueOnError)
	bucket := fs.String("bucket", orEnv("S3_BUCKET", "telemetry-events"), "bucket")
	prefix := fs.String("prefix", "events/", "key prefix (deadletter/ for parked events)")
	cat := fs.Bool("cat", false, "print the objects' lines instead of their keys")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, ok, err := devstack.EndpointsFromEnv()
	if err != nil || !ok {
		return fmt.Errorf("no local stack in the environment (source .run/stack.env): %v", err)
	}
	client := devstack.Attach(e).S3()
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(*bucket), Prefix: aws.String(*prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list objects: %w", err)
		}
		for _, o := range page.Contents {
			if !*cat {
				fmt.Fprintf(stdout, "%8d  %s\n", aws.ToInt64(o.Size), aws.ToString(o.Key))
				continue
			}
			if err := catObject(ctx, client, *bucket, aws.ToString(o.Key), stdout); err != nil {
				return err
			}
		}
	}
	return nil
}

func catObject(ctx context.Context, client *s3.Client, bucket, key string, w io.Writer) error {
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Body.Close()
	zr, err := gzip.NewReader(obj.Body)
	if err != nil {
		return fmt.Errorf("gunzip %s: %w", key, err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 2<<20)
	for sc.Scan() {
		fmt.Fprintln(w, sc.Text())
	}
	return sc.Err()
}

func orEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
