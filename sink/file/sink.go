// Package file is a sink for local use: it appends every event, as one
// NDJSON line of the event's JSON as read from the stream, to a file or to
// standard output. It lets `make run` show what the worker delivers
// without any destination account.
package file

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/buildtelemetry/pipeline/processor"
)

// Defaults of Config.
const (
	// DefaultName is the sink's name, the key of its watermark and dead
	// letters.
	DefaultName = "file"
	// DefaultBufferBytes is how many bytes of lines a writer buffers
	// before it writes them to the file without waiting for Flush.
	DefaultBufferBytes = 256 << 10
)

// Stdout is the Path that selects standard output.
const Stdout = "-"

// Config configures a Sink. Zero values mean the documented defaults.
type Config struct {
	// Path is the file appended to, created (mode 0644) if missing, or
	// Stdout. Required.
	Path string
	// Name is the sink's name (DefaultName). Never change it for a lease
	// table in use: the sink's progress would start over.
	Name string
	// BufferBytes bounds each writer's buffer (DefaultBufferBytes).
	BufferBytes int
}

// Sink appends events to one file shared by every shard. It is safe for
// concurrent use: each writer buffers its shard's lines and appends them
// to the file under the sink's lock, whole lines at a time, so lines of
// different shards never interleave within a line.
type Sink struct {
	name    string
	bufSize int
	path    string

	mu   sync.Mutex // guards out and its writes
	out  io.Writer
	file *os.File // nil for standard output
	// sync is whether Flush fsyncs: only a regular file can be synced;
	// on a pipe, a terminal or /dev/null fsync fails with EINVAL.
	sync   bool
	closed bool
}

var (
	_ processor.Sink   = (*Sink)(nil)
	_ processor.Writer = (*writer)(nil)
	_ io.Closer        = (*Sink)(nil)
)

// New opens the sink's file for appending.
func New(cfg Config) (*Sink, error) {
	if cfg.Path == "" {
		return nil, errors.New("file: new sink: Path is required (use \"-\" for stdout)")
	}
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if cfg.BufferBytes < 0 {
		return nil, fmt.Errorf("file: new sink: BufferBytes %d is negative", cfg.BufferBytes)
	}
	cfg.BufferBytes = cmp.Or(cfg.BufferBytes, DefaultBufferBytes)
	s := &Sink{name: cfg.Name, bufSize: cfg.BufferBytes, path: cfg.Path}
	if cfg.Path == Stdout {
		s.out = os.Stdout
	}
	// The file is opened on first use, and again after a failure: a
	// missing directory or a full disk is a sink outage the processor's
	// breaker handles, not a reason for the worker not to start.
	return s, nil
}

// open opens the file if it is not open. s.mu must be held.
func (s *Sink) open() error {
	if s.out != nil {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("file: open %s: %w", s.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("file: stat %s: %w", s.path, err)
	}
	s.out, s.file, s.sync = f, f, fi.Mode().IsRegular()
	return nil
}

// Name returns the sink's name.
func (s *Sink) Name() string { return s.name }

// Open returns a writer for one shard. The sink keeps no per-shard state,
// so shard.State is ignored.
func (s *Sink) Open(_ context.Context, shard processor.Shard) (processor.Writer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("file: open writer for %s: sink closed", shard.ID)
	}
	return &writer{s: s, limit: s.bufSize}, nil
}

// Close closes the file (standard output is left open). Writers must not
// be used after it: their writes fail.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.file == nil {
		return nil
	}
	if err := s.file.Close(); err != nil {
		return fmt.Errorf("file: close %s: %w", s.file.Name(), err)
	}
	return nil
}

// append writes buf's bytes to the file, and syncs it when sync is set.
// Written bytes are consumed from buf even when it fails part way, so that
// a retry does not write them twice.
func (s *Sink) append(buf *bytes.Buffer, sync bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("file: write: sink closed")
	}
	if err := s.open(); err != nil {
		return err
	}
	if _, err := buf.WriteTo(s.out); err != nil {
		return fmt.Errorf("file: write: %w", err)
	}
	if sync && s.sync {
		if err := s.file.Sync(); err != nil {
			return fmt.Errorf("file: sync %s: %w", s.file.Name(), err)
		}
	}
	return nil
}

// pieceBytes is the most a writer buffers before writing to the file.
const pieceBytes = 256 << 10

// writer buffers one shard's lines. As the Writer contract allows, it is
// not safe for concurrent use: the processor calls it from one goroutine
// at a time.
type writer struct {
	s     *Sink
	limit int
	buf   bytes.Buffer
	// written is the last sequence number accepted by Write; durable the
	// last one synced by Flush.
	written, durable string
	closed           bool
}

// Write appends the records' events to the file, one line per event,
// and syncs it: a local file is cheap to write through, and the records
// are durable (so the checkpoint can move) as soon as Write returns. On a
// failure nothing of recs counts as accepted; lines already written may
// be written again by the retry, which at-least-once delivery allows.
func (w *writer) Write(_ context.Context, recs []processor.Record) error {
	if w.closed {
		return errors.New("file: write: writer closed")
	}
	if len(recs) == 0 {
		return nil
	}
	w.buf.Reset()
	for _, r := range recs {
		for i := range r.Events {
			if err := appendLine(&w.buf, r, i); err != nil {
				w.buf.Reset()
				return fmt.Errorf("file: write record %s: %w", r.SequenceNumber, err)
			}
			// Written in pieces that end at a line, so that a large
			// batch never needs a buffer of its own size; other shards'
			// lines may come between the pieces.
			if w.buf.Len() >= pieceBytes {
				if err := w.s.append(&w.buf, false); err != nil {
					w.buf.Reset()
					return err
				}
			}
		}
	}
	err := w.s.append(&w.buf, true)
	w.buf.Reset()
	if err != nil {
		return err
	}
	w.written = recs[len(recs)-1].SequenceNumber
	w.durable = w.written
	return nil
}

// appendLine appends event i of r as one line: its raw JSON, verbatim, or
// compacted if it spans several lines (NDJSON allows no newline in a line,
// and JSON allows one only as insignificant whitespace). Without Raw it is
// the decoded event re-encoded.
func appendLine(buf *bytes.Buffer, r processor.Record, i int) error {
	if i >= len(r.Raw) || r.Raw[i] == nil {
		buf.Write(r.Events[i].AppendJSON(nil))
		return buf.WriteByte('\n')
	}
	raw := r.Raw[i]
	if bytes.ContainsAny(raw, "\r\n") {
		if err := json.Compact(buf, raw); err != nil {
			return fmt.Errorf("compact event %d: %w", i, err)
		}
		return buf.WriteByte('\n')
	}
	buf.Write(raw)
	return buf.WriteByte('\n')
}

// Flush writes the buffer to the file and syncs it; then everything
// written so far is durable.
func (w *writer) Flush(context.Context) error {
	if w.closed {
		return errors.New("file: flush: writer closed")
	}
	written := w.written
	if err := w.s.append(&w.buf, true); err != nil {
		return err
	}
	w.durable = written
	return nil
}

// Durable returns the last sequence number made durable by Flush.
func (w *writer) Durable() string { return w.durable }

// Close drops the buffer without writing it.
func (w *writer) Close() error {
	w.closed = true
	w.buf = bytes.Buffer{}
	return nil
}
