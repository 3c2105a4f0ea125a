package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// writer buffers one shard's events into the object being filled (cur),
// cuts it by hour, size or age, and uploads it. As the Writer contract
// allows, it is not safe for concurrent use: the processor calls it from
// one goroutine at a time.
//
// Where objects are cut:
//   - before a record whose arrival hour differs from the object's: an
//     object holds one hour, and the oldest record decides which;
//   - after the record that takes the object to BufferBytes;
//   - after a Write when the object is BufferInterval old, and on Flush.
//
// The first two depend on the records only, so a replay cuts the same
// objects whatever its batch sizes. The last two depend on time; the
// saved pending state (see the package documentation) makes a replay
// repeat them. Records without events never start an object: they are
// durable at once when nothing is buffered, and part of the open
// object's range otherwise.
type writer struct {
	s             *Sink
	stream, shard string
	saver         processor.StateWriter

	// seen is the last sequence number accepted: a Write that failed
	// part way is retried with the same records, and those at or below
	// seen are already in cur or sealed.
	seen string
	// durable is the last sequence number of the last uploaded object.
	durable string
	// cur is the object being filled, nil when nothing is buffered.
	cur *buffer
	// sealed is an object cut but not yet uploaded; it goes first.
	sealed *object
	// pending is the object to rebuild from the saved state, nil once
	// rebuilt or when there is none.
	pending *pendingState

	gz     *gzip.Writer // compresses cur's events; reused
	spare  []byte       // a drained upload body, reused for the next
	line   []byte       // scratch for compacted and re-encoded events
	closed bool
}

// buffer is the object being filled.
type buffer struct {
	first, last string
	hour        time.Time // UTC, truncated to the hour
	started     time.Time // by Config.Now: the buffer's age
	gzipped     *bytes.Buffer
	size        int // uncompressed bytes of every line, errors included
	events      int
	// errs holds the error output's uncompressed lines by reason.
	errs map[string]*bytes.Buffer
}

// object is a cut buffer: its uploads, and whether its range is saved.
type object struct {
	first, last string
	hour        time.Time
	saved       bool
	// uploads are the event object (when there are events) and then an
	// error object per reason.
	uploads []upload
	// events is the event object's body, reused once it is uploaded.
	events []byte
}

type upload struct {
	key  string
	body []byte
	done bool
}

func newWriter(s *Sink, shard processor.Shard) *writer {
	w := &writer{s: s, stream: shard.Stream, shard: shard.ID, saver: shard.Saver}
	w.pending = decodeState(shard.State)
	return w
}

var errClosed = errors.New("s3: writer closed")

// Write buffers the records' events and uploads every object they
// complete. A failed upload fails the Write; the processor's retry with
// the same records uploads the object again (same key, same body) and
// skips the records already buffered.
func (w *writer) Write(ctx context.Context, recs []processor.Record) error {
	if w.closed {
		return errClosed
	}
	if w.sealed != nil {
		if err := w.deliver(ctx); err != nil {
			return err
		}
	}
	for i := range recs {
		r := &recs[i]
		if w.seen != "" && processor.CompareSeq(r.SequenceNumber, w.seen) <= 0 {
			continue
		}
		if err := w.add(ctx, r); err != nil {
			return err
		}
	}
	if w.cur != nil && w.pending == nil && w.s.cfg.Now().Sub(w.cur.started) >= w.s.cfg.BufferInterval {
		w.seal()
		return w.deliver(ctx)
	}
	return nil
}

