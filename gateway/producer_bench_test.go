package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
)

// BenchmarkProducer measures the producer alone, against a Kinesis that
// answers at once: many writers, as concurrent requests are, each writing
// Netlify-shaped events. It reports events/s and the bytes per event that
// Kinesis would bill, after packing and compression.
func BenchmarkProducer(b *testing.B) {
	gen := corpus.NewNetlify(1)
	pool := make([]Message, 4096)
	raw := 0
	for i := range pool {
		pool[i] = Message{ID: fmt.Sprintf("%08x-bench-%04d", i*2654435761, i), Data: gen.NextJSON()}
		raw += len(pool[i].Data)
	}
	api := PutRecordsFunc(func(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
		out := &kinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(0), Records: make([]types.PutRecordsResultEntry, len(in.Records))}
		for i := range out.Records {
			out.Records[i].SequenceNumber = aws.String("1")
		}
		return out, nil
	})
	for _, perWrite := range []int{1, 20} {
		b.Run(fmt.Sprintf("events=%d", perWrite), func(b *testing.B) {
			enc, err := event.NewRecordEncoder()
			if err != nil {
				b.Fatal(err)
			}
			p, err := NewProducer(api, enc, ProducerConfig{StreamName: "bench"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(raw / len(pool) * perWrite))
			b.ReportAllocs()
			b.SetParallelism(256) // writers per CPU: each waits about Linger per Write, so it takes many to load the producer
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(int64(perWrite))) % (len(pool) - perWrite)
					if err := p.Write(context.Background(), pool[i:i+perWrite]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if err := p.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			st := p.Stats()
			b.ReportMetric(float64(st.Events)/b.Elapsed().Seconds(), "events/s")
			if st.Events > 0 {
				b.ReportMetric(float64(st.Bytes)/float64(st.Events), "bytes/event")
				b.ReportMetric(float64(raw)/float64(len(pool)), "raw-bytes/event")
				b.ReportMetric(float64(st.Events)/float64(st.Records), "events/record")
				b.ReportMetric(float64(st.Events)/float64(st.Calls), "events/call")
			}
		})
	}
}
