package kclproc_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/kcladapter"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// FuzzGetRecords feeds three records of any bytes through what the
// worker does to a GetRecords answer (the middleware that hides KPL
// aggregates from the library, then the processor) with a recording sink:
// nothing panics, not even into the processor's last-line recover, and
// the shard goes on past all three.
func FuzzGetRecords(f *testing.F) {
	enc, err := event.NewRecordEncoder()
	if err != nil {
		f.Fatal(err)
	}
	ok := []byte(`{"messageId":"a","type":"track","event":"build","userId":"u"}`)
	ours := enc.Encode(nil, [][]byte{ok, []byte(`{"messageId":"b","type":"identify","anonymousId":"x"}`)})
	agg := event.EncodeKPL([]string{"k1", "k2"}, [][]byte{ok, ours, []byte("not json")})
	f.Add(ok, ours, agg)
	f.Add(agg[:len(agg)-3], []byte(`[{"messageId":"c","type":"track","event":"e","userId":"u"}]`), []byte{})
	f.Add(event.WrapKPL(agg), []byte("{"), ours[:len(ours)/2])
	// One factory for every input (its decoders are costly to build);
	// each input gets a shard of its own.
	h := &harness{store: &pt.Store{}, dlq: &pt.DeadLetters{}}
	fac, err := kclproc.NewFactory(kclproc.Config{WorkerID: "w1", Stream: "s", CheckpointInterval: time.Nanosecond},
		[]processor.Sink{&pt.Sink{SinkName: "s"}}, h.dlq, h.store, zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	h.f = fac
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		shard := fmt.Sprint("sh-", n.Add(1))
		recs := pt.KinesisRecords("f", 1, 3, 1)
		for i, d := range [][]byte{a, b, c} {
			recs[i].Data = d
		}
		kcladapter.HideRecords(recs)
		p := h.start(shard)
		process(p, recs)
		p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED})
		for _, l := range h.dlq.Letters() {
			if l.Shard == shard && strings.Contains(l.Error, "panic") {
				t.Fatalf("recovered a panic: %s", l.Error)
			}
		}
		if got := h.store.Progress(shard).Checkpoint; got != "3" {
			t.Fatalf("checkpoint %q after three records, want 3", got)
		}
	})
}