// add buffers one record, cutting objects before or after it as needed.
func (w *writer) add(ctx context.Context, r *processor.Record) error {
	seq := r.SequenceNumber
	if p := w.pending; p != nil {
		switch {
		case processor.CompareSeq(seq, p.First) < 0:
			// Before the saved range: an object uploaded before the range
			// was saved holds it (ranges are saved in order, each after
			// the previous object's upload).
			w.seen = seq
			return nil
		case processor.CompareSeq(seq, p.Last) <= 0:
			// In the range: no cut until its last record. Should the
			// replay start inside the range (the stream trimmed past its
			// start), the object gets a key of its own.
			if len(r.Events) > 0 || w.cur != nil {
				if w.cur == nil {
					hour := arrivalHour(r)
					if processor.CompareSeq(seq, p.First) == 0 {
						hour = p.hour
					}
					w.start(seq, hour)
				}
				w.append(r)
			}
			w.seen = seq
			if processor.CompareSeq(seq, p.Last) == 0 {
				w.pending = nil
				if w.cur != nil {
					w.seal()
					return w.deliver(ctx)
				}
			}
			return nil
		}
		// Past the range: the object was uploaded and checkpointed (the
		// state is stale), or the end of the range did not come back
		// (parked by the processor meanwhile). What was rebuilt is written
		// under its own range: a second copy of some lines at worst, never
		// a loss.
		w.pending = nil
		if w.cur != nil {
			w.seal()
			if err := w.deliver(ctx); err != nil {
				return err
			}
		}
	}
	if len(r.Events) == 0 {
		if w.cur != nil {
			w.cur.last = seq
		}
		w.seen = seq
		return nil
	}
	hour := arrivalHour(r)
	if w.cur != nil && !hour.Equal(w.cur.hour) {
		w.seal()
		if err := w.deliver(ctx); err != nil {
			return err
		}
	}
	if w.cur == nil {
		w.start(seq, hour)
	}
	w.append(r)
	w.seen = seq
	if w.cur.size >= w.s.cfg.BufferBytes {
		w.seal()
		return w.deliver(ctx)
	}
	return nil
}

// arrivalHour returns the hour a record's objects go under: its Kinesis
// arrival time, or, for records without one (not from Kinesis), its first
// event's receivedAt. Never the clock: a replay must compute the same.
func arrivalHour(r *processor.Record) time.Time {
	t := r.ArrivalTime
	if t.IsZero() && len(r.Events) > 0 && r.Events[0] != nil {
		t = r.Events[0].ReceivedAt
	}
	return t.UTC().Truncate(time.Hour)
}

// start opens a buffer at record seq. Nothing is buffered or sealed
// before it, so every record accepted so far is durable.
func (w *writer) start(seq string, hour time.Time) {
	w.durable = w.seen
	b := &buffer{first: seq, last: seq, hour: hour, started: w.s.cfg.Now(), gzipped: bytes.NewBuffer(w.spare)}
	w.spare = nil
	if w.gz == nil {
		w.gz, _ = gzip.NewWriterLevel(b.gzipped, gzip.DefaultCompression) // a valid level never fails
	} else {
		w.gz.Reset(b.gzipped)
	}
	w.cur = b
}

// append adds a record's events to cur: each a line of the object, or of
// the error output when it cannot be one.
func (w *writer) append(r *processor.Record) {
	b := w.cur
	for i := range r.Events {
		line, reason, msg := w.eventLine(r, i)
		if reason != "" {
			w.appendError(r, i, reason, msg)
			continue
		}
		// gzip writes to a bytes.Buffer cannot fail.
		_, _ = w.gz.Write(line)
		_, _ = w.gz.Write(newline)
		b.size += len(line) + 1
		b.events++
	}
	b.last = r.SequenceNumber
}

var newline = []byte{'\n'}

// eventLine returns event i of r as one line without its newline: its raw
// JSON as read from the stream, or compacted when it spans lines (NDJSON
// allows no newline in a line, and valid JSON has them only as
// insignificant whitespace); the event re-encoded when there is no raw
// JSON. A line that cannot go into the table comes back with the reason.
func (w *writer) eventLine(r *processor.Record, i int) (line []byte, reason, msg string) {
	if e := r.Events[i]; e != nil && e.Rejected != "" {
		// An event the gateway refused: filed under its reason, the
		// envelope (reason, error, the event as sent) as the raw data.
		msg, _ = e.LookupString(event.FieldRejected + ".error")
		return nil, e.Rejected, msg
	}
	var raw []byte
	switch {
	case i < len(r.Raw) && r.Raw[i] != nil:
		raw = r.Raw[i]
	case r.Events[i] != nil:
		w.line = r.Events[i].AppendJSON(w.line[:0])
		raw = w.line
	}
	if len(raw) > w.s.cfg.MaxEventBytes {
		return nil, ReasonTooLarge, fmt.Sprintf("event is %d bytes, over the limit of %d", len(raw), w.s.cfg.MaxEventBytes)
	}
	// A line must be one JSON object: the SerDe skips anything else
	// (ignore.malformed.json), which would lose the event silently.
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, ReasonInvalidJSON, "event is not a JSON object"
	}
	if !json.Valid(raw) {
		return nil, ReasonInvalidJSON, "event is not valid JSON"
	}
	if bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		var buf bytes.Buffer
		_ = json.Compact(&buf, raw) // valid JSON always compacts
		w.line = append(w.line[:0], buf.Bytes()...)
		return w.line, "", ""
	}
	return raw, "", ""
}

