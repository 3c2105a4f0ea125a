// Command bench measures the pipeline on loopback and prints each figure
// on a line of its own as `name: value unit`, for make bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time of each load run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up of each load run")
	flag.IntVar(&o.concurrency, "concurrency", 64, "concurrent clients of the single-event runs (a quarter of it for 100-event batches)")
	flag.DurationVar(&o.linger, "linger", 0, "gateway group-commit linger (0: the default)")
	flag.StringVar(&o.only, "only", "", "run only the groups named, comma-separated (gateway, processor, failover, saas, s3, dynamodb, e2e, scaling, limits, redrive)")
	report := flag.String("report", ".run/bench-report.md", "also write the figures as a markdown table to this file (empty: don't)")
	flag.Parse()
	ctx := context.Background()
	failed := false
	var all []figure
	for _, g := range groups {
		if o.only != "" && !slices.Contains(strings.Split(o.only, ","), g.name) {
			continue
		}
		figs, err := g.run(ctx, o)
		for _, f := range figs {
			fmt.Println(f)
		}
		all = append(all, figs...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", g.name, err)
			failed = true
		}
	}
	fmt.Println()
	writeReport(os.Stdout, all)
	if *report != "" {
		if err := os.MkdirAll(filepath.Dir(*report), 0o755); err == nil {
			if f, err := os.Create(*report); err == nil {
				writeReport(f, all)
				f.Close()
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}

// options are the load parameters, the same for the gateway and the bare
// handler it is compared with.
type options struct {
	duration, warmup time.Duration
	concurrency      int
	linger           time.Duration
	only             string
}

// groups are the benchmark groups, run in this order.
var groups = []struct {
	name string
	run  func(context.Context, options) ([]figure, error)
}{
	{"gateway", benchGateway},
	{"processor", benchProcessor},
	{"failover", benchFailover},
	{"saas", benchSaaSSinks},
	{"s3", benchS3Sink},
	{"dynamodb", benchDynamoDBSink},
	{"e2e", benchEndToEnd},
	{"scaling", benchScaling},
	{"limits", benchLimits},
	{"redrive", benchRedrive},
}

// figure is one measured value.
type figure struct {
	name  string
	value float64
	unit  string
}

func (f figure) String() string {
	if f.value >= 100 || f.value == float64(int64(f.value)) {
		return fmt.Sprintf("%s: %.0f %s", f.name, f.value, f.unit)
	}
	return fmt.Sprintf("%s: %.3g %s", f.name, f.value, f.unit)
}
