package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

// runSuite runs the sink's behaviour tests against targets from nt: the
// in-memory fake in plain go test, s3rver with the integration tag.
func runSuite(t *testing.T, nt newTarget) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, newTarget)
	}{
		{"EventsOnce", testEventsOnce},
		{"SizeCutsIndependentOfBatches", testSizeCutsIndependentOfBatches},
		{"AgeFlushOnTick", testAgeFlushOnTick},
		{"HourBoundary", testHourBoundary},
		{"ReplayAfterCrash", testReplayAfterCrash},
		{"RetryAfterFailedUpload", testRetryAfterFailedUpload},
		{"Multipart", testMultipart},
		{"ErrorPrefix", testErrorPrefix},
		{"LongNames", testLongNames},
		{"ProcessorCrash", testProcessorCrash},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, nt) })
	}
}

// Events in, objects out: every event exactly once, in gzip NDJSON
// objects laid out by hour, each cut at BufferBytes.
func testEventsOnce(t *testing.T, nt newTarget) {
	tg := nt(t)
	s := newSink(t, tg, Config{BufferBytes: 16 << 10})
	w := open(t, s, nil, &stateRow{})
	recs := records(t, "a", 1, 300, 3, t0, time.Second)
	writeBatches(t, w, recs, []int{25}, nil)
	mustFlush(t, w)
	if got, want := w.Durable(), seq(300); got != want {
		t.Errorf("Durable after Flush = %s, want %s", got, want)
	}
	objects := tg.objects(t)
	if n := len(eventKeys(objects)); n < 5 {
		t.Errorf("%d objects, want several: BufferBytes should cut them", n)
	}
	checkLayout(t, objects)
	lines := eventLines(t, objects)
	wantOnce(t, lines, ids(recs))
	// Lines are the events' bytes as read from the stream.
	raws := map[string][]byte{}
	for _, r := range recs {
		for i, e := range r.Events {
			raws[e.MessageID] = r.Raw[i]
		}
	}
	for _, l := range lines {
		if id := str(t, l, "messageId"); !bytes.Equal(l.raw, raws[id]) {
			t.Fatalf("line of %s:\n got %s\nwant %s", id, l.raw, raws[id])
		}
	}
	if tg.mem != nil {
		for k, ct := range tg.mem.ContentTypes() {
			if ct != ContentType {
				t.Errorf("%s: Content-Type %q, want %q", k, ct, ContentType)
			}
		}
	}
}

// Size cuts depend on the records only: any batching gives the same
// objects, byte for byte.
func testSizeCutsIndependentOfBatches(t *testing.T, nt newTarget) {
	recs := records(t, "b", 1, 200, 2, t0, 100*time.Millisecond)
	var first map[string][]byte
	for _, sizes := range [][]int{{1}, {7, 3}, {200}} {
		tg := nt(t)
		s := newSink(t, tg, Config{BufferBytes: 8 << 10})
		w := open(t, s, nil, &stateRow{})
		writeBatches(t, w, recs, sizes, nil)
		mustFlush(t, w)
		objects := tg.objects(t)
		if first == nil {
			first = objects
			continue
		}
		if got, want := eventKeys(objects), eventKeys(first); !slices.Equal(got, want) {
			t.Fatalf("batch sizes %v: keys\n%v\nwant\n%v", sizes, got, want)
		}
		for k, b := range objects {
			if !bytes.Equal(b, first[k]) {
				t.Errorf("batch sizes %v: %s differs", sizes, k)
			}
		}
	}
}

