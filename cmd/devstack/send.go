package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// runSend is `devstack send`: write a history of Netlify-Build-shaped
// builds into the local stack's stream, spread over the last days with an
// upgrade curve of build versions, so that `worker counts` and
// `make report` have something worth looking at.
//
// The builds go into the stream as the gateway would have written them on
// their day (receivedAt = timestamp), not through the gateway: the
// counters count an event on its timestamp's day only when it arrived
// within a day or so of it (a build machine's clock is not trusted
// further), so a month of history cannot be posted today. It reads the
// endpoints from the env file `make run` writes.
func runSend(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devstack send", flag.ContinueOnError)
	stream := fs.String("stream", orEnv("KINESIS_STREAM", "telemetry-events"), "stream")
	n := fs.Int("n", 20000, "builds to write")
	days := fs.Int("days", 30, "days before now the builds are spread over")
	seed := fs.Uint64("seed", 1, "corpus seed: the same seed writes the same builds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *days <= 0 {
		return errors.New("send: -n and -days must be positive")
	}
	e, ok, err := devstack.EndpointsFromEnv()
	if err != nil || !ok {
		return fmt.Errorf("no local stack in the environment (source .run/stack.env): %v", err)
	}
	enc, err := event.NewRecordEncoder()
	if err != nil {
		return err
	}
	gen := corpus.NewNetlifyAdoption(*seed, time.Now().UTC(), *days)
	// 100 events a record, as the gateway packs a busy second's events.
	const perRecord = 100
	var entries []kinesistypes.PutRecordsRequestEntry
	for i := 0; i < *n; i += perRecord {
		var evs [][]byte
		for j := i; j < min(i+perRecord, *n); j++ {
			tr := gen.Next()
			ts := time.UnixMilli(tr.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z")
			b, err := json.Marshal(map[string]any{
				"messageId": fmt.Sprintf("seed-%d-%d", *seed, j), "type": "track", "event": tr.Event, "userId": tr.UserID,
				"timestamp": ts, "receivedAt": ts, "properties": tr.Properties,
				"context": map[string]any{"library": map[string]string{"name": "devstack-send"}},
			})
			if err != nil {
				return fmt.Errorf("send: encode build: %w", err)
			}
			evs = append(evs, b)
		}
		entries = append(entries, kinesistypes.PutRecordsRequestEntry{Data: enc.Encode(nil, evs), PartitionKey: aws.String(fmt.Sprintf("seed-%d-%d", *seed, i))})
	}
	if err := devstack.PutRecords(ctx, devstack.Attach(e).Kinesis(), *stream, entries); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %d builds over the last %d days into stream %s\n", *n, *days, *stream)
	return nil
}