// errorLine is one line of the error output, after Firehose's: the raw
// bytes in base64, because they may not be JSON at all.
type errorLine struct {
	ErrorCode        string `json:"errorCode"`
	ErrorMessage     string `json:"errorMessage"`
	ArrivalTimestamp int64  `json:"arrivalTimestamp"` // Unix milliseconds
	Stream           string `json:"stream"`
	ShardID          string `json:"shardId"`
	SequenceNumber   string `json:"sequenceNumber"`
	EventIndex       int    `json:"eventIndex"`
	RawData          []byte `json:"rawData"`
}

func (w *writer) appendError(r *processor.Record, i int, reason, msg string) {
	var raw []byte
	if i < len(r.Raw) {
		raw = r.Raw[i]
	}
	l := errorLine{
		ErrorCode: reason, ErrorMessage: msg, ArrivalTimestamp: r.ArrivalTime.UnixMilli(),
		Stream: w.stream, ShardID: w.shard, SequenceNumber: r.SequenceNumber, EventIndex: i,
		RawData: raw,
	}
	b, _ := json.Marshal(l) // strings, numbers and bytes always marshal
	if w.cur.errs == nil {
		w.cur.errs = map[string]*bytes.Buffer{}
	}
	buf := w.cur.errs[reason]
	if buf == nil {
		buf = new(bytes.Buffer)
		w.cur.errs[reason] = buf
	}
	buf.Write(b)
	buf.WriteByte('\n')
	w.cur.size += len(b) + 1
}

// seal cuts cur into an object to upload.
func (w *writer) seal() {
	b := w.cur
	w.cur = nil
	o := &object{first: b.first, last: b.last, hour: b.hour}
	if b.events > 0 {
		_ = w.gz.Close() // writes to a bytes.Buffer cannot fail
		o.events = b.gzipped.Bytes()
		o.uploads = append(o.uploads, upload{key: w.s.Key(w.stream, w.shard, b.first, b.last, b.hour), body: o.events})
	}
	reasons := make([]string, 0, len(b.errs))
	for reason := range b.errs {
		reasons = append(reasons, reason)
	}
	slices.Sort(reasons)
	for _, reason := range reasons {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b.errs[reason].Bytes())
		_ = zw.Close()
		o.uploads = append(o.uploads, upload{key: w.s.ErrorKey(reason, w.stream, w.shard, b.first, b.last, b.hour), body: buf.Bytes()})
	}
	w.sealed = o
}

// deliver saves the sealed object's range in the lease row, then uploads
// it. Only then are its records durable.
func (w *writer) deliver(ctx context.Context) error {
	o := w.sealed
	if !o.saved && w.saver != nil {
		st := pendingState{V: stateVersion, First: o.first, Last: o.last, Hour: HourPath(o.hour)}
		if len(o.uploads) > 0 {
			st.Key = o.uploads[0].key
		}
		if err := w.saver.SaveState(ctx, st.encode()); err != nil {
			return fmt.Errorf("s3: save range %s..%s of shard %s before upload: %w", o.first, o.last, w.shard, err)
		}
	}
	o.saved = true
	for i := range o.uploads {
		u := &o.uploads[i]
		if u.done {
			continue
		}
		if err := w.s.put(ctx, u.key, u.body); err != nil {
			return err
		}
		u.done = true
	}
	w.durable = o.last
	w.sealed = nil
	// The body is no longer referenced once uploaded: its memory serves
	// the next object.
	w.spare = o.events[:0]
	return nil
}

// Flush uploads everything buffered. While an object is being rebuilt
// from the saved state, it uploads nothing: the object must hold the
// whole saved range to overwrite the one uploaded before, and the rest of
// the range is still to come from the stream. The state stays in the
// lease row, so whoever replays the range next rebuilds the object.
func (w *writer) Flush(ctx context.Context) error {
	if w.closed {
		return errClosed
	}
	if w.sealed != nil {
		if err := w.deliver(ctx); err != nil {
			return err
		}
	}
	if w.cur != nil && w.pending == nil {
		w.seal()
		return w.deliver(ctx)
	}
	return nil
}

// Durable returns the last sequence number of the last uploaded object,
// or the last one accepted when nothing is buffered.
func (w *writer) Durable() string {
	if w.cur == nil && w.sealed == nil {
		return w.seen
	}
	return w.durable
}

// Close drops the buffer without uploading it.
func (w *writer) Close() error {
	w.closed = true
	w.cur, w.sealed, w.spare = nil, nil, nil
	return nil
}
