package kclproc_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// budgetUsed reads worker_memory_budget_used_bytes from reg.
func budgetUsed(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "worker_memory_budget_used_bytes" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no worker_memory_budget_used_bytes")
	return 0
}

// TestBudgetBoundsBufferedRecords: a sink that buffers until flushed
// never holds more than the budget: the shard flushes it when the budget
// runs out instead of decoding on, and every event is delivered once.
func TestBudgetBoundsBufferedRecords(t *testing.T) {
	const budget = 64 << 10
	reg := prometheus.NewRegistry()
	var peak atomic.Int64
	var flushes atomic.Int32
	var h *harness
	buf := &pt.Sink{SinkName: "buf", Buffer: true, Fail: func(op string, recs []processor.Record) error {
		if op == "flush" {
			flushes.Add(1)
		}
		if used := int64(budgetUsed(t, reg)); used > peak.Load() {
			peak.Store(used)
		}
		return nil
	}}
	h = newHarness(t, kclproc.Config{MemoryBudget: budget, Registerer: reg}, buf)
	p := h.start("sh")
	for i := 0; i < 20; i++ {
		process(p, pt.KinesisRecords("x", 1+i*50, 50, 10))
	}
	p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: &pt.Checkpointer{}})
	got := buf.Delivered()
	for _, id := range ids("x", 1, 1000, 10) {
		if got[id] != 1 {
			t.Fatalf("%s delivered %d times, want once", id, got[id])
		}
	}
	if peak.Load() > budget {
		t.Errorf("budget in use peaked at %d bytes, over the budget of %d", peak.Load(), budget)
	}
	if flushes.Load() < 2 {
		t.Errorf("%d flushes: the budget should have forced flushes before shutdown", flushes.Load())
	}
	if used := budgetUsed(t, reg); used != 0 {
		t.Errorf("after shutdown %v bytes still charged, want 0", used)
	}
}

// TestBudgetPressureFlushesOtherShards: a shard waiting for budget that
// another shard's buffering sink holds gets it when that shard's next
// (here empty) batch flushes under pressure, not when its buffer would
// have aged out.
func TestBudgetPressureFlushesOtherShards(t *testing.T) {
	const budget = 64 << 10
	reg := prometheus.NewRegistry()
	buf := &pt.Sink{SinkName: "buf", Buffer: true}
	h := newHarness(t, kclproc.Config{MemoryBudget: budget, Registerer: reg}, buf)
	a, b := h.start("a"), h.start("b")
	// a fills most of the budget; its sink holds everything.
	for i := 0; budgetUsed(t, reg) < budget*3/4; i++ {
		process(a, pt.KinesisRecords("a", 1+i, 1, 10))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		process(b, pt.KinesisRecords("b", 1, 20, 10))
	}()
	// b waits; a's next empty batch sees the pressure and flushes.
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-done:
			return
		case <-deadline:
			t.Fatal("shard b still waits for budget 30 s after shard a's empty batches began")
		case <-time.After(10 * time.Millisecond):
			process(a, nil)
		}
	}
}

// handoffStore is a Store whose leases can be claimed.
type handoffStore struct {
	*pt.Store
	requested atomic.Bool
	handedOff atomic.Int32
}

func (s *handoffStore) HandoffRequested(string) bool { return s.requested.Load() }

func (s *handoffStore) Handoff(ctx context.Context, shard string) error {
	s.handedOff.Add(1)
	return nil
}

// TestHandoffFlushesThenReleases: when the lease is claimed, the
// processor flushes every sink and saves the progress before it hands the
// lease over, leaves the batch it was given to the claimant, and delivers
// nothing afterwards.
func TestHandoffFlushesThenReleases(t *testing.T) {
	buf := &pt.Sink{SinkName: "buf", Buffer: true}
	plain := &pt.Sink{SinkName: "plain"}
	store := &handoffStore{Store: &pt.Store{}}
	f, err := kclproc.NewFactory(kclproc.Config{Stream: "s", WorkerID: "w1", CheckpointInterval: time.Hour},
		[]processor.Sink{buf, plain}, &pt.DeadLetters{}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := f.CreateProcessor()
	p.Initialize(&kcl.InitializationInput{ShardId: "sh"})
	process(p, pt.KinesisRecords("x", 1, 5, 2))
	if got := store.Progress("sh").Checkpoint; got != "" {
		t.Fatalf("checkpoint %q before the handoff, want none (buffered, interval not passed)", got)
	}
	store.requested.Store(true)
	process(p, pt.KinesisRecords("x", 6, 5, 2))
	if n := store.handedOff.Load(); n != 1 {
		t.Fatalf("Handoff called %d times, want once", n)
	}
	prog := store.Progress("sh")
	if prog.Checkpoint != "5" || prog.Sinks["buf"].Watermark != "5" || prog.Sinks["plain"].Watermark != "5" {
		t.Errorf("progress at handoff %+v, want checkpoint and both watermarks at 5", prog)
	}
	for _, s := range []*pt.Sink{buf, plain} {
		got := s.Delivered()
		for _, id := range ids("x", 1, 5, 2) {
			if got[id] != 1 {
				t.Errorf("%s: %s delivered %d times before the handoff, want once", s.SinkName, id, got[id])
			}
		}
		for _, id := range ids("x", 6, 5, 2) {
			if got[id] != 0 {
				t.Errorf("%s: %s delivered after the claim; it belongs to the claimant", s.SinkName, id)
			}
		}
	}
	process(p, pt.KinesisRecords("x", 11, 5, 2))
	if n := len(plain.Delivered()); n != 10 {
		t.Errorf("%d events delivered in all, want 10: nothing after the handoff", n)
	}
}
