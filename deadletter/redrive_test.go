package deadletter

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/processor"
)

// TestRedrivePassOrderAndOwnership: one pass re-drives the shards held,
// in sequence order across the transient reasons, leaves permanent
// letters and other workers' shards alone, and does nothing while the
// sink's breaker is open.
func TestRedrivePassOrderAndOwnership(t *testing.T) {
	ctx := context.Background()
	store, err := New(memS3(t), Config{Bucket: "dl"})
	if err != nil {
		t.Fatal(err)
	}
	park := func(reason, shard string, first, last int) {
		t.Helper()
		l := processor.Letter{Sink: "seg", Reason: reason, Stream: "s", Shard: shard, ParkedAt: time.Now()}
		for seq := first; seq <= last; seq++ {
			l.Entries = append(l.Entries, processor.LetterEntry{SequenceNumber: fmt.Sprint(seq),
				Event: fmt.Appendf(nil, `{"messageId":"%s-%d","type":"track","event":"e","userId":"u"}`, shard, seq)})
		}
		if err := store.Park(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	park(processor.ReasonBreakerOpen, "mine", 100, 101)
	park(processor.ReasonRetriesExhausted, "mine", 50, 51) // earlier, under the other reason
	park(processor.ReasonPermanent, "mine", 70, 70)
	park(processor.ReasonBreakerOpen, "theirs", 10, 10)

	sink := &testSink{name: "seg"}
	healthy := false
	r := &Redriver{Store: store, Sinks: []processor.Sink{sink}, Stream: "s",
		Healthy: func(string) bool { return healthy },
		Shards:  func() []string { return []string{"mine"} },
		Owns:    func(string) bool { return true }}
	if err := r.pass(ctx, sink, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if got := sink.raws(); len(got) != 0 {
		t.Fatalf("breaker open, yet %d events re-driven", len(got))
	}
	healthy = true
	if err := r.pass(ctx, sink, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, raw := range sink.raws() {
		ids = append(ids, raw[len(`{"messageId":"`):len(raw)-len(`","type":"track","event":"e","userId":"u"}`)])
	}
	if want := []string{"mine-50", "mine-51", "mine-100", "mine-101"}; !slices.Equal(ids, want) {
		t.Errorf("re-drove %v, want %v (sequence order across reasons)", ids, want)
	}
	for reason, want := range map[string]int{processor.ReasonPermanent: 1, processor.ReasonBreakerOpen: 1, processor.ReasonRetriesExhausted: 0} {
		keys, err := store.List(ctx, "seg", reason)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != want {
			t.Errorf("%s: %d letters left %v, want %d (permanent stays; the other worker's shard stays)", reason, len(keys), keys, want)
		}
	}
}
