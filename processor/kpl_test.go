package processor_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// TestKPLAggregates: every user record of an aggregate reaches every
// sink; a user record or an aggregate that does not decode is parked
// with its reason, its neighbours delivered; the checkpoint passes them.
func TestKPLAggregates(t *testing.T) {
	s := &pt.Sink{SinkName: "s"}
	h := newHarness(t, processor.Config{}, s)
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
	h := newHarness(t, processor.Config{}, bad, good)
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
