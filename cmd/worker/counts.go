package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/buildtelemetry/pipeline/counts"
)

// runCounts is `worker counts`: print version adoption from the DynamoDB
// counters as a table, newest versions first, or (-html) write it as a
// page of adoption charts.
func runCounts(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("worker counts", flag.ContinueOnError)
	table := fs.String("table", getenv("DYNAMODB_COUNTS_TABLE"), "counts table ($DYNAMODB_COUNTS_TABLE)")
	region := fs.String("region", orDefault(getenv("AWS_REGION"), "us-east-1"), "AWS region ($AWS_REGION)")
	dims := fs.String("dimension", counts.DefaultDimension, "dimensions to report, comma-separated (buildVersion, nodeVersion, osPlatform, framework, status, plugin, or a configured one)")
	days := fs.Int("days", 7, "days shown, newest first (0: totals only; -html needs at least 1)")
	page := fs.String("html", "", "write a self-contained page of adoption charts to this file (- for standard output) instead of printing tables")
	top := fs.Int("top", 8, "values charted per dimension with -html; the rest are summed as other")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *table == "" {
		return errors.New("counts: -table or DYNAMODB_COUNTS_TABLE is required")
	}
	if *page != "" && (*days < 1 || *top < 1) {
		return errors.New("counts: -html needs -days and -top of at least 1")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(*region))
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	db := dynamodb.NewFromConfig(cfg)
	now := time.Now()
	var reports []counts.Report
	for _, dim := range strings.Split(*dims, ",") {
		if dim = strings.TrimSpace(dim); dim == "" {
			continue
		}
		r, err := counts.Adoption(ctx, db, *table, dim, *days, now)
		if err != nil {
			return err
		}
		reports = append(reports, r)
	}
	switch *page {
	case "":
	case "-": // kubectl exec … > report.html: the image has no shell or tar
		return counts.WriteHTML(out, reports, *top, now)
	default:
		return writePage(*page, reports, *top, now)
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if err := r.Print(out); err != nil {
			return err
		}
	}
	return nil
}

// writePage writes the adoption page to path through a temporary file, so
// that a browser never shows half of it.
func writePage(path string, reports []counts.Report, top int, now time.Time) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".report-*.html")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := counts.WriteHTML(f, reports, top, now); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}
