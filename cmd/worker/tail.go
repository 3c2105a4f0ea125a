package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/streamread"
)

// runTail prints every event of the stream as one JSON line, with the
// shard and sequence number of its record, so that a person can see what
// the gateway wrote without a worker. It reads without leases and never
// checkpoints.
func runTail(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	stream := fs.String("stream", getenv("KINESIS_STREAM"), "Kinesis stream name ($KINESIS_STREAM)")
	region := fs.String("region", orDefault(getenv("AWS_REGION"), "us-east-1"), "AWS region ($AWS_REGION)")
	follow := fs.Bool("f", false, "keep following new records")
	latest := fs.Bool("latest", false, "start at the tip instead of the oldest record")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stream == "" {
		return fmt.Errorf("tail: -stream or KINESIS_STREAM is required")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(*region))
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	kc := kinesis.NewFromConfig(cfg)
	dec, err := event.NewRecordDecoder()
	if err != nil {
		return err
	}
	shards, err := streamread.Shards(ctx, kc, *stream)
	if err != nil {
		return err
	}
	from := types.ShardIteratorTypeTrimHorizon
	if *latest {
		from = types.ShardIteratorTypeLatest
	}

	w := bufio.NewWriter(out)
	var mu sync.Mutex
	print := func(shard string, recs []types.Record) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			events, err := dec.Decode(r.Data)
			if err != nil {
				fmt.Fprintf(w, `{"shard":%q,"sequenceNumber":%q,"error":%q}`+"\n", shard, aws.ToString(r.SequenceNumber), err.Error())
				continue
			}
			for _, e := range events {
				line, _ := json.Marshal(struct {
					Shard string          `json:"shard"`
					Seq   string          `json:"sequenceNumber"`
					Event json.RawMessage `json:"event"`
				}{shard, aws.ToString(r.SequenceNumber), e})
				w.Write(line)
				w.WriteByte('\n')
			}
		}
		return w.Flush()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(shards))
	for i, shard := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = streamread.Follow(ctx, kc, *stream, shard, from, *follow, func(recs []types.Record) error {
				return print(shard, recs)
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
