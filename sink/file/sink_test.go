package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// rawEvent returns an event's JSON as the gateway writes it, plus bytes
// a re-encoding would change (HTML characters, a unicode escape).
func rawEvent(id string) []byte {
	return []byte(`{"event":"Build <Completed> & done","messageId":"` + id + `","properties":{"v":"\u00e9"},"type":"track"}`)
}

// record returns a record of seq holding one event per id.
func record(t testing.TB, seq string, ids ...string) processor.Record {
	t.Helper()
	raws := make([][]byte, len(ids))
	for i, id := range ids {
		raws[i] = rawEvent(id)
	}
	return sinktest.Record(t, seq, time.Time{}, raws...)
}

func newSink(t testing.TB, cfg Config) (*Sink, string) {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "events.ndjson")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, cfg.Path
}

func open(t testing.TB, s *Sink, shard string) processor.Writer {
	t.Helper()
	w, err := s.Open(context.Background(), processor.Shard{Stream: "builds", ID: shard})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

// readLines returns the file's lines, failing the test on any that is not
// a JSON object.
func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("line %q is not a JSON object: %v", sc.Text(), err)
		}
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		cfg      Config
		wantName string
		wantErr  string
	}{
		{"Defaults", Config{Path: filepath.Join(dir, "a")}, DefaultName, ""},
		{"Named", Config{Path: filepath.Join(dir, "b"), Name: "local"}, "local", ""},
		{"NoPath", Config{}, "", "Path"},
		{"NegativeBuffer", Config{Path: filepath.Join(dir, "c"), BufferBytes: -1}, "", "BufferBytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("New error = %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer s.Close()
			if got := s.Name(); got != c.wantName {
				t.Errorf("Name = %q, want %q", got, c.wantName)
			}
		})
	}
}

func TestWriteIsDurable(t *testing.T) {
	ctx := context.Background()
	s, path := newSink(t, Config{})
	w := open(t, s, "shardId-000000000000")
	recs := []processor.Record{record(t, "100", "a", "b"), record(t, "101"), record(t, "102", "c")}
	if err := w.Write(ctx, recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := w.Durable(); got != "102" {
		t.Errorf("Durable after Write = %q, want 102", got)
	}
	want := []string{string(rawEvent("a")), string(rawEvent("b")), string(rawEvent("c"))}
	if got := readLines(t, path); !slices.Equal(got, want) {
		t.Errorf("lines =\n%q\nwant\n%q", got, want)
	}
	// A record without events moves Durable too.
	if err := w.Write(ctx, []processor.Record{record(t, "103")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.Durable(); got != "103" {
		t.Errorf("Durable = %q, want 103", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []processor.Record{record(t, "104", "d")}); err == nil {
		t.Error("Write after Close succeeded, want an error")
	}
}

// A missing directory is an outage, not a startup failure: Write fails
// until the directory exists, and nothing counts as durable meanwhile.
func TestMissingDirIsAnOutage(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "later")
	s, err := New(Config{Path: filepath.Join(dir, "events.ndjson")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	w := open(t, s, "shardId-000000000000")
	if err := w.Write(ctx, []processor.Record{record(t, "1", "a")}); err == nil || !strings.Contains(err.Error(), "open") {
		t.Fatalf("Write error = %v, want one naming open", err)
	}
	if got := w.Durable(); got != "" {
		t.Errorf("Durable = %q after a failed write", got)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []processor.Record{record(t, "1", "a")}); err != nil {
		t.Fatalf("Write after the directory appeared: %v", err)
	}
	if got := w.Durable(); got != "1" {
		t.Errorf("Durable = %q, want 1", got)
	}
}

func TestLines(t *testing.T) {
	ctx := context.Background()
	pretty := []byte("{\n  \"messageId\": \"p\",\n  \"type\": \"track\"\n}")
	e, err := event.Parse(pretty)
	if err != nil {
		t.Fatal(err)
	}
	noRaw := record(t, "2", "n")
	noRaw.Raw = nil
	for _, c := range []struct {
		name string
		rec  processor.Record
		want string
	}{
		{"Verbatim", record(t, "1", "v"), string(rawEvent("v"))},
		{"MultiLineCompacted", processor.Record{SequenceNumber: "3", Events: []*event.Event{e}, Raw: [][]byte{pretty}}, `{"messageId":"p","type":"track"}`},
		{"NoRawReencoded", noRaw, string(noRaw.Events[0].AppendJSON(nil))},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, path := newSink(t, Config{})
			w := open(t, s, "shardId-000000000000")
			if err := w.Write(ctx, []processor.Record{c.rec}); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := readLines(t, path); len(got) != 1 || got[0] != c.want {
				t.Errorf("lines = %q, want [%q]", got, c.want)
			}
		})
	}
}

func TestConcurrentShards(t *testing.T) {
	const shards, batches, perBatch = 8, 50, 5
	ctx := context.Background()
	s, path := newSink(t, Config{BufferBytes: 512}) // small, so spills interleave too
	// Opened here: a helper's t.Fatal must not run on another goroutine.
	writers := make([]processor.Writer, shards)
	for sh := range writers {
		writers[sh] = open(t, s, fmt.Sprintf("shardId-%012d", sh))
	}
	var wg sync.WaitGroup
	for sh, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			seq := 0
			for b := range batches {
				var recs []processor.Record
				for range perBatch {
					seq++
					id := fmt.Sprintf("s%d-%d", sh, seq)
					e, err := event.Parse(rawEvent(id))
					if err != nil {
						t.Error(err)
						return
					}
					recs = append(recs, processor.Record{SequenceNumber: fmt.Sprint(seq), Events: []*event.Event{e}, Raw: [][]byte{rawEvent(id)}})
				}
				if err := w.Write(ctx, recs); err != nil {
					t.Error(err)
					return
				}
				if b%3 == 2 || b == batches-1 {
					if err := w.Flush(ctx); err != nil {
						t.Error(err)
						return
					}
					if got, want := w.Durable(), fmt.Sprint(seq); got != want {
						t.Errorf("shard %d: Durable = %q, want %q", sh, got, want)
					}
				}
			}
		}()
	}
	wg.Wait()

	lines := readLines(t, path)
	if len(lines) != shards*batches*perBatch {
		t.Fatalf("file holds %d lines, want %d", len(lines), shards*batches*perBatch)
	}
	// Every line is one whole event, and each shard's events are in order.
	next := make([]int, shards)
	for _, l := range lines {
		var sh, seq int
		if _, err := fmt.Sscanf(l[strings.Index(l, `"messageId":"`)+len(`"messageId":"`):], "s%d-%d", &sh, &seq); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if want := string(rawEvent(fmt.Sprintf("s%d-%d", sh, seq))); l != want {
			t.Fatalf("line %q, want %q", l, want)
		}
		if next[sh]++; seq != next[sh] {
			t.Fatalf("shard %d: event %d after %d", sh, seq, next[sh]-1)
		}
	}
}

// TestStdout writes to a pipe in place of standard output: fsync fails on
// a pipe, so Flush must not sync it.
func TestStdout(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	old := os.Stdout
	os.Stdout = pw
	s, err := New(Config{Path: Stdout})
	os.Stdout = old
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := open(t, s, "shardId-000000000000")
	if err := w.Write(ctx, []processor.Record{record(t, "7", "x")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush to a pipe: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pw.Close() // the sink leaves standard output open
	got, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || got != string(rawEvent("x"))+"\n" {
		t.Errorf("stdout = %q, %v; want the event's line", got, err)
	}
}
