// Package sinktest is the contract every sink's Writer keeps, as a test
// suite each sink package runs against its real peer (an emulator, or an
// in-test server that enforces the destination's API):
//
//   - a nil error from Write means the records were accepted, and after
//     Flush the destination holds them and Durable reaches the last one;
//   - Durable never moves backwards;
//   - Close drops what is buffered: nothing reaches the destination after it;
//   - Write after Close fails;
//   - a PartialError names only events of the records written.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/processor"
)

// Harness gives the suite a sink and a way to look at its destination.
type Harness struct {
	// New returns a sink whose destination holds nothing yet (a new
	// table, bucket, file or server), for one subtest.
	New func(t *testing.T) processor.Sink
	// Delivered returns how many events the destination of the last New
	// holds.
	Delivered func(t *testing.T) int
	// Poison, when set, returns an event the sink refuses permanently
	// (over a limit, invalid for the destination), to check partial
	// errors. Sinks that can refuse no single event leave it nil.
	Poison func(id string) []byte
}

// Event returns a build event the suite writes: a Netlify Build completed
// build that every sink maps and counts, identified by id (also in
// properties.eid, for destinations that keep no messageId).
func Event(id string) []byte {
	ts := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04:05.000Z")
	return fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"build:ci_build_process_completed","userId":"buildbot_user",`+
		`"timestamp":%q,"receivedAt":%q,"source":"sinktest","properties":{"buildVersion":"29.58.2","siteId":%q,"eid":%q,"status":"success"}}`,
		id, ts, ts, "site-"+id, id)
}

// Records makes records first, first+1, ... of perRecord events each.
func Records(t testing.TB, prefix string, first, n, perRecord int, poison func(string) []byte) []processor.Record {
	t.Helper()
	var recs []processor.Record
	for i := range n {
		seq := fmt.Sprint(first + i)
		raws := make([][]byte, perRecord)
		for j := range raws {
			id := fmt.Sprintf("%s-%s-%d", prefix, seq, j)
			raws[j] = Event(id)
			if poison != nil && j == 1 {
				raws[j] = poison(id)
			}
		}
		recs = append(recs, Record(t, seq, time.Now(), raws...))
	}
	return recs
}

// Saver is an in-memory StateWriter, for sinks that save state in the
// lease row.
type Saver struct {
	mu    sync.Mutex
	State []byte
}

// SaveState keeps state.
func (s *Saver) SaveState(_ context.Context, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.State = append([]byte(nil), state...)
	return nil
}

func open(t *testing.T, s processor.Sink) processor.Writer {
	t.Helper()
	w, err := s.Open(context.Background(), processor.Shard{Stream: "sinktest", ID: "shardId-000000000000", Worker: "w1", Saver: &Saver{}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

// Run runs the contract against h.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()

	t.Run("accepted then durable", func(t *testing.T) {
		s := h.New(t)
		w := open(t, s)
		defer w.Close()
		recs := Records(t, "acc", 100, 3, 2, nil)
		if err := w.Write(ctx, recs); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if d := w.Durable(); d != "102" {
			t.Errorf("Durable after Flush = %q, want the last record, 102", d)
		}
		if n := h.Delivered(t); n != 6 {
			t.Errorf("destination holds %d events after Flush, want the 6 accepted", n)
		}
	})

	t.Run("durable never moves backwards", func(t *testing.T) {
		s := h.New(t)
		w := open(t, s)
		defer w.Close()
		last := ""
		check := func(step string) {
			t.Helper()
			d := w.Durable()
			if d != "" && !processor.ValidSeq(d) {
				t.Fatalf("%s: Durable %q is not a position", step, d)
			}
			if last != "" && (d == "" || processor.CompareSeq(d, last) < 0) {
				t.Fatalf("%s: Durable moved back from %q to %q", step, last, d)
			}
			last = d
		}
		check("open")
		for i := range 4 {
			if err := w.Write(ctx, Records(t, "mono", 200+10*i, 3, 2, nil)); err != nil {
				t.Fatalf("Write %d: %v", i, err)
			}
			check(fmt.Sprintf("write %d", i))
			if i%2 == 1 {
				if err := w.Flush(ctx); err != nil {
					t.Fatalf("Flush %d: %v", i, err)
				}
				check(fmt.Sprintf("flush %d", i))
			}
		}
		if last != "232" {
			t.Errorf("Durable after the last Flush = %q, want 232", last)
		}
	})

	t.Run("close drops the buffer", func(t *testing.T) {
		s := h.New(t)
		w := open(t, s)
		if err := w.Write(ctx, Records(t, "drop", 300, 2, 2, nil)); err != nil {
			t.Fatalf("Write: %v", err)
		}
		before := h.Delivered(t)
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Anything still buffered would reach the destination now, or
		// soon after, if Close flushed it.
		time.Sleep(100 * time.Millisecond)
		if after := h.Delivered(t); after != before {
			t.Errorf("destination went from %d to %d events after Close: Close must drop, not deliver, the buffer", before, after)
		}
	})

	t.Run("write after close fails", func(t *testing.T) {
		s := h.New(t)
		w := open(t, s)
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := w.Write(ctx, Records(t, "late", 400, 1, 1, nil)); err == nil {
			t.Error("Write after Close returned nil")
		}
	})

	if h.Poison == nil {
		return
	}
	t.Run("partial errors name valid events", func(t *testing.T) {
		s := h.New(t)
		w := open(t, s)
		defer w.Close()
		recs := Records(t, "part", 500, 3, 3, h.Poison) // event 1 of each record is poison
		err := w.Write(ctx, recs)
		var pe *processor.PartialError
		if !errors.As(err, &pe) {
			t.Fatalf("Write with poison events: %v, want a *PartialError", err)
		}
		named := map[string]bool{}
		for _, f := range pe.Failed {
			valid := false
			for i := range recs {
				if f.Record != nil && f.Record.SequenceNumber == recs[i].SequenceNumber {
					valid = f.Index >= 0 && f.Index < len(recs[i].Events)
				}
			}
			if !valid || f.Err == nil {
				t.Fatalf("failed event %+v: not an event of the records written, or no error", f)
			}
			named[fmt.Sprintf("%s/%d", f.Record.SequenceNumber, f.Index)] = true
		}
		for _, r := range recs {
			if !named[r.SequenceNumber+"/1"] {
				t.Errorf("poison event 1 of record %s not named in %v", r.SequenceNumber, named)
			}
		}
		if len(named) != len(recs) {
			t.Errorf("%d events named, want only the %d poison ones", len(named), len(recs))
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if n := h.Delivered(t); n != 6 {
			t.Errorf("destination holds %d events, want the 6 good ones", n)
		}
	})
}

// NoIdentity is a poison event for destinations that need a user or an
// anonymous ID (Segment, GA4): it has neither.
func NoIdentity(id string) []byte {
	ts := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04:05.000Z")
	return fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"build:ci_build_process_completed","timestamp":%q,"receivedAt":%q,"properties":{"eid":%q}}`, id, ts, ts, id)
}
