// Package processortest has fakes for testing the processor and the
// sinks: a recording Sink that fails on demand, an in-memory progress
// store and dead-letter store, and record builders.
package processortest

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// KinesisRecords builds Kinesis records, each holding the given number of
// events encoded in our record format, with sequence numbers from first
// on. Event messageIds are "<prefix>-<seq>-<i>".
func KinesisRecords(prefix string, first, n, eventsPer int) []types.Record {
	enc, err := event.NewRecordEncoder()
	if err != nil {
		panic(err)
	}
	out := make([]types.Record, n)
	for i := range out {
		seq := strconv.Itoa(first + i)
		evs := make([][]byte, eventsPer)
		for j := range evs {
			evs[j] = fmt.Appendf(nil, `{"messageId":"%s-%s-%d","type":"track","event":"build","userId":"u","timestamp":"2026-11-27T12:00:00.000Z","receivedAt":"2026-11-27T12:00:01.000Z","properties":{"buildVersion":"29.%d.0"}}`, prefix, seq, j, j%3)
		}
		now := time.Now()
		out[i] = types.Record{SequenceNumber: aws.String(seq), Data: enc.Encode(nil, evs), ApproximateArrivalTimestamp: &now, PartitionKey: aws.String("k")}
	}
	return out
}

// Sink is a recording sink. Fail, when set, is consulted before every
// Write and Flush (op is "write" or "flush"): a non-nil error fails the
// call. With Buffer, writes are held until Flush, like a batching sink.
// It is safe for concurrent use.
type Sink struct {
	SinkName string
	Buffer   bool
	Fail     func(op string, recs []processor.Record) error

	mu      sync.Mutex
	got     map[string]int // messageId -> deliveries
	order   []string
	calls   int
	opened  int
	closed  int
	states  map[string][]byte
	writers []*Writer
}

var _ processor.Sink = (*Sink)(nil)

// Name returns SinkName.
func (s *Sink) Name() string { return s.SinkName }

// Open returns a writer for the shard.
func (s *Sink) Open(ctx context.Context, shard processor.Shard) (processor.Writer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened++
	if s.states == nil {
		s.states = map[string][]byte{}
	}
	s.states[shard.ID] = shard.State
	w := &Writer{s: s, shard: shard}
	s.writers = append(s.writers, w)
	return w, nil
}

// Delivered returns how often each messageId was delivered.
func (s *Sink) Delivered() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

// Calls returns the number of Write and Flush calls that reached Fail.
func (s *Sink) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Opened returns how many writers were opened and closed.
func (s *Sink) Opened() (opened, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened, s.closed
}

// Writer is the Sink's per-shard writer.
type Writer struct {
	s       *Sink
	shard   processor.Shard
	held    []processor.Record
	durable string
	closed  bool
}

func (w *Writer) check(op string, recs []processor.Record) error {
	w.s.mu.Lock()
	w.s.calls++
	fail := w.s.Fail
	w.s.mu.Unlock()
	if fail != nil {
		return fail(op, recs)
	}
	return nil
}

func (w *Writer) deliver(recs []processor.Record) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.got == nil {
		w.s.got = map[string]int{}
	}
	for _, r := range recs {
		for _, e := range r.Events {
			w.s.got[e.MessageID]++
			w.s.order = append(w.s.order, e.MessageID)
		}
		w.durable = r.SequenceNumber
	}
}

// Write delivers recs, or holds them with Buffer.
func (w *Writer) Write(ctx context.Context, recs []processor.Record) error {
	w.s.mu.Lock()
	closed := w.closed
	w.s.mu.Unlock()
	if closed {
		return fmt.Errorf("write after close")
	}
	if len(recs) == 0 {
		return nil
	}
	if err := w.check("write", recs); err != nil {
		return err
	}
	if w.s.Buffer {
		w.s.mu.Lock()
		w.held = append(w.held, recs...)
		w.s.mu.Unlock()
		return nil
	}
	w.deliver(recs)
	return nil
}

