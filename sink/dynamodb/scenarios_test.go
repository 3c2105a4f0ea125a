package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/processor"
)

// The exactness scenarios, run against memDB by the unit tests and
// against dynalite by the integration tests.

// env is where a scenario runs: a client and a fresh table name.
type env struct {
	api   API
	query QueryAPI
	table string
}

// corpusNow is the corpus generator's clock: its events are spread over
// the 24 hours before it, so over two UTC days.
var corpusNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// corpusEvents returns n Netlify-shaped events normalised as the gateway
// does and read back as the worker does, and the generator's structs they
// came from: the oracle of the expected counts.
// The events are cached by size and seed: sinks only read them.
func corpusEvents(t testing.TB, n int, seed uint64) ([]*event.Event, []corpus.Track) {
	t.Helper()
	corpusCache.Lock()
	defer corpusCache.Unlock()
	key := [2]uint64{uint64(n), seed}
	if c, ok := corpusCache.m[key]; ok {
		return c.evs, c.tracks
	}
	g := corpus.NewNetlify(seed)
	norm := &event.Normalizer{}
	evs := make([]*event.Event, 0, n)
	tracks := make([]corpus.Track, 0, n)
	for range n {
		tr := g.Next()
		body, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		req, err := event.DecodeRequest(body, event.Single, event.Track, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := norm.Normalize(req, event.Meta{Source: "test", ReceivedAt: corpusNow})
		if err != nil {
			t.Fatal(err)
		}
		e, err := event.Parse(out[0].AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
		tracks = append(tracks, tr)
	}
	if corpusCache.m == nil {
		corpusCache.m = map[[2]uint64]cachedCorpus{}
	}
	corpusCache.m[key] = cachedCorpus{evs, tracks}
	return evs, tracks
}

type cachedCorpus struct {
	evs    []*event.Event
	tracks []corpus.Track
}

var corpusCache struct {
	sync.Mutex
	m map[[2]uint64]cachedCorpus
}

// want is the expected counts: dimension -> day -> counts.
type want map[string]map[string]DayCounts

// expected counts tracks the way the package documentation says, from
// the generator's structs rather than from the events.
func expected(tracks ...[]corpus.Track) want {
	w := want{}
	for _, d := range DefaultDimensions() {
		w[d.Name] = map[string]DayCounts{}
	}
	for _, trs := range tracks {
		for _, tr := range trs {
			day := time.UnixMilli(tr.Timestamp).UTC().Format(DayLayout)
			p := tr.Properties
			vals := map[string][]string{
				"buildVersion": {p.BuildVersion},
				"nodeVersion":  {p.NodeVersion},
				"osPlatform":   {p.OSPlatform},
				"framework":    {p.Framework},
				"status":       {p.Status},
			}
			for _, pl := range p.Plugins {
				if v := pl.Name + "@" + pl.Version; !slices.Contains(vals["plugin"], v) {
					vals["plugin"] = append(vals["plugin"], v)
				}
			}
			for dim, days := range w {
				dc, ok := days[day]
				if !ok {
					dc = DayCounts{Day: day, Values: map[string]int64{}}
				}
				dc.Events++
				for _, v := range vals[dim] {
					dc.Values[v]++
				}
				days[day] = dc
			}
		}
	}
	return w
}

// checkCounts compares every dimension's counts in the table with w.
func checkCounts(t testing.TB, e env, w want) {
	t.Helper()
	for _, dim := range slices.Sorted(maps.Keys(w)) {
		got, err := ReadCounts(context.Background(), e.query, e.table, dim, "", "")
		if err != nil {
			t.Fatal(err)
		}
		gotDays := map[string]DayCounts{}
		for _, dc := range got {
			gotDays[dc.Day] = dc
		}
		for _, day := range slices.Sorted(maps.Keys(w[dim])) {
			g, wd := gotDays[day], w[dim][day]
			if g.Events != wd.Events {
				t.Errorf("%s on %s: got %d events, want %d", dim, day, g.Events, wd.Events)
			}
			for _, v := range slices.Sorted(maps.Keys(wd.Values)) {
				if g.Values[v] != wd.Values[v] {
					t.Errorf("%s on %s: %s: got %d, want %d", dim, day, v, g.Values[v], wd.Values[v])
				}
			}
			for v, n := range g.Values {
				if _, ok := wd.Values[v]; !ok {
					t.Errorf("%s on %s: unexpected value %q counted %d", dim, day, v, n)
				}
			}
			delete(gotDays, day)
		}
		for day := range gotDays {
			t.Errorf("%s: unexpected day %s", dim, day)
		}
	}
}

// seqNum is the i-th sequence number of a shard, Kinesis-sized.
func seqNum(i int) string { return fmt.Sprintf("4959%052d", i) }

// toRecords packs events into records of 1 to 5 events, numbered from
// seqNum(1).
func toRecords(evs []*event.Event) []processor.Record {
	var recs []processor.Record
	for i, k := 0, 0; i < len(evs); k++ {
		n := min(1+k%5, len(evs)-i)
		recs = append(recs, processor.Record{SequenceNumber: seqNum(k + 1), ArrivalTime: corpusNow, Events: evs[i : i+n]})
		i += n
	}
	return recs
}

// recordsOf packs events into records of per events each.
func recordsOf(evs []*event.Event, per int) []processor.Record {
	var recs []processor.Record
	for i, k := 0, 0; i < len(evs); i, k = i+per, k+1 {
		recs = append(recs, processor.Record{SequenceNumber: seqNum(k + 1), ArrivalTime: corpusNow, Events: evs[i:min(i+per, len(evs))]})
	}
	return recs
}

// writeBatches writes recs in batches of size records, as the processor
// would, checking Durable after each.
func writeBatches(ctx context.Context, w processor.Writer, recs []processor.Record, size int) error {
	for i := 0; i < len(recs); i += size {
		b := recs[i:min(i+size, len(recs))]
		if err := w.Write(ctx, b); err != nil {
			return err
		}
		if d, want := w.Durable(), b[len(b)-1].SequenceNumber; d != want {
			return fmt.Errorf("durable %s after writing up to %s", d, want)
		}
	}
	return nil
}

func newSink(t testing.TB, api API, table string, par int) *Sink {
	t.Helper()
	// One window per Write, so that Durable follows every batch; the
	// windows of the default configuration have tests of their own.
	s, err := New(api, Config{Table: table, Parallelism: par, FlushEvents: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func open(t testing.TB, s *Sink, shard string) processor.Writer {
	t.Helper()
	w, err := s.Open(context.Background(), processor.Shard{Stream: "s", ID: shard, Worker: "w"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

const shard0, shard1 = "shardId-000000000000", "shardId-000000000001"

// testExact: 10,000 events counted exactly, then replayed from the start
// with other batch boundaries without changing anything.
func testExact(t *testing.T, newEnv func(*testing.T) env) {
	ctx := context.Background()
	e := newEnv(t)
	evs, tracks := corpusEvents(t, 10000, 1)
	recs := toRecords(evs)
	s := newSink(t, e.api, e.table, 0)
	w := open(t, s, shard0)
	if err := w.Write(ctx, nil); err != nil || w.Durable() != "" {
		t.Fatalf("empty write: err %v, durable %q", err, w.Durable())
	}
	if err := writeBatches(ctx, w, recs, 37); err != nil {
		t.Fatal(err)
	}
	exp := expected(tracks)
	checkCounts(t, e, exp)
	st := s.Stats()
	if st.Events != 10000 || st.ConditionFailures != 0 || st.Reads != 0 {
		t.Errorf("stats %+v, want 10000 events and no condition failures or reads", st)
	}

	w2 := open(t, newSink(t, e.api, e.table, 0), shard0)
	if err := writeBatches(ctx, w2, recs, 101); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, e, exp)
}

// testPartialReplay: writers crash after some of a batch's updates
// succeeded (or after a call that was applied but reported a failure),
// and the next one replays from at or below the durable point with other
// batch boundaries.
func testPartialReplay(t *testing.T, newEnv func(*testing.T) env) {
	evs, tracks := corpusEvents(t, 3000, 2)
	recs := toRecords(evs)
	exp := expected(tracks)
	for _, tc := range []struct {
		name  string
		par   int
		fails []int64 // UpdateItem calls each crashing writer gets through
		sizes []int   // batch size of each writer, the last one completes
		back  int     // records before the durable point each replay starts at
		lose  bool
	}{
		{name: "one item applied", par: 1, fails: []int64{13}, sizes: []int{40, 23}, back: 0},
		{name: "several items, parallel", par: 8, fails: []int64{50}, sizes: []int{40, 23}, back: 17},
		{name: "two crashes", par: 3, fails: []int64{31, 20}, sizes: []int{50, 7, 60}, back: 5},
		{name: "lost responses", par: 4, fails: []int64{29, 15}, sizes: []int{40, 90, 11}, back: 3, lose: true},
		{name: "replay from the start", par: 2, fails: []int64{70}, sizes: []int{33, 29}, back: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			start := 0
			for i, left := range tc.fails {
				w := open(t, newSink(t, newFlaky(e.api, left, tc.lose), e.table, tc.par), shard0)
				err := writeBatches(ctx, w, recs[start:], tc.sizes[i])
				if !errors.Is(err, errInjected) {
					t.Fatalf("writer %d: got %v, want the injected failure", i, err)
				}
				// The next lease starts after the checkpoint, which is at
				// or below the durable point (here: some records below).
				next := start
				if d := w.Durable(); d != "" {
					next = slices.IndexFunc(recs, func(r processor.Record) bool { return r.SequenceNumber == d }) + 1
				}
				w.Close()
				start = max(0, next-tc.back)
			}
			w := open(t, newSink(t, e.api, e.table, tc.par), shard0)
			if err := writeBatches(ctx, w, recs[start:], tc.sizes[len(tc.sizes)-1]); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, e, exp)
		})
	}
}

// testHandover: writer A applies records 1..600 in batches of 100, then
// writer B (a new lease) replays from 401 in batches of 150 to the end.
func testHandover(t *testing.T, newEnv func(*testing.T) env) {
	ctx := context.Background()
	e := newEnv(t)
	evs, tracks := corpusEvents(t, 3000, 3)
	recs := toRecords(evs) // 1000 records
	a := open(t, newSink(t, e.api, e.table, 0), shard0)
	if err := writeBatches(ctx, a, recs[:600], 100); err != nil {
		t.Fatal(err)
	}
	a.Close()
	bs := newSink(t, e.api, e.table, 0)
	b := open(t, bs, shard0)
	if err := writeBatches(ctx, b, recs[400:], 150); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, e, expected(tracks))
	if st := bs.Stats(); st.ConditionFailures == 0 {
		t.Errorf("stats %+v: the replay of 401..600 should have met the watermarks", st)
	}
}

// testTwoShards: two shards with the same sequence numbers, interleaved
// on the same items, one of them replayed in part: separate watermarks.
func testTwoShards(t *testing.T, newEnv func(*testing.T) env) {
	ctx := context.Background()
	e := newEnv(t)
	evs0, tracks0 := corpusEvents(t, 2000, 4)
	evs1, tracks1 := corpusEvents(t, 2000, 5)
	recs0, recs1 := toRecords(evs0), toRecords(evs1)
	s := newSink(t, e.api, e.table, 0)
	w0, w1 := open(t, s, shard0), open(t, s, shard1)
	for i, j := 0, 0; i < len(recs0) || j < len(recs1); i, j = i+30, j+45 {
		if i < len(recs0) {
			if err := writeBatches(ctx, w0, recs0[i:min(i+30, len(recs0))], 30); err != nil {
				t.Fatal(err)
			}
		}
		if j < len(recs1) {
			if err := writeBatches(ctx, w1, recs1[j:min(j+45, len(recs1))], 45); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A new lease of shard 1 replays its second half.
	if err := writeBatches(ctx, open(t, s, shard1), recs1[len(recs1)/2:], 60); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, e, expected(tracks0, tracks1))
}

// testConcurrentWriters: two writers of one shard at once (a zombie and
// the new lease holder), with other batch boundaries: the
// compare-and-set keeps the counts exact.
func testConcurrentWriters(t *testing.T, newEnv func(*testing.T) env) {
	ctx := context.Background()
	e := newEnv(t)
	evs, tracks := corpusEvents(t, 3000, 6)
	recs := toRecords(evs)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, size := range []int{50, 70} {
		w := open(t, newSink(t, e.api, e.table, 4), shard0)
		wg.Go(func() { errs[i] = writeBatches(ctx, w, recs, size) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, e, expected(tracks))
}

// cost counts perShard corpus events from each of shards shards through
// a sink with windows of flushEvents, each shard getting batches of 500
// events (50 records of 10, as the gateway packs them under load), and
// returns the UpdateItem calls and the write units per 1,000 events.
func cost(t *testing.T, e env, shards, perShard, flushEvents int) (writes, units float64) {
	ctx := context.Background()
	// Slices of one cached corpus: generating it is the slow part.
	evs, tracks := corpusEvents(t, 20000, 7)
	if shards*perShard > len(evs) {
		t.Fatalf("%d shards of %d events: more than the corpus", shards, perShard)
	}
	evs, tracks = evs[:shards*perShard], tracks[:shards*perShard]
	s, err := New(e.api, Config{Table: e.table, FlushEvents: flushEvents}, nil)
	if err != nil {
		t.Fatal(err)
	}
	per := perShard
	for i := range shards {
		w, err := s.Open(ctx, processor.Shard{Stream: "s", ID: fmt.Sprintf("shardId-%012d", i), Worker: "w"})
		if err != nil {
			t.Fatal(err)
		}
		recs := recordsOf(evs[i*per:(i+1)*per], 10)
		for j := 0; j < len(recs); j += 50 {
			if err := w.Write(ctx, recs[j:min(j+50, len(recs))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if d := w.Durable(); d != recs[len(recs)-1].SequenceNumber {
			t.Fatalf("shard %d durable %q after its flush", i, d)
		}
	}
	checkCounts(t, e, expected(tracks))
	st := s.Stats()
	return float64(st.Updates) * 1000 / float64(st.Events), st.WriteUnits * 1000 / float64(st.Events)
}

// replayInto re-drives recs as the letter id, as `worker replay` and the
// automatic re-drive do: a writer of the letter, one Write, a Flush.
func replayInto(t *testing.T, s *Sink, id processor.LetterID, recs []processor.Record) {
	t.Helper()
	ctx := context.Background()
	w, err := s.Open(ctx, processor.Shard{Stream: "s", ID: "replay-" + id.Shard, Worker: "replay", Letter: &id})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if d := w.Durable(); d != "" {
		t.Fatalf("replay writer durable %q before its flush", d)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d, want := w.Durable(), recs[len(recs)-1].SequenceNumber; d != want {
		t.Fatalf("replay writer durable %q, want %s", d, want)
	}
}

// park does what the processor does when it parks recs for the sink:
// the letter's identity, and the note recorded.
func park(t *testing.T, s *Sink, reason string, recs []processor.Record) processor.LetterID {
	t.Helper()
	id := processor.LetterID{Shard: shard0, Reason: reason, FirstSeq: recs[0].SequenceNumber, LastSeq: recs[len(recs)-1].SequenceNumber}
	if err := s.ParkNote(shard0, id, recs).Record(context.Background()); err != nil {
		t.Fatal(err)
	}
	return id
}

// testReplayOrder: two ranges parked between counted ones, their letters
// replayed later one first, then both again: each counts once. (With a
// replay watermark of its own, the earlier letter replayed after the
// later one was skipped.)
func testReplayOrder(t *testing.T, newEnv func(*testing.T) env) {
	ctx := context.Background()
	e := newEnv(t)
	evs, tracks := corpusEvents(t, 3000, 8)
	recs := toRecords(evs) // 1000 records
	s := newSink(t, e.api, e.table, 0)
	w := open(t, s, shard0)
	if err := writeBatches(ctx, w, recs[:300], 50); err != nil {
		t.Fatal(err)
	}
	b := park(t, s, processor.ReasonBreakerOpen, recs[300:400])
	c := park(t, s, processor.ReasonRetriesExhausted, recs[400:500])
	w.Close()
	w = open(t, s, shard0) // the processor opens a fresh writer after parking
	if err := writeBatches(ctx, w, recs[500:], 70); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Holes == 0 {
		t.Fatalf("stats %+v: parking recorded no holes", st)
	}
	replayInto(t, s, c, recs[400:500])
	replayInto(t, s, b, recs[300:400])
	checkCounts(t, e, expected(tracks))
	replayInto(t, s, c, recs[400:500])
	replayInto(t, s, b, recs[300:400])
	checkCounts(t, e, expected(tracks))
	// A new lease replaying the shard from the start adds nothing either.
	if err := writeBatches(ctx, open(t, s, shard0), recs, 90); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, e, expected(tracks))
}

// parkedRange is the shape of the parking scenarios: the first counted
// records are counted live; then park parks a range (or fails to note
// it) and returns its letter and records; a new writer counts the
// records from resume on live; the letter is re-driven; and the counts
// must be exact.
func parkedRange(t *testing.T, newEnv func(*testing.T) env, seed uint64, counted, resume int,
	park func(ctx context.Context, e env, s *Sink, recs []processor.Record) (processor.LetterID, []processor.Record)) {
	ctx := context.Background()
	e := newEnv(t)
	evs, tracks := corpusEvents(t, 2000, seed)
	recs := toRecords(evs)
	s := newSink(t, e.api, e.table, 0)
	if err := writeBatches(ctx, open(t, s, shard0), recs[:counted], 50); err != nil {
		t.Fatal(err)
	}
	id, parked := park(ctx, e, s, recs)
	if err := writeBatches(ctx, open(t, s, shard0), recs[resume:], 70); err != nil {
		t.Fatal(err)
	}
	replayInto(t, s, id, parked)
	checkCounts(t, e, expected(tracks))
}

// testCrashBeforeNote: a range is parked, and the worker dies before the
// sink learned of it (its note unrecorded, its watermark in the lease row
// below the range). The next lease delivers the range live; the letter's
// replay must then add nothing.
func testCrashBeforeNote(t *testing.T, newEnv func(*testing.T) env) {
	parkedRange(t, newEnv, 9, 200, 150, func(_ context.Context, _ env, s *Sink, recs []processor.Record) (processor.LetterID, []processor.Record) {
		id := processor.LetterID{Shard: shard0, Reason: processor.ReasonBreakerOpen, FirstSeq: recs[200].SequenceNumber, LastSeq: recs[299].SequenceNumber}
		_ = s.ParkNote(shard0, id, recs[200:300]) // never recorded: the crash
		return id, recs[200:300]
	})
}

// testPartialThenParked: a window fails after some of its items were
// updated, and is parked whole; the note and the letter's replay count
// in each item only what it had not counted. (A replay of its own once
// counted the updated items' share twice.)
func testPartialThenParked(t *testing.T, newEnv func(*testing.T) env) {
	parkedRange(t, newEnv, 10, 200, 350, func(ctx context.Context, e env, s *Sink, recs []processor.Record) (processor.LetterID, []processor.Record) {
		// The window of records 200..349 gets 5 item updates through,
		// then DynamoDB fails (one response lost after it applied).
		flaky := newSink(t, newFlaky(e.api, 5, true), e.table, 1)
		if err := open(t, flaky, shard0).Write(ctx, recs[200:350]); !errors.Is(err, errInjected) {
			t.Fatalf("got %v, want the injected failure", err)
		}
		return park(t, s, processor.ReasonRetriesExhausted, recs[200:350]), recs[200:350]
	})
}

// testOverlappingLetter: a zombie (the previous lease holder) parks a
// range whose first part the new holder has counted already: the hole
// starts at the item's watermark, and the replay counts only the rest.
func testOverlappingLetter(t *testing.T, newEnv func(*testing.T) env) {
	parkedRange(t, newEnv, 12, 260, 350, func(_ context.Context, _ env, s *Sink, recs []processor.Record) (processor.LetterID, []processor.Record) {
		return park(t, s, processor.ReasonBreakerOpen, recs[200:350]), recs[200:350]
	})
}

// testWindows: with the default window, Writes hold their records (Durable
// stays put) until the window holds FlushEvents events or is
// FlushInterval old, or a Flush; what Close drops is not counted.
func testWindows(t *testing.T, newEnv func(*testing.T) env) {
	ctx := context.Background()
	e := newEnv(t)
	evs, tracks := corpusEvents(t, 1000, 11)
	recs := recordsOf(evs, 10) // 100 records
	s, err := New(e.api, Config{Table: e.table, FlushEvents: 300, FlushInterval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := open(t, s, shard0)
	if err := w.Write(ctx, recs[:20]); err != nil || w.Durable() != "" || s.Stats().Updates != 0 {
		t.Fatalf("200 events: err %v, durable %q, stats %+v; want them held", err, w.Durable(), s.Stats())
	}
	if err := w.Write(ctx, recs[20:30]); err != nil || w.Durable() != recs[29].SequenceNumber {
		t.Fatalf("300 events: err %v, durable %q; want the window counted", err, w.Durable())
	}
	if err := w.Write(ctx, recs[30:50]); err != nil || w.Durable() != recs[29].SequenceNumber {
		t.Fatalf("err %v, durable %q; want 30..49 held", err, w.Durable())
	}
	w.Close() // the lease is lost: 30..49 dropped, the next lease replays them
	s2, err := New(e.api, Config{Table: e.table, FlushEvents: 1 << 20, FlushInterval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w = open(t, s2, shard0)
	if err := w.Write(ctx, recs[30:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := w.Write(ctx, nil); err != nil || w.Durable() != recs[99].SequenceNumber {
		t.Fatalf("tick after the interval: err %v, durable %q; want the window counted", err, w.Durable())
	}
	checkCounts(t, e, expected(tracks))
}