// The buffer is written when it is BufferInterval old, checked on every
// Write, the processor's empty ticks included.
func testAgeFlushOnTick(t *testing.T, nt newTarget) {
	tg := nt(t)
	clk := newClock(t0.Add(time.Hour)) // wall clock an hour after arrival
	s := newSink(t, tg, Config{BufferInterval: time.Minute, Now: clk.Now})
	w := open(t, s, nil, &stateRow{})
	recs := records(t, "c", 1, 10, 1, t0, time.Second)
	mustWrite(t, w, recs)
	clk.Advance(59 * time.Second)
	mustWrite(t, w, nil)
	if d := w.Durable(); d != "" {
		t.Errorf("Durable before the interval = %s, want none", d)
	}
	if n := len(tg.objects(t)); n != 0 {
		t.Fatalf("%d objects before the interval, want 0", n)
	}
	clk.Advance(time.Second)
	mustWrite(t, w, nil)
	if got, want := w.Durable(), seq(10); got != want {
		t.Errorf("Durable after the tick = %s, want %s", got, want)
	}
	objects := tg.objects(t)
	want := s.Key(testStream, testShard, seq(1), seq(10), t0)
	if got := eventKeys(objects); !slices.Equal(got, []string{want}) {
		t.Fatalf("keys %v, want [%s]: the hour is the arrival's, not the clock's", got, want)
	}
	// A record without events is durable at once when nothing is buffered.
	mustWrite(t, w, []processor.Record{{SequenceNumber: seq(11), ArrivalTime: t0}})
	if got, want := w.Durable(), seq(11); got != want {
		t.Errorf("Durable after an empty record = %s, want %s", got, want)
	}
	// And part of the open object's range otherwise.
	mustWrite(t, w, records(t, "c", 12, 1, 1, t0, 0))
	mustWrite(t, w, []processor.Record{{SequenceNumber: seq(13), ArrivalTime: t0}})
	if got, want := w.Durable(), seq(11); got != want {
		t.Errorf("Durable with a buffer = %s, want %s", got, want)
	}
	mustFlush(t, w)
	if got, want := w.Durable(), seq(13); got != want {
		t.Errorf("Durable after Flush = %s, want %s", got, want)
	}
	if _, ok := tg.objects(t)[s.Key(testStream, testShard, seq(12), seq(13), t0)]; !ok {
		t.Errorf("no object for records 12..13 in %v", eventKeys(tg.objects(t)))
	}
}

// Events arriving around an hour boundary go under their own hour: the
// object is cut where the arrival hour changes.
func testHourBoundary(t *testing.T, nt newTarget) {
	tg := nt(t)
	s := newSink(t, tg, Config{Now: newClock(t0.Add(3 * time.Hour)).Now})
	w := open(t, s, nil, &stateRow{})
	h13 := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	var recs []processor.Record
	for i, at := range []time.Time{h13.Add(-2 * time.Second), h13.Add(-time.Millisecond), h13, h13.Add(time.Second)} {
		recs = append(recs, record(t, "d", i+1, 2, at))
	}
	mustWrite(t, w, recs)
	mustFlush(t, w)
	objects := tg.objects(t)
	want := []string{
		"events/2026/11/27/12/" + ObjectName(testStream, testShard, seq(1), seq(2)),
		"events/2026/11/27/13/" + ObjectName(testStream, testShard, seq(3), seq(4)),
	}
	if got := eventKeys(objects); !slices.Equal(got, want) {
		t.Fatalf("keys\n%v\nwant\n%v", got, want)
	}
	checkLayout(t, objects)
	wantOnce(t, eventLines(t, objects), ids(recs))
}

// A writer killed after uploading an object and before the checkpoint:
// the next lease replays from the checkpoint, with other batch sizes and
// another clock, and must write the same objects again, never a line
// twice.
func testReplayAfterCrash(t *testing.T, nt newTarget) {
	recs := records(t, "r", 1, 120, 2, t0, time.Second)
	for _, tc := range []struct {
		name string
		// from is the index of the first replayed record: after the
		// checkpoint.
		from func(durable []string) int
		// failLast fails the upload of the crashed writer's last object,
		// after its range was saved.
		failLast bool
	}{
		{name: "never checkpointed", from: func([]string) int { return 0 }},
		{name: "checkpointed half way", from: func(d []string) int { return durableIndex(t, d[len(d)/2]) }},
		{name: "checkpointed after the pending object", from: func(d []string) int { return durableIndex(t, d[len(d)-1]) }},
		{name: "killed during the upload", from: func([]string) int { return 0 }, failLast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := nt(t)
			clk := newClock(t0)
			s := newSink(t, tg, Config{BufferInterval: time.Minute, Now: clk.Now})
			row := &stateRow{}
			w1 := open(t, s, nil, row)
			// 100 records in batches of 5, 16 s apart: cut by age about
			// every 4 batches. Then 10 records stay buffered.
			var durable []string
			for i := 0; i < 100; i += 5 {
				clk.Advance(16 * time.Second)
				mustWrite(t, w1, recs[i:i+5])
				durable = append(durable, w1.Durable())
			}
			if tc.failLast {
				tg.api.setBefore(func(string, string) error { return errTransient })
				clk.Advance(time.Minute)
				err := w1.Write(context.Background(), recs[100:105])
				if err == nil { // recs[100] started a buffer: tick when it is old
					clk.Advance(time.Minute)
					err = w1.Write(context.Background(), nil)
				}
				if err == nil {
					t.Fatal("Write with a failing upload succeeded")
				}
				tg.api.setBefore(nil)
			} else {
				mustWrite(t, w1, recs[100:110])
			}
			before := tg.objects(t)
			state := row.get()
			if len(before) < 3 || state == nil {
				t.Fatalf("crashed writer made %d objects, state %s: want several, and a state", len(before), state)
			}
			if tc.failLast {
				if _, ok := before[decodeState(state).Key]; ok {
					t.Fatalf("the failed object %s exists", decodeState(state).Key)
				}
			}
			// Crash: w1 is dropped without Flush or Close. The next lease.
			clk.Advance(7 * time.Second)
			w2 := open(t, s, state, row)
			from := tc.from(durable)
			writeBatches(t, w2, recs[from:], []int{3, 11, 1}, func() { clk.Advance(23 * time.Second) })
			mustFlush(t, w2)
			if got, want := w2.Durable(), seq(120); got != want {
				t.Errorf("Durable = %s, want %s", got, want)
			}
			after := tg.objects(t)
			for k, b := range before {
				if !bytes.Equal(after[k], b) {
					t.Errorf("%s changed on the replay", k)
				}
			}
			if k := decodeState(state).Key; after[k] == nil {
				t.Errorf("pending object %s not written", k)
			}
			checkLayout(t, after)
			wantOnce(t, eventLines(t, after), ids(recs))
		})
	}
}

