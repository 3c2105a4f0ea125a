package s3

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/testkit"
	"github.com/buildtelemetry/pipeline/internal/testkit/mems3"
	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// target is where a test's sink writes: the in-memory fake or s3rver.
type target struct {
	// api is what the sink is given: the store behind a hook.
	api *hookS3
	// bucket is a fresh bucket.
	bucket string
	// objects returns every object of the bucket, by key.
	objects func(t testing.TB) map[string][]byte
	// mem is the fake behind api, nil for s3rver.
	mem *mems3.Bucket
}

// newTarget returns a fresh target for one test.
type newTarget func(t *testing.T) *target

func memTarget(t *testing.T) *target {
	m := newMemS3()
	return &target{api: &hookS3{api: m}, bucket: "mem", mem: m, objects: func(testing.TB) map[string][]byte { return m.Objects() }}
}

const (
	testStream = "telemetry-events"
	testShard  = "shardId-000000000001"
)

// t0 is the first arrival time of most tests, in hour 12.
var t0 = time.Date(2026, 11, 27, 12, 10, 0, 0, time.UTC)

// seq returns the i-th sequence number, shaped like Kinesis' 56 digits.
func seq(i int) string { return fmt.Sprintf("495903382714902566085596925383615710959215759891%08d", i) }

// seqIndex is seq's inverse.
func seqIndex(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(s, "495903382714902566085596925383615710959215759891"))
	if err != nil || seq(n) != s {
		t.Fatalf("sequence number %q is not one of seq's", s)
	}
	return n
}

// rawEvent returns an event's JSON as the gateway stores it: keys sorted,
// HTML characters and non-ASCII unescaped, receivedAt the arrival time.
func rawEvent(id string, at time.Time) []byte {
	ts := at.UTC().Format(event.TimeLayout)
	return []byte(`{"context":{"ip":"203.0.113.9","library":{"name":"analytics-node","version":"6.2.0"}},"event":"build:ci_build_process_completed","messageId":"` + id +
		`","properties":{"buildVersion":"29.58.2","duration":45678,"framework":"next","note":"<a&b> é","plugins":[{"name":"@netlify/plugin-nextjs","version":"5.8.1"}],"steps":4},"receivedAt":"` + ts +
		`","source":"netlify-build","timestamp":"` + ts + `","type":"track","userId":"buildbot_user"}`)
}

// eventID returns the messageId of event j of record i.
func eventID(prefix string, i, j int) string { return fmt.Sprintf("%s-%d-%d", prefix, i, j) }

// record returns record i, arriving at at, with per events.
func record(t testing.TB, prefix string, i, per int, at time.Time) processor.Record {
	t.Helper()
	raws := make([][]byte, per)
	for j := range raws {
		raws[j] = rawEvent(eventID(prefix, i, j), at)
	}
	return sinktest.Record(t, seq(i), at, raws...)
}

// records returns n records from first, per events each, the first
// arriving at at and each next one step later.
func records(t testing.TB, prefix string, first, n, per int, at time.Time, step time.Duration) []processor.Record {
	t.Helper()
	out := make([]processor.Record, n)
	for i := range out {
		out[i] = record(t, prefix, first+i, per, at.Add(time.Duration(i)*step))
	}
	return out
}

// ids returns the messageIds of recs.
func ids(recs []processor.Record) []string {
	var out []string
	for _, r := range recs {
		for _, e := range r.Events {
			out = append(out, e.MessageID)
		}
	}
	return out
}

// corpusEvents returns n Netlify-shaped events normalised as the gateway
// does, for realistic sizes and compression.
func corpusEvents(t testing.TB, n int, receivedAt time.Time) [][]byte {
	return sinktest.NetlifyEvents(t, 11, n, receivedAt)
}

// corpusRecords packs events into records of per events from seq(first),
// all arriving at at.
func corpusRecords(t testing.TB, events [][]byte, first, per int, at time.Time) []processor.Record {
	t.Helper()
	var out []processor.Record
	for i := 0; i < len(events); i += per {
		out = append(out, sinktest.Record(t, seq(first+len(out)), at, events[i:min(i+per, len(events))]...))
	}
	return out
}

// newClock is a settable Config.Now.
func newClock(t time.Time) *testkit.Clock { return testkit.NewClock(t) }

// stateRow stands for the lease row's sink state: it keeps what
// SaveState wrote last, as the progress store does. fail, when set, fails
// the next saves.
type stateRow struct {
	mu    sync.Mutex
	state []byte
	saves int
	fail  error
}

var _ processor.StateWriter = (*stateRow)(nil)

func (r *stateRow) SaveState(_ context.Context, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.state = bytes.Clone(b)
	r.saves++
	return nil
}

func (r *stateRow) get() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.state)
}