// Flush delivers held records.
func (w *Writer) Flush(ctx context.Context) error {
	w.s.mu.Lock()
	held := w.held
	w.s.mu.Unlock()
	if err := w.check("flush", held); err != nil {
		return err
	}
	w.deliver(held)
	w.s.mu.Lock()
	w.held = w.held[len(held):]
	w.s.mu.Unlock()
	return nil
}

// Durable returns the last delivered sequence number.
func (w *Writer) Durable() string {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.durable
}

// Close drops held records.
func (w *Writer) Close() error {
	w.s.mu.Lock()
	w.closed = true
	w.s.closed++
	w.s.mu.Unlock()
	return nil
}

// Store is an in-memory ProgressStore. Lost, when set, makes every write
// fail with ErrLeaseLost. It is safe for concurrent use.
type Store struct {
	mu    sync.Mutex
	rows  map[string]processor.Progress
	Lost  bool
	Saves int
}

var _ processor.ProgressStore = (*Store)(nil)

// LoadProgress returns the stored progress.
func (s *Store) LoadProgress(ctx context.Context, shard string) (processor.Progress, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[shard], nil
}

// SaveProgress stores p.
func (s *Store) SaveProgress(ctx context.Context, shard string, p processor.Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Lost {
		return fmt.Errorf("save progress: %w", processor.ErrLeaseLost)
	}
	if s.rows == nil {
		s.rows = map[string]processor.Progress{}
	}
	old := s.rows[shard]
	if p.Checkpoint != "" {
		old.Checkpoint = p.Checkpoint
	}
	if old.Sinks == nil {
		old.Sinks = map[string]processor.SinkProgress{}
	}
	for k, v := range p.Sinks {
		if v.State == nil {
			v.State = old.Sinks[k].State
		}
		old.Sinks[k] = v
	}
	s.rows[shard] = old
	s.Saves++
	return nil
}

// SaveSinkState stores one sink's state.
func (s *Store) SaveSinkState(ctx context.Context, shard, sink string, state []byte) error {
	return s.SaveProgress(ctx, shard, processor.Progress{Sinks: map[string]processor.SinkProgress{sink: {Watermark: s.watermark(shard, sink), State: state}}})
}

func (s *Store) watermark(shard, sink string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[shard].Sinks[sink].Watermark
}

// Progress returns what is stored for a shard.
func (s *Store) Progress(shard string) processor.Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[shard]
}

// DeadLetters is an in-memory dead-letter store; letters with the same
// identity overwrite each other, as the real store's keys do.
type DeadLetters struct {
	mu      sync.Mutex
	letters map[string]processor.Letter
	Fail    error
}

var _ processor.DeadLetters = (*DeadLetters)(nil)

// Park stores l.
func (d *DeadLetters) Park(ctx context.Context, l processor.Letter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Fail != nil {
		return d.Fail
	}
	if d.letters == nil {
		d.letters = map[string]processor.Letter{}
	}
	d.letters[fmt.Sprintf("%s/%s/%s/%s-%s", l.Sink, l.Reason, l.Shard, l.FirstSeq, l.LastSeq)] = l
	return nil
}

// Letters returns the stored letters.
func (d *DeadLetters) Letters() []processor.Letter {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]processor.Letter, 0, len(d.letters))
	for _, l := range d.letters {
		out = append(out, l)
	}
	return out
}

// Checkpointer is a fake of the KCL's IRecordProcessorCheckpointer.
type Checkpointer struct {
	mu    sync.Mutex
	Calls []*string
}

// Checkpoint records the call.
func (c *Checkpointer) Checkpoint(seq *string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Calls = append(c.Calls, seq)
	return nil
}

// PrepareCheckpoint is not used by our processor.
func (c *Checkpointer) PrepareCheckpoint(seq *string) (kcl.IPreparedCheckpointer, error) {
	return nil, fmt.Errorf("not supported")
}