// durableIndex returns the index in recs (from seq(1)) of the record
// after durable sequence number d.
func durableIndex(t testing.TB, d string) int {
	t.Helper()
	if d == "" {
		return 0
	}
	return seqIndex(t, d)
}

// A failed upload fails the Write; the processor's retry with the same
// records writes the same objects, and no line twice.
func testRetryAfterFailedUpload(t *testing.T, nt newTarget) {
	recs := records(t, "f", 1, 60, 1, t0, time.Second)
	cfg := Config{BufferBytes: 2 << 10}
	ref := nt(t)
	w := open(t, newSink(t, ref, cfg), nil, &stateRow{})
	mustWrite(t, w, recs)
	mustFlush(t, w)
	want := eventKeys(ref.objects(t))

	tg := nt(t)
	row := &stateRow{}
	w = open(t, newSink(t, tg, cfg), nil, row)
	var mu sync.Mutex
	puts := 0
	tg.api.setBefore(func(op, key string) error {
		mu.Lock()
		defer mu.Unlock()
		if puts++; puts == 3 {
			return errTransient
		}
		return nil
	})
	err := w.Write(context.Background(), recs)
	if !errors.Is(err, errTransient) || processor.IsPermanent(err) {
		t.Fatalf("Write with a failing upload: %v, want the transient error", err)
	}
	if d := w.Durable(); d == seq(60) {
		t.Errorf("Durable = %s after a failed Write", d)
	}
	row.fail = errors.New("dynamodb: throttled")
	if err := w.Write(context.Background(), recs); err == nil || !strings.Contains(err.Error(), "throttled") {
		t.Fatalf("Write with a failing SaveState: %v, want its error", err)
	}
	row.fail = nil
	mustWrite(t, w, recs)
	mustFlush(t, w)
	objects := tg.objects(t)
	if got := eventKeys(objects); !slices.Equal(got, want) {
		t.Errorf("keys after retries\n%v\nwant\n%v", got, want)
	}
	wantOnce(t, eventLines(t, objects), ids(recs))
}

