package kclproc_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// TestKPLAggregates: every user record of an aggregate reaches every
// sink; a user record or an aggregate that does not decode is parked
// with its reason, its neighbours delivered; the checkpoint passes them.
func TestKPLAggregates(t *testing.T) {
	s := &pt.Sink{SinkName: "s"}
	h := newHarness(t, kclproc.Config{}, s)
	var users [][]byte
	var want []string
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("kpl-%d", i)
		want = append(want, id)
		users = append(users, fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"build","userId":"u"}`, id))
	}
	recs := pt.KinesisRecords("x", 1, 4, 1)
	recs[0].Data = event.WrapKPL(event.EncodeKPL([]string{"a", "b"}, users))
	recs[1].Data = event.WrapKPL(event.EncodeKPL([]string{"a"}, [][]byte{[]byte(`{"messageId":"ok-1","type":"track","event":"e","userId":"u"}`), []byte("not json")}))
	bad := event.EncodeKPL([]string{"a"}, users[:1])
	bad[len(bad)-1] ^= 1 // digest no longer matches
	recs[2].Data = event.WrapKPL(bad)
	process(h.start("sh"), recs)

	wantDelivered(t, s, append(want, "ok-1", "x-4-0"))
	if got := len(s.Delivered()); got != 52 {
		t.Errorf("%d events delivered, want 52", got)
	}
	var reasons []string
	for _, l := range h.dlq.Letters() {
		if l.Sink != processor.DecodeSink {
			t.Errorf("letter for sink %s", l.Sink)
		}
		reasons = append(reasons, l.Error)
	}
	if len(reasons) != 2 || !strings.Contains(strings.Join(reasons, "|"), "KPL user record 1") || !strings.Contains(strings.Join(reasons, "|"), "MD5") {
		t.Errorf("letters %q, want the bad user record and the bad digest", reasons)
	}
	if got := h.store.Progress("sh").Checkpoint; got != "4" {
		t.Errorf("checkpoint %q, want 4", got)
	}
}

// TestSinkPanicParked: a sink that panics on a batch has that batch
// parked as a permanent failure; the other sink, the shard and the
// process go on.
func TestSinkPanicParked(t *testing.T) {
	bad := &pt.Sink{SinkName: "bad", Fail: func(op string, recs []processor.Record) error {
		if op == "write" && recs[0].SequenceNumber == "1" {
			panic("index out of range")
		}
		return nil
	}}
	good := &pt.Sink{SinkName: "good"}
	h := newHarness(t, kclproc.Config{}, bad, good)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 2, 1))
	process(p, pt.KinesisRecords("x", 3, 1, 1))
	wantDelivered(t, good, ids("x", 1, 3, 1))
	wantDelivered(t, bad, ids("x", 3, 1, 1))
	parked := parkedEvents(h.dlq, "bad")
	if len(parked) != 2 {
		t.Fatalf("%d events parked for the panicking sink, want 2", len(parked))
	}
	for _, reason := range parked {
		if reason != processor.ReasonPermanent {
			t.Errorf("parked as %s, want %s", reason, processor.ReasonPermanent)
		}
	}
	if got := h.store.Progress("sh").Checkpoint; got != "3" {
		t.Errorf("checkpoint %q, want 3", got)
	}
}

// stopAtSink makes durable only the records up to a position, as a sink
// that crashed part way through an aggregate would have: it records what
// each writer is given.
type stopAtSink struct {
	at  string // last position made durable; "" for everything
	got []string
}

func (s *stopAtSink) Name() string { return "partial" }
func (s *stopAtSink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &stopAtWriter{s: s}, nil
}

type stopAtWriter struct {
	s       *stopAtSink
	durable string
}

func (w *stopAtWriter) Write(_ context.Context, recs []processor.Record) error {
	for _, r := range recs {
		w.s.got = append(w.s.got, r.SequenceNumber)
		if w.s.at == "" || processor.CompareSeq(r.SequenceNumber, w.s.at) <= 0 {
			w.durable = r.SequenceNumber
		}
	}
	return nil
}
func (w *stopAtWriter) Flush(context.Context) error { return nil }
func (w *stopAtWriter) Durable() string             { return w.durable }
func (w *stopAtWriter) Close() error                { return nil }

// TestProgressInsideAggregate: each user record of an aggregate is its own
// position (seq.sub). A sink that made the aggregate durable only up to
// user record 2 when the worker crashed gets exactly user records 3 and on
// from the next lease; a sink that had finished gets nothing again; the
// checkpoint stays before the aggregate until every sink passes it.
func TestProgressInsideAggregate(t *testing.T) {
	partial, fast := &stopAtSink{}, &pt.Sink{SinkName: "fast"}
	h := newHarnessWith(t, kclproc.Config{}, partial, fast)
	recs := pt.KinesisRecords("x", 1, 3, 1)
	var users [][]byte
	for i := range 6 {
		users = append(users, fmt.Appendf(nil, `{"messageId":"kpl-%d","type":"track","event":"build","userId":"u"}`, i))
	}
	recs[1].Data = event.WrapKPL(event.EncodeKPL([]string{"a"}, users))
	agg := *recs[1].SequenceNumber
	partial.at = processor.UserSeq(agg, 2)
	process(h.start("sh"), recs)

	prog := h.store.Progress("sh")
	if prog.Checkpoint != *recs[0].SequenceNumber || prog.Sinks["partial"].Watermark != partial.at || prog.Sinks["fast"].Watermark != *recs[2].SequenceNumber {
		t.Fatalf("progress %+v: want the checkpoint before the aggregate, the partial sink at its user record 2", prog)
	}
	// Crash; the next lease reads from the checkpoint.
	partial.got, partial.at = nil, ""
	process(h.start("sh"), recs[1:])
	want := []string{processor.UserSeq(agg, 3), processor.UserSeq(agg, 4), processor.UserSeq(agg, 5), *recs[2].SequenceNumber}
	if !slices.Equal(partial.got, want) {
		t.Errorf("after the crash the partial sink got %v, want %v", partial.got, want)
	}
	for id, n := range fast.Delivered() {
		if n != 1 {
			t.Errorf("fast sink got %s %d times", id, n)
		}
	}
	if got := h.store.Progress("sh").Checkpoint; got != *recs[2].SequenceNumber {
		t.Errorf("checkpoint %q, want %s", got, *recs[2].SequenceNumber)
	}
}
