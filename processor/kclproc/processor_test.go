package kclproc_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap/zaptest"

	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

type harness struct {
	t     *testing.T
	f     *kclproc.Factory
	store *pt.Store
	dlq   *pt.DeadLetters
	sinks []*pt.Sink
}

func newHarness(t *testing.T, cfg kclproc.Config, sinks ...*pt.Sink) *harness {
	t.Helper()
	var ps []processor.Sink
	for _, s := range sinks {
		ps = append(ps, s)
	}
	return newHarnessWith(t, cfg, ps...)
}

// newHarnessWith is newHarness for sinks of any type; h.sinks holds the
// *pt.Sink ones.
func newHarnessWith(t *testing.T, cfg kclproc.Config, ps ...processor.Sink) *harness {
	t.Helper()
	h := &harness{t: t, store: &pt.Store{}, dlq: &pt.DeadLetters{}}
	for _, s := range ps {
		if s, ok := s.(*pt.Sink); ok {
			h.sinks = append(h.sinks, s)
		}
	}
	cfg.WorkerID = cmp.Or(cfg.WorkerID, "w1")
	cfg.Stream = "s"
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	cfg.CheckpointInterval = cmp.Or(cfg.CheckpointInterval, time.Nanosecond)
	f, err := kclproc.NewFactory(cfg, ps, h.dlq, h.store, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h.f = f
	return h
}

func (h *harness) start(shard string) kcl.IRecordProcessor {
	p := h.f.CreateProcessor()
	p.Initialize(&kcl.InitializationInput{ShardId: shard, ExtendedSequenceNumber: &kcl.ExtendedSequenceNumber{SequenceNumber: aws.String(h.store.Progress(shard).Checkpoint)}})
	return p
}

func process(p kcl.IRecordProcessor, recs []types.Record) {
	p.ProcessRecords(&kcl.ProcessRecordsInput{Records: recs, Checkpointer: &pt.Checkpointer{}})
}

func ids(prefix string, first, n, per int) []string {
	var out []string
	for i := 0; i < n; i++ {
		for j := 0; j < per; j++ {
			out = append(out, fmt.Sprintf("%s-%d-%d", prefix, first+i, j))
		}
	}
	return out
}

func wantDelivered(t *testing.T, s *pt.Sink, want []string) {
	t.Helper()
	got := s.Delivered()
	for _, id := range want {
		if got[id] == 0 {
			t.Errorf("sink %s: %s not delivered", s.SinkName, id)
		}
	}
}

func parkedEvents(dlq *pt.DeadLetters, sink string) map[string]string {
	out := map[string]string{}
	for _, l := range dlq.Letters() {
		if l.Sink != sink {
			continue
		}
		for _, e := range l.Entries {
			out[string(e.Event)] = l.Reason
		}
	}
	return out
}

func TestFanOutToAllSinks(t *testing.T) {
	a, b := &pt.Sink{SinkName: "a"}, &pt.Sink{SinkName: "b"}
	h := newHarness(t, kclproc.Config{}, a, b)
	p := h.start("shard-1")
	process(p, pt.KinesisRecords("x", 100, 10, 3))
	wantDelivered(t, a, ids("x", 100, 10, 3))
	wantDelivered(t, b, ids("x", 100, 10, 3))
	if got := h.store.Progress("shard-1").Checkpoint; got != "109" {
		t.Errorf("checkpoint %q, want 109", got)
	}
}

// A sink that fails with 5xx: retried, its breaker opens, its records are
// parked, and the other sink and the checkpoint move on.
func TestFailingSinkIsParkedOthersContinue(t *testing.T) {
	bad := &pt.Sink{SinkName: "bad", Fail: func(string, []processor.Record) error { return errors.New("503 service unavailable") }}
	good := &pt.Sink{SinkName: "good"}
	h := newHarness(t, kclproc.Config{Breaker: kclproc.BreakerConfig{Failures: 3, OpenTimeout: time.Hour}}, bad, good)
	p := h.start("shard-1")
	process(p, pt.KinesisRecords("x", 1, 5, 2))
	process(p, pt.KinesisRecords("y", 6, 5, 2))
	wantDelivered(t, good, append(ids("x", 1, 5, 2), ids("y", 6, 5, 2)...))
	if n := bad.Calls(); n != 3 {
		t.Errorf("bad sink called %d times, want 3 (then the breaker is open)", n)
	}
	parked := h.dlq.Letters()
	if len(parked) != 2 {
		t.Fatalf("got %d letters, want 2", len(parked))
	}
	for _, l := range parked {
		if l.Sink != "bad" || l.Reason != processor.ReasonBreakerOpen || len(l.Entries) != 10 {
			t.Errorf("letter %s/%s with %d entries", l.Sink, l.Reason, len(l.Entries))
		}
	}
	if got := h.store.Progress("shard-1").Checkpoint; got != "10" {
		t.Errorf("checkpoint %q, want 10: parked records are durable", got)
	}
}

// 429 with Retry-After: the retry waits at least that long and succeeds.
func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	s := &pt.Sink{SinkName: "s", Fail: func(op string, _ []processor.Record) error {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) < 3 {
			return processor.RetryAfter(errors.New("429 too many requests"), 150*time.Millisecond)
		}
		return nil
	}}
	h := newHarness(t, kclproc.Config{}, s)
	process(h.start("sh"), pt.KinesisRecords("x", 1, 2, 1))
	wantDelivered(t, s, ids("x", 1, 2, 1))
	if len(times) != 3 {
		t.Fatalf("%d calls, want 3", len(times))
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 150*time.Millisecond {
			t.Errorf("retry %d came after %v, before the Retry-After of 150ms", i, gap)
		}
	}
	if len(h.dlq.Letters()) != 0 {
		t.Error("nothing should be parked")
	}
}