func newSink(t testing.TB, tg *target, cfg Config) *Sink {
	t.Helper()
	cfg.Bucket = tg.bucket
	s, err := New(tg.api, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// open opens the writer of testShard with a saved state and a lease row.
func open(t testing.TB, s *Sink, state []byte, row processor.StateWriter) processor.Writer {
	t.Helper()
	w, err := s.Open(context.Background(), processor.Shard{Stream: testStream, ID: testShard, Worker: "w1", State: state, Saver: row})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func mustWrite(t testing.TB, w processor.Writer, recs []processor.Record) {
	t.Helper()
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func mustFlush(t testing.TB, w processor.Writer) {
	t.Helper()
	if err := w.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// writeBatches writes recs in batches whose sizes cycle through sizes,
// calling each (when set) before every batch.
func writeBatches(t testing.TB, w processor.Writer, recs []processor.Record, sizes []int, each func()) {
	t.Helper()
	for i, k := 0, 0; i < len(recs); k++ {
		n := min(sizes[k%len(sizes)], len(recs)-i)
		if each != nil {
			each()
		}
		mustWrite(t, w, recs[i:i+n])
		i += n
	}
}

// line is one line of an object.
type line struct {
	key    string
	fields map[string]json.RawMessage
	raw    []byte
}

// gunzip returns a gzip object's content, failing the test if it is not
// a complete gzip stream (reading to EOF checks the CRC and length).
func gunzip(t testing.TB, key string, body []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: open gzip: %v", key, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: read gzip: %v", key, err)
	}
	return b
}

// ndjson returns the lines of a gzip NDJSON object, failing the test if a
// line is not a JSON object or the object does not end with a newline.
func ndjson(t testing.TB, key string, body []byte) []line {
	t.Helper()
	b := gunzip(t, key, body)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("%s: %d bytes, not ending with a newline", key, len(b))
	}
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m == nil {
			t.Fatalf("%s: line %q is not a JSON object: %v", key, sc.Bytes(), err)
		}
		out = append(out, line{key: key, fields: m, raw: bytes.Clone(sc.Bytes())})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return out
}

// eventLines returns the lines of every event object (under "events/").
func eventLines(t testing.TB, objects map[string][]byte) []line {
	t.Helper()
	var out []line
	for _, k := range slices.Sorted(maps.Keys(objects)) {
		if strings.HasPrefix(k, DefaultPrefix) {
			out = append(out, ndjson(t, k, objects[k])...)
		}
	}
	return out
}

func str(t testing.TB, l line, field string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(l.fields[field], &s); err != nil {
		t.Fatalf("%s: field %s of %s: %v", l.key, field, l.raw, err)
	}
	return s
}

// wantOnce fails the test unless the lines hold each of want exactly
// once and nothing else.
func wantOnce(t testing.TB, lines []line, want []string) {
	t.Helper()
	got := map[string][]string{}
	for _, l := range lines {
		id := str(t, l, "messageId")
		got[id] = append(got[id], l.key)
	}
	for _, id := range want {
		switch n := len(got[id]); n {
		case 0:
			t.Errorf("%s: missing", id)
		case 1:
		default:
			t.Errorf("%s: %d copies, in %v", id, n, got[id])
		}
		delete(got, id)
	}
	for id, keys := range got {
		t.Errorf("%s: unexpected, in %v", id, keys)
	}
}

// keyRE matches the key of an event object of testShard.
var keyRE = regexp.MustCompile(`^events/(\d{4}/\d{2}/\d{2}/\d{2})/` + regexp.QuoteMeta(testStream+"-"+testShard) + `-(\d+)-(\d+)\.gz$`)

// testIDRE matches eventID's messageIds.
var testIDRE = regexp.MustCompile(`^[a-z]+-(\d+)-\d+$`)

// checkLayout fails the test unless every event object's key has the
// layout, and every line of it is an event of a record within the key's
// range whose arrival time (the events' receivedAt) is in the key's hour.
func checkLayout(t testing.TB, objects map[string][]byte) {
	t.Helper()
	for _, l := range eventLines(t, objects) {
		m := keyRE.FindStringSubmatch(l.key)
		if m == nil {
			t.Fatalf("key %s does not match %s", l.key, keyRE)
		}
		first, last := seqIndex(t, m[2]), seqIndex(t, m[3])
		at, err := time.Parse(time.RFC3339, str(t, l, "receivedAt"))
		if err != nil {
			t.Fatal(err)
		}
		if got := HourPath(at); got != m[1] {
			t.Errorf("%s: event %s arrived in hour %s", l.key, str(t, l, "messageId"), got)
		}
		id := str(t, l, "messageId")
		if m := testIDRE.FindStringSubmatch(id); m != nil {
			if i, _ := strconv.Atoi(m[1]); i < first || i > last {
				t.Errorf("%s: event %s of record %d is outside the key's range %d..%d", l.key, id, i, first, last)
			}
		}
	}
}

// eventKeys returns the sorted keys under the events prefix.
func eventKeys(objects map[string][]byte) []string {
	var out []string
	for k := range objects {
		if strings.HasPrefix(k, DefaultPrefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
