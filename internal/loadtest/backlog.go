package loadtest

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// PutBacklog writes n Netlify-shaped events (messageIds backlog-0 to
// backlog-<n-1>) straight to stream, packed as the gateway packs them
// under load: records of up to 256 KiB of events, 500 records or 5 MiB
// per PutRecords call, failed entries retried. It builds the backlog an
// outage leaves, without the gateway's pace.
func PutBacklog(ctx context.Context, kc *kinesis.Client, enc *event.RecordEncoder, stream string, n int) error {
	g := corpus.NewNetlify(11)
	normalizer := &event.Normalizer{}
	received := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var entries []types.PutRecordsRequestEntry
	var evs [][]byte
	raw, callBytes := 0, 0
	flushCall := func() error {
		err := devstack.PutRecords(ctx, kc, stream, entries)
		entries, callBytes = entries[:0], 0
		return err
	}
	cut := func() error {
		if len(evs) == 0 {
			return nil
		}
		data := enc.Encode(nil, evs)
		if len(entries) == 500 || callBytes+len(data) > 5<<20 {
			if err := flushCall(); err != nil {
				return err
			}
		}
		entries = append(entries, types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(strconv.Itoa(len(entries)) + "-" + strconv.Itoa(raw))})
		callBytes += len(data)
		evs, raw = nil, 0
		return nil
	}
	for i := 0; i < n; i++ {
		b := g.NextJSON()
		// Normalised as the gateway does, with a known messageId.
		b = fmt.Appendf(b[:len(b)-1], `,"messageId":"backlog-%d"}`, i)
		req, err := event.DecodeRequest(b, event.Single, event.Track, 0)
		if err != nil {
			return fmt.Errorf("put backlog: %w", err)
		}
		norm, err := normalizer.Normalize(req, event.Meta{Source: "backlog", ReceivedAt: received})
		if err != nil || len(norm) != 1 {
			return fmt.Errorf("put backlog: normalize: %v", err)
		}
		b = norm[0].AppendJSON(nil)
		if event.RecordSize(len(evs)+1, raw+len(b)) > 256<<10 {
			if err := cut(); err != nil {
				return err
			}
		}
		evs = append(evs, b)
		raw += len(b)
	}
	if err := cut(); err != nil {
		return err
	}
	return flushCall()
}