// A hanging sink is cut off by the call timeout, counts as a failure, and
// is parked once the breaker opens.
func TestHangingSinkTimesOut(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang := &pt.Sink{SinkName: "hang", Fail: func(string, []processor.Record) error {
		<-release
		return nil
	}}
	// The fake ignores ctx, so wrap it: the processor must not wait for
	// the call itself but the timeout must still be charged. A real sink
	// honours ctx; this one does too through ctxSink.
	s := &ctxSink{Sink: hang}
	h := newHarness(t, kclproc.Config{CallTimeout: 20 * time.Millisecond, Breaker: kclproc.BreakerConfig{Failures: 2, OpenTimeout: time.Hour}}, nil...)
	f, err := kclproc.NewFactory(kclproc.Config{WorkerID: "w", Stream: "s", CallTimeout: 20 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, CheckpointInterval: time.Nanosecond,
		Breaker: kclproc.BreakerConfig{Failures: 2, OpenTimeout: time.Hour}}, []processor.Sink{s}, h.dlq, h.store, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p := f.CreateProcessor()
	p.Initialize(&kcl.InitializationInput{ShardId: "sh"})
	done := make(chan struct{})
	go func() {
		process(p, pt.KinesisRecords("x", 1, 2, 1))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ProcessRecords blocked on a hanging sink")
	}
	if got := parkedEvents(h.dlq, "hang"); len(got) != 2 {
		t.Errorf("parked %d events, want 2", len(got))
	}
}

// ctxSink makes a fake's hang respect the call's context, as real sinks do.
type ctxSink struct{ *pt.Sink }

func (c *ctxSink) Open(ctx context.Context, sh processor.Shard) (processor.Writer, error) {
	w, err := c.Sink.Open(ctx, sh)
	return &ctxWriter{w}, err
}

type ctxWriter struct{ processor.Writer }

func (w *ctxWriter) Write(ctx context.Context, recs []processor.Record) error {
	errc := make(chan error, 1)
	go func() { errc <- w.Writer.Write(ctx, recs) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A 400 is permanent: parked at once, no retry, breaker untouched.
func TestPermanentErrorParksAtOnce(t *testing.T) {
	calls := 0
	s := &pt.Sink{SinkName: "s", Fail: func(string, []processor.Record) error {
		calls++
		if calls == 1 {
			return processor.Permanent(errors.New("400 bad request"))
		}
		return nil
	}}
	h := newHarness(t, kclproc.Config{Breaker: kclproc.BreakerConfig{Failures: 1}}, s)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 2, 1))
	process(p, pt.KinesisRecords("y", 3, 2, 1))
	if got := parkedEvents(h.dlq, "s"); len(got) != 2 {
		t.Errorf("parked %v, want the 2 events of the first batch", got)
	}
	wantDelivered(t, s, ids("y", 3, 2, 1))
	if calls != 2 {
		t.Errorf("%d calls, want 2: no retry of a permanent error, no open breaker", calls)
	}
}

// Events a sink can never take are parked; the rest are delivered.
func TestPartialFailure(t *testing.T) {
	s := &pt.Sink{SinkName: "s"}
	s.Fail = func(op string, recs []processor.Record) error {
		if op != "write" {
			return nil
		}
		s.Fail = nil
		return &processor.PartialError{Failed: []processor.FailedEvent{{Record: &recs[1], Index: 0, Err: errors.New("event over 32 KB")}}}
	}
	h := newHarness(t, kclproc.Config{}, s)
	process(h.start("sh"), pt.KinesisRecords("x", 1, 3, 1))
	parked := parkedEvents(h.dlq, "s")
	if len(parked) != 1 {
		t.Fatalf("parked %v", parked)
	}
	for _, reason := range parked {
		if reason != processor.ReasonPermanent {
			t.Errorf("reason %s", reason)
		}
	}
}

// A poison record is parked with its reason; the records after it reach
// every sink.
func TestPoisonRecordParked(t *testing.T) {
	s := &pt.Sink{SinkName: "s"}
	h := newHarness(t, kclproc.Config{}, s)
	recs := pt.KinesisRecords("x", 1, 3, 2)
	recs[1].Data = []byte{0xB7, 'B', 'T', 1, 2, 0xde, 0xad}
	extra := pt.KinesisRecords("j", 4, 1, 1)
	extra[0].Data = []byte(`{"not":"an event"}`)
	process(h.start("sh"), append(recs, extra...))
	wantDelivered(t, s, append(ids("x", 1, 1, 2), ids("x", 3, 1, 2)...))
	letters := h.dlq.Letters()
	if len(letters) != 2 {
		t.Fatalf("%d letters, want 2", len(letters))
	}
	for _, l := range letters {
		if l.Sink != processor.DecodeSink || l.Reason != processor.ReasonDecode || len(l.Entries[0].Data) == 0 || l.Error == "" {
			t.Errorf("letter %+v", l)
		}
	}
	if got := h.store.Progress("sh").Checkpoint; got != "4" {
		t.Errorf("checkpoint %q, want 4", got)
	}
}

// A buffering sink holds the checkpoint back until it flushes.
func TestCheckpointWaitsForDurable(t *testing.T) {
	buf := &pt.Sink{SinkName: "buf", Buffer: true}
	fast := &pt.Sink{SinkName: "fast"}
	h := newHarness(t, kclproc.Config{}, buf, fast)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 4, 1))
	prog := h.store.Progress("sh")
	if prog.Checkpoint != "" || prog.Sinks["fast"].Watermark != "4" {
		t.Errorf("before flush: checkpoint %q, fast watermark %q; want none and 4", prog.Checkpoint, prog.Sinks["fast"].Watermark)
	}
	p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: &pt.Checkpointer{}})
	if got := h.store.Progress("sh").Checkpoint; got != "4" {
		t.Errorf("after shutdown flush: checkpoint %q, want 4", got)
	}
	wantDelivered(t, buf, ids("x", 1, 4, 1))
}