// Objects above MultipartThreshold go up in parts; a failed part aborts
// the upload and the retry uploads it whole.
func testMultipart(t *testing.T, nt newTarget) {
	old := minPartSize
	minPartSize = 4 << 10
	t.Cleanup(func() { minPartSize = old })
	tg := nt(t)
	s := newSink(t, tg, Config{MultipartThreshold: 8 << 10, PartSize: 4 << 10})
	w := open(t, s, nil, &stateRow{})
	// Small records first: a PutObject object, cut by the hour.
	small := records(t, "m", 1, 3, 1, t0.Add(-time.Hour), time.Second)
	mustWrite(t, w, small)
	recs := corpusRecords(t, corpusEvents(t, 300, t0), 4, 10, t0)
	mustWrite(t, w, recs)
	var mu sync.Mutex
	parts := 0
	tg.api.setBefore(func(op, key string) error {
		mu.Lock()
		defer mu.Unlock()
		if op == "UploadPart" {
			if parts++; parts == 2 {
				return errTransient
			}
		}
		return nil
	})
	if err := w.Flush(context.Background()); !errors.Is(err, errTransient) {
		t.Fatalf("Flush with a failing part: %v, want the injected error", err)
	}
	mustFlush(t, w)
	key := s.Key(testStream, testShard, recs[0].SequenceNumber, recs[len(recs)-1].SequenceNumber, t0)
	var got []string
	for _, op := range tg.api.ops() {
		if strings.HasSuffix(op, " "+key) {
			got = append(got, strings.Fields(op)[0])
		}
	}
	second := 1 + slices.Index(got[1:], "CreateMultipartUpload")
	if second == 0 || len(got) < 6 || got[0] != "CreateMultipartUpload" || !slices.Contains(got, "AbortMultipartUpload") || got[len(got)-1] != "CompleteMultipartUpload" || slices.Contains(got, "PutObject") {
		t.Fatalf("calls for %s: %v; want a multipart upload, aborted, then another completed", key, got)
	}
	if n := len(got) - second - 2; n < 3 {
		t.Errorf("%d parts in the second upload (%v), want several", n, got)
	}
	objects := tg.objects(t)
	if len(objects[key]) <= 8<<10 {
		t.Errorf("%s is %d bytes, want over the threshold", key, len(objects[key]))
	}
	wantOnce(t, eventLines(t, objects), append(ids(small), ids(recs)...))
	if tg.mem != nil && tg.mem.OpenUploads() != 0 {
		t.Errorf("%d multipart uploads left open", tg.mem.OpenUploads())
	}
}

// Events that cannot be table lines go to the error output, and count as
// delivered.
func testErrorPrefix(t *testing.T, nt newTarget) {
	tg := nt(t)
	s := newSink(t, tg, Config{MaxEventBytes: 2 << 10})
	w := open(t, s, nil, &stateRow{})
	good := record(t, "e", 1, 1, t0)
	bad := record(t, "e", 2, 3, t0.Add(time.Second))
	bad.Raw[0] = []byte(`{"messageId":"e-2-0","type":"track"`)
	bad.Raw[2] = []byte(`["e-2-2"]`)
	big := record(t, "e", 3, 1, t0.Add(2*time.Second))
	big.Raw[0] = []byte(`{"messageId":"e-3-0","type":"track","pad":"` + strings.Repeat("x", 3<<10) + `"}`)
	// A pretty-printed event is compacted to one line.
	pretty := record(t, "e", 4, 1, t0.Add(3*time.Second))
	var buf bytes.Buffer
	if err := json.Indent(&buf, pretty.Raw[0], "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.Raw[0] = buf.Bytes()
	// The envelope of an event the gateway refused goes to the error
	// output under its reason, whatever its size.
	rej := record(t, "e", 5, 1, t0.Add(4*time.Second))
	_, env := event.RejectedEvent(event.Rejection{Index: 2, Err: &event.ValidationError{Kind: event.Invalid, Index: 2, Reason: "missing userId and anonymousId"},
		Raw: []byte(`{"type":"track","event":"e"}`)}, event.Meta{Source: "s", ReceivedAt: t0}, 1<<10)
	ev, err := event.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	rej.Events[0], rej.Raw[0] = ev, env
	recs := []processor.Record{good, bad, big, pretty, rej}
	mustWrite(t, w, recs)
	mustFlush(t, w)
	if got, want := w.Durable(), seq(5); got != want {
		t.Errorf("Durable = %s, want %s", got, want)
	}
	objects := tg.objects(t)
	wantOnce(t, eventLines(t, objects), []string{"e-1-0", "e-2-1", "e-4-0"})
	name := ObjectName(testStream, testShard, seq(1), seq(5))
	for _, tc := range []struct {
		reason string
		raws   [][]byte
	}{
		{ReasonInvalidJSON, [][]byte{bad.Raw[0], bad.Raw[2]}},
		{ReasonTooLarge, [][]byte{big.Raw[0]}},
		{event.RejectedInvalid, [][]byte{env}},
	} {
		key := DefaultErrorPrefix + tc.reason + "/2026/11/27/12/" + name
		if got := s.ErrorKey(tc.reason, testStream, testShard, seq(1), seq(5), t0); got != key {
			t.Errorf("ErrorKey = %s, want %s", got, key)
		}
		body, ok := objects[key]
		if !ok {
			t.Errorf("no error object %s among %v", key, slices.Sorted(maps.Keys(objects)))
			continue
		}
		lines := ndjson(t, key, body)
		if len(lines) != len(tc.raws) {
			t.Fatalf("%s: %d lines, want %d", key, len(lines), len(tc.raws))
		}
		for i, l := range lines {
			var el errorLine
			if err := json.Unmarshal(l.raw, &el); err != nil {
				t.Fatal(err)
			}
			if el.ErrorCode != tc.reason || !bytes.Equal(el.RawData, tc.raws[i]) || el.Stream != testStream || el.ShardID != testShard || el.ErrorMessage == "" {
				t.Errorf("%s line %d: %+v; want reason %s and the raw bytes %q", key, i, el, tc.reason, tc.raws[i])
			}
		}
	}
}

// A stream name long enough to push the name over MaxNameBytes gets a
// hashed name, which file-backed stores can hold.
func testLongNames(t *testing.T, nt newTarget) {
	tg := nt(t)
	s := newSink(t, tg, Config{})
	stream := strings.Repeat("s", 128)
	w, err := s.Open(context.Background(), processor.Shard{Stream: stream, ID: testShard})
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, "l", 1, 2, 1, t0, time.Second)
	mustWrite(t, w, recs)
	mustFlush(t, w)
	objects := tg.objects(t)
	keys := eventKeys(objects)
	if len(keys) != 1 {
		t.Fatalf("keys %v, want one", keys)
	}
	if name := keys[0][strings.LastIndexByte(keys[0], '/')+1:]; len(name) > MaxNameBytes || !strings.HasPrefix(name, stream) {
		t.Errorf("name %s: %d bytes, want at most %d, starting with the stream", name, len(name), MaxNameBytes)
	}
	wantOnce(t, eventLines(t, objects), ids(recs))
}

