package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/buildtelemetry/pipeline/counts"
)

// runCounts is `worker counts`: print version adoption from the DynamoDB
// counters as a table, newest versions first.
func runCounts(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("worker counts", flag.ContinueOnError)
	table := fs.String("table", getenv("DYNAMODB_COUNTS_TABLE"), "counts table ($DYNAMODB_COUNTS_TABLE)")
	region := fs.String("region", orDefault(getenv("AWS_REGION"), "us-east-1"), "AWS region ($AWS_REGION)")
	dim := fs.String("dimension", "buildVersion", "dimension to report (buildVersion, nodeVersion, osPlatform, framework, status, plugin, or a configured one)")
	days := fs.Int("days", 7, "days shown, newest first (0: totals only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *table == "" {
		return errors.New("counts: -table or DYNAMODB_COUNTS_TABLE is required")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(*region))
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	r, err := counts.Adoption(ctx, dynamodb.NewFromConfig(cfg), *table, *dim, *days, time.Now())
	if err != nil {
		return err
	}
	return r.Print(out)
}
