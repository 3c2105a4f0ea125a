package deadletter

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/internal/testkit/mems3"
	"github.com/buildtelemetry/pipeline/processor"
)

// TestRedrivePassOrderAndOwnership: one pass re-drives the shards held,
// in sequence order across the transient reasons, leaves permanent
// letters and other workers' shards alone, and does nothing while the
// sink's breaker is open.
func TestRedrivePassOrderAndOwnership(t *testing.T) {
	ctx := context.Background()
	store, err := New(mems3.New(), Config{Bucket: "dl"})
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
	reg := prometheus.NewRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the letters get an age
	if err := r.pass(ctx, sink, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if got := sink.raws(); len(got) != 0 {
		t.Fatalf("breaker open, yet %d events re-driven", len(got))
	}
	backlog, age := testutil.ToFloat64(r.backlog.WithLabelValues("seg")), testutil.ToFloat64(r.oldest.WithLabelValues("seg"))
	if backlog != 2 || age < 0.02 {
		t.Errorf("breaker open: backlog %v, oldest letter %v s; want the 2 letters of my shard, at least 0.02 s old", backlog, age)
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
	if backlog, age := testutil.ToFloat64(r.backlog.WithLabelValues("seg")), testutil.ToFloat64(r.oldest.WithLabelValues("seg")); backlog != 0 || age != 0 {
		t.Errorf("after the re-drive: backlog %v, oldest letter %v s; want 0 and 0", backlog, age)
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

// partialSink delivers at most budget events per writer, at once, then
// fails every Write transiently, and tells which events it delivered, as
// the GA4 sink does (processor.PartialWriter).
type partialSink struct {
	budget    int
	delivered []string // raw events, in order, across writers
}

func (s *partialSink) Name() string { return "ga4" }
func (s *partialSink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &partialWriter{s: s, left: s.budget, sent: map[string]bool{}}, nil
}

type partialWriter struct {
	s       *partialSink
	left    int
	sent    map[string]bool // seq/index
	durable string
}

func (w *partialWriter) Write(_ context.Context, recs []processor.Record) error {
	for _, r := range recs {
		for i, raw := range r.Raw {
			k := fmt.Sprint(r.SequenceNumber, "/", i)
			if w.sent[k] {
				continue
			}
			if w.left == 0 {
				return fmt.Errorf("503 after %d events", w.s.budget)
			}
			w.left--
			w.sent[k] = true
			w.s.delivered = append(w.s.delivered, string(raw))
		}
	}
	w.durable = recs[len(recs)-1].SequenceNumber
	return nil
}
func (w *partialWriter) Flush(context.Context) error { return nil }
func (w *partialWriter) Durable() string             { return w.durable }
func (w *partialWriter) Close() error                { return nil }
func (w *partialWriter) Delivered(seq string, i int) bool {
	return w.sent[fmt.Sprint(seq, "/", i)]
}

// TestRedrivePartialKeepsOnlyTheRest: a re-drive that fails part way into
// a sink that cannot deduplicate rewrites the letter with only what it
// did not deliver, so the next re-drives send every event exactly once.
func TestRedrivePartialKeepsOnlyTheRest(t *testing.T) {
	ctx := context.Background()
	store, err := New(mems3.New(), Config{Bucket: "dl"})
	if err != nil {
		t.Fatal(err)
	}
	l := processor.Letter{Sink: "ga4", Reason: processor.ReasonBreakerOpen, Stream: "s", Shard: "sh", ParkedAt: time.Now()}
	var want []string
	for seq := 1; seq <= 5; seq++ {
		for j := range 2 {
			raw := fmt.Sprintf(`{"messageId":"m-%d-%d","type":"track","event":"e","userId":"u"}`, seq, j)
			want = append(want, raw)
			l.Entries = append(l.Entries, processor.LetterEntry{SequenceNumber: fmt.Sprint(seq), Event: []byte(raw)})
		}
	}
	key := mustPark(t, store, l)
	sink := &partialSink{budget: 4}
	for pass := 1; pass <= 3; pass++ {
		res := replayLetter(ctx, store, sink, key)
		if pass < 3 && (res.Err == nil || res.Events != 4) {
			t.Fatalf("pass %d: %+v, want a failure after 4 events", pass, res)
		}
		if pass == 3 && (res.Err != nil || !res.Deleted || res.Events != 2) {
			t.Fatalf("pass 3: %+v, want the last 2 events and the letter deleted", res)
		}
	}
	if !slices.Equal(sink.delivered, want) {
		t.Errorf("delivered\n%v\nwant each event once, in order\n%v", sink.delivered, want)
	}
}