// The real record processor, killed after the sink uploaded objects and
// before any checkpoint, then a new lease that replays everything in
// other batches: no event is written twice.
func testProcessorCrash(t *testing.T, nt newTarget) {
	tg := nt(t)
	clk := newClock(time.Now())
	s := newSink(t, tg, Config{BufferInterval: time.Minute, Now: clk.Now})
	store := &pt.Store{}
	dlq := &pt.DeadLetters{}
	f, err := kclproc.NewFactory(kclproc.Config{
		Stream: testStream, WorkerID: "w1", CheckpointInterval: time.Hour,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	}, []processor.Sink{s}, dlq, store, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	start := func() kcl.IRecordProcessor {
		p := f.CreateProcessor()
		p.Initialize(&kcl.InitializationInput{ShardId: testShard, ExtendedSequenceNumber: &kcl.ExtendedSequenceNumber{SequenceNumber: aws.String(store.Progress(testShard).Checkpoint)}})
		return p
	}
	krecs := pt.KinesisRecords("p", 1, 90, 3)
	p1 := start()
	for i := 0; i < 80; i += 10 {
		clk.Advance(25 * time.Second)
		p1.ProcessRecords(&kcl.ProcessRecordsInput{Records: krecs[i : i+10], Checkpointer: &pt.Checkpointer{}})
	}
	objects := tg.objects(t)
	if len(objects) < 2 || store.Progress(testShard).Checkpoint != "" {
		t.Fatalf("before the crash: %d objects, checkpoint %q; want several and none", len(objects), store.Progress(testShard).Checkpoint)
	}
	// Crash: no Shutdown. The next lease replays from the start.
	p2 := start()
	for i := 0; i < len(krecs); i += 7 {
		clk.Advance(11 * time.Second)
		p2.ProcessRecords(&kcl.ProcessRecordsInput{Records: krecs[i:min(i+7, len(krecs))], Checkpointer: &pt.Checkpointer{}})
	}
	p2.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: &pt.Checkpointer{}})
	if got := store.Progress(testShard).Checkpoint; got != "90" {
		t.Errorf("checkpoint %q after shutdown, want 90", got)
	}
	if n := len(dlq.Letters()); n != 0 {
		t.Errorf("%d letters parked", n)
	}
	var want []string
	for i := 1; i <= 90; i++ {
		for j := 0; j < 3; j++ {
			want = append(want, fmt.Sprintf("p-%d-%d", i, j))
		}
	}
	wantOnce(t, eventLines(t, tg.objects(t)), want)
}