// After a restart each sink skips what it made durable: a replay from the
// checkpoint reaches only the sinks that had not finished.
func TestRestartSkipsPerSinkWatermark(t *testing.T) {
	buf := &pt.Sink{SinkName: "buf", Buffer: true}
	fast := &pt.Sink{SinkName: "fast"}
	h := newHarness(t, kclproc.Config{}, buf, fast)
	p := h.start("sh")
	recs := pt.KinesisRecords("x", 1, 4, 1)
	process(p, recs)
	// Crash: no shutdown. A new lease replays from the checkpoint.
	p2 := h.start("sh")
	process(p2, recs)
	p2.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED})
	for id, n := range fast.Delivered() {
		if n != 1 {
			t.Errorf("fast sink got %s %d times: it should skip its durable records", id, n)
		}
	}
	wantDelivered(t, buf, ids("x", 1, 4, 1))
}

// A lost lease drops sink state and delivers nothing more.
func TestLeaseLostDropsState(t *testing.T) {
	buf := &pt.Sink{SinkName: "buf", Buffer: true}
	fast := &pt.Sink{SinkName: "fast"}
	h := newHarness(t, kclproc.Config{}, buf, fast)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 2, 1))
	h.store.Lost = true
	process(p, pt.KinesisRecords("y", 3, 2, 1))
	before := len(fast.Delivered())
	process(p, pt.KinesisRecords("z", 5, 2, 1))
	if got := len(fast.Delivered()); got != before {
		t.Errorf("delivered %d more events after the lease was lost", got-before)
	}
	if _, closed := buf.Opened(); closed == 0 {
		t.Error("buffering writer not closed on lease loss")
	}
	if len(buf.Delivered()) != 0 {
		t.Error("buffered records delivered after lease loss")
	}
}

