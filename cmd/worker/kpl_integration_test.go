//go:build integration

package main

import (
	"context"
	"crypto/md5"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// TestKPLProducer: a producer writes KPL aggregates, as the Kinesis
// Producer Library, Fluent Bit and the Kinesis agent do, among them one
// whose protobuf does not decode and one whose user record names a
// partition key outside its table (the record that made the library
// panic), then plain events. The worker survives both, every valid event
// reaches the file and S3 sinks exactly once, and the two poison records
// are parked.
func TestKPLProducer(t *testing.T) {
	e := newEnv(t, 1)
	var users [][]byte
	var ids []string
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("kpl-%d", i)
		ids = append(ids, id)
		users = append(users, fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"build","userId":"u","timestamp":"2026-11-27T12:00:00.000Z","receivedAt":"2026-11-27T12:00:00.000Z"}`, id))
	}
	digest := func(body []byte) []byte {
		out := append([]byte{0xF3, 0x89, 0x9A, 0xC2}, body...)
		sum := md5.Sum(body)
		return append(out, sum[:]...)
	}
	badProto := digest([]byte{0x1a, 0x7f, 0x08}) // length past the end
	badIndex := digest([]byte{0x0a, 0x01, 'k', 0x1a, 0x07, 0x08, 0x09, 0x1a, 0x03, '{', '}', ' '})
	entries := []types.PutRecordsRequestEntry{
		{Data: event.EncodeKPL([]string{"a", "b", "c"}, users), PartitionKey: aws.String("a")},
		{Data: badProto, PartitionKey: aws.String("p")},
		{Data: badIndex, PartitionKey: aws.String("i")},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devstack.PutRecords(ctx, e.s.Kinesis(), e.stream, entries); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, e.put("after", 10)...)
	w := e.startWorker("kp", "S3_BUCKET="+e.bucket, "S3_BUFFER_INTERVAL=1s")
	waitFor(t, "every valid event in the file sink", time.Minute, allDelivered(t, ids, w))
	waitFor(t, "every valid event in S3", time.Minute, func() bool {
		got := s3Events(t, e)
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	got, _ := delivered(t, w)
	s3 := s3Events(t, e)
	for _, id := range ids {
		if got[id] != 1 || s3[id] != 1 {
			t.Errorf("%s: %d times in the file sink, %d in S3; want once each", id, got[id], s3[id])
		}
	}
	select {
	case err := <-w.done:
		t.Fatalf("the worker exited: %v", err)
	default:
	}
	if n := strings.Count(w.logs.String(), "parking undecodable record"); n != 2 {
		t.Errorf("%d records parked as undecodable, want the 2 poison aggregates", n)
	}
}
