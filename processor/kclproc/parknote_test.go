package kclproc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// notingSink is a recording sink that is a processor.ParkNoter, as the
// DynamoDB counters are: it logs each write and each note recorded, in
// order, and fails both while down.
type notingSink struct {
	*pt.Sink
	down atomic.Bool
	mu   sync.Mutex
	log  []string
}

func newNotingSink() *notingSink {
	n := &notingSink{}
	n.Sink = &pt.Sink{SinkName: "counts", Fail: func(op string, recs []processor.Record) error {
		if n.down.Load() {
			return errors.New("503 service unavailable")
		}
		if op == "write" && len(recs) > 0 {
			n.add("write " + recs[0].SequenceNumber + ".." + recs[len(recs)-1].SequenceNumber)
		}
		return nil
	}}
	return n
}

func (n *notingSink) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, s)
}

func (n *notingSink) entries() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.log)
}

func (n *notingSink) ParkNote(shard string, id processor.LetterID, recs []processor.Record) processor.ParkNote {
	if id.Shard != shard || id.FirstSeq != recs[0].SequenceNumber || id.LastSeq != recs[len(recs)-1].SequenceNumber {
		panic(fmt.Sprintf("note %+v for %d records of %s", id, len(recs), shard))
	}
	return noteFunc(func(context.Context) error {
		if n.down.Load() {
			return errors.New("503 service unavailable")
		}
		n.add("note " + id.FirstSeq + ".." + id.LastSeq)
		return nil
	})
}

type noteFunc func(context.Context) error

func (f noteFunc) Record(ctx context.Context) error { return f(ctx) }

// parkTwoRanges starts a processor whose counters are down, with
// retries that run out at once, and has it park two ranges (1..5, 6..10).
func parkTwoRanges(t *testing.T) (*harness, *notingSink, kcl.IRecordProcessor) {
	t.Helper()
	counts := newNotingSink()
	h := newHarnessWith(t, kclproc.Config{RetryBudget: 5 * time.Millisecond, Breaker: kclproc.BreakerConfig{Failures: 1000, OpenTimeout: time.Hour}},
		counts, &pt.Sink{SinkName: "fast"})
	p := h.start("sh")
	counts.down.Store(true)
	process(p, pt.KinesisRecords("x", 1, 5, 2))
	process(p, pt.KinesisRecords("y", 6, 5, 2))
	if got := len(parkedEvents(h.dlq, "counts")); got != 20 {
		t.Fatalf("%d events parked for the counters, want 20", got)
	}
	prog := h.store.Progress("sh")
	if prog.Sinks["counts"].Watermark != "" || prog.Checkpoint != "" || prog.Sinks["fast"].Watermark != "10" {
		t.Fatalf("while the notes wait: counts watermark %q, checkpoint %q, fast %q; want none, none, 10",
			prog.Sinks["counts"].Watermark, prog.Checkpoint, prog.Sinks["fast"].Watermark)
	}
	return h, counts, p
}

// Records parked for a ParkNoter sink are noted, in order, before the sink
// gets anything newer; until then the sink's saved watermark (and so the
// checkpoint) stays below them.
func TestParkNotesBeforeNewerWrites(t *testing.T) {
	h, counts, p := parkTwoRanges(t)
	counts.down.Store(false)
	process(p, pt.KinesisRecords("z", 11, 5, 2))
	if got, want := counts.entries(), []string{"note 1..5", "note 6..10", "write 11..15"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if prog := h.store.Progress("sh"); prog.Sinks["counts"].Watermark != "15" || prog.Checkpoint != "15" {
		t.Errorf("after the notes: counts watermark %q, checkpoint %q; want 15", prog.Sinks["counts"].Watermark, prog.Checkpoint)
	}
}

// A crash before the notes are recorded: the next lease delivers the
// parked ranges to the counters live (their letters, never noted, then
// add nothing when re-driven), and to no other sink.
func TestCrashBeforeParkNotes(t *testing.T) {
	h, counts, _ := parkTwoRanges(t)
	counts.down.Store(false)
	p2 := h.start("sh")
	process(p2, pt.KinesisRecords("x", 1, 5, 2))
	process(p2, pt.KinesisRecords("y", 6, 5, 2))
	if got, want := counts.entries(), []string{"write 1..5", "write 6..10"}; !slices.Equal(got, want) {
		t.Errorf("after the crash the counters got %v, want both ranges live", got)
	}
	for id, n := range h.sinks[0].Delivered() {
		if n != 1 {
			t.Errorf("fast sink got %s %d times", id, n)
		}
	}
}

// partialSink delivers the first budget events it is given, then fails
// every Write, and tells which events it delivered (a PartialWriter, as
// the GA4 sink is).
type partialSink struct {
	budget int
	mu     sync.Mutex
	sent   map[string]bool // seq/index
}

func (s *partialSink) Name() string { return "ga4" }
func (s *partialSink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &partialWriter{s: s}, nil
}

type partialWriter struct{ s *partialSink }

func (w *partialWriter) Write(_ context.Context, recs []processor.Record) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, r := range recs {
		for i := range r.Events {
			k := fmt.Sprint(r.SequenceNumber, "/", i)
			if w.s.sent[k] {
				continue
			}
			if len(w.s.sent) == w.s.budget {
				return errors.New("503 service unavailable")
			}
			w.s.sent[k] = true
		}
	}
	return nil
}
func (w *partialWriter) Flush(context.Context) error { return nil }
func (w *partialWriter) Durable() string             { return "" }
func (w *partialWriter) Close() error                { return nil }
func (w *partialWriter) Delivered(seq string, i int) bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.sent[fmt.Sprint(seq, "/", i)]
}

// What a PartialWriter delivered before its Write failed for good is not
// parked: a re-drive would deliver it twice. And the progress is saved at
// once after parking, so that a crash cannot park the same records again.
func TestPartialDeliveryNotParked(t *testing.T) {
	ga4 := &partialSink{budget: 7, sent: map[string]bool{}}
	h := newHarnessWith(t, kclproc.Config{RetryBudget: 5 * time.Millisecond, CheckpointInterval: time.Hour,
		Breaker: kclproc.BreakerConfig{Failures: 1000, OpenTimeout: time.Hour}}, ga4)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 5, 2))
	parked := parkedEvents(h.dlq, "ga4")
	if len(parked) != 3 {
		t.Fatalf("%d events parked, want the 3 not delivered", len(parked))
	}
	for _, l := range h.dlq.Letters() {
		for _, e := range l.Entries {
			if processor.CompareSeq(e.SequenceNumber, "4") < 0 {
				t.Errorf("event of record %s parked, though delivered", e.SequenceNumber)
			}
		}
	}
	if got := h.store.Progress("sh").Sinks["ga4"].Watermark; got != "5" {
		t.Errorf("ga4 watermark %q right after parking, want 5 (saved at once despite the hour-long interval)", got)
	}
}
