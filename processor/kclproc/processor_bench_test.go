package kclproc_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// BenchmarkProcessRecords: decode and fan out one 10,000-event batch to
// four sinks that accept at once. Run with -cpu 1 for the per-core figure.
func BenchmarkProcessRecords(b *testing.B) {
	g := corpus.NewNetlify(7)
	norm := &event.Normalizer{}
	var events [][]byte
	for len(events) < 10000 {
		req, _ := event.DecodeRequest(g.NextJSON(), event.Single, event.Track, 0)
		evs, err := norm.Normalize(req, event.Meta{Source: "bench", ReceivedAt: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, evs[0].AppendJSON(nil))
	}
	enc, _ := event.NewRecordEncoder()
	var batch []types.Record
	for i := 0; i < len(events); i += 100 {
		batch = append(batch, types.Record{Data: enc.Encode(nil, events[i:i+100])})
	}
	var sinks []processor.Sink
	for _, n := range []string{"a", "b", "c", "d"} {
		sinks = append(sinks, &pt.Sink{SinkName: n})
	}
	f, err := kclproc.NewFactory(kclproc.Config{WorkerID: "w", Stream: "s"}, sinks, &pt.DeadLetters{}, &pt.Store{}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	p := f.CreateProcessor()
	p.Initialize(&kcl.InitializationInput{ShardId: "sh"})
	seq := 0
	for b.Loop() {
		for i := range batch {
			seq++
			batch[i].SequenceNumber = aws.String(strconv.Itoa(seq))
		}
		p.ProcessRecords(&kcl.ProcessRecordsInput{Records: batch})
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}