// Shard end: flush, then SHARD_END through the library's checkpointer.
func TestShardEnd(t *testing.T) {
	buf := &pt.Sink{SinkName: "buf", Buffer: true}
	h := newHarness(t, kclproc.Config{}, buf)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 3, 1))
	cp := &pt.Checkpointer{}
	p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.TERMINATE, Checkpointer: cp})
	if len(cp.Calls) != 1 || cp.Calls[0] != nil {
		t.Fatalf("checkpointer calls %v, want one Checkpoint(nil)", cp.Calls)
	}
	wantDelivered(t, buf, ids("x", 1, 3, 1))
	// An empty shard end also checkpoints, and only once: no loop.
	p2 := h.start("sh2")
	cp2 := &pt.Checkpointer{}
	p2.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.TERMINATE, Checkpointer: cp2})
	if len(cp2.Calls) != 1 {
		t.Errorf("empty shard end: %d checkpoint calls, want 1", len(cp2.Calls))
	}
}

// A new lease of the same shard closes the old processor, which the
// library never tells that its lease is gone.
func TestNewLeaseClosesOldProcessor(t *testing.T) {
	s := &pt.Sink{SinkName: "s", Buffer: true}
	h := newHarness(t, kclproc.Config{}, s)
	old := h.start("sh")
	process(old, pt.KinesisRecords("x", 1, 1, 1))
	h.start("sh")
	before := s.Calls()
	process(old, pt.KinesisRecords("y", 2, 1, 1))
	if s.Calls() != before {
		t.Error("the replaced processor still delivers")
	}
	if got := h.f.Shards(); len(got) != 1 {
		t.Errorf("live shards %v", got)
	}
}

// The breaker closes again after its open timeout when the sink is back.
func TestBreakerRecovers(t *testing.T) {
	var mu sync.Mutex
	down := true
	s := &pt.Sink{SinkName: "s", Fail: func(string, []processor.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return nil
	}}
	h := newHarness(t, kclproc.Config{Breaker: kclproc.BreakerConfig{Failures: 2, OpenTimeout: 100 * time.Millisecond}}, s)
	p := h.start("sh")
	process(p, pt.KinesisRecords("x", 1, 1, 1))
	mu.Lock()
	down = false
	mu.Unlock()
	time.Sleep(150 * time.Millisecond)
	process(p, pt.KinesisRecords("y", 2, 1, 1))
	wantDelivered(t, s, ids("y", 2, 1, 1))
	if got := parkedEvents(h.dlq, "s"); len(got) != 1 {
		t.Errorf("parked %v, want only the outage's event", got)
	}
}

// A negative setting is an error naming it, not a silent default.
func TestNewFactoryRefusesNegativeSettings(t *testing.T) {
	for name, cfg := range map[string]kclproc.Config{
		"CallTimeout":         {CallTimeout: -time.Second},
		"MinBackoff":          {MinBackoff: -time.Second},
		"Breaker.OpenTimeout": {Breaker: kclproc.BreakerConfig{OpenTimeout: -time.Second}},
		"MemoryBudget":        {MemoryBudget: -1},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.WorkerID = "w1"
			_, err := kclproc.NewFactory(cfg, nil, &pt.DeadLetters{}, &pt.Store{}, zaptest.NewLogger(t))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("NewFactory: %v, want an error naming %s", err, name)
			}
		})
	}
}
