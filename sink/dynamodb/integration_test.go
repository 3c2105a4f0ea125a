//go:build integration

package dynamodb

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/processor"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// dynaliteEnv gives each test a fresh table name on the shared stack; the
// sink creates the table on its first Open.
func dynaliteEnv(t *testing.T) env {
	s := devstack.ForTest(t)
	return env{api: s.DynamoDB(), query: s.DynamoDB(), table: devstack.UniqueName(t, "counts")}
}

func TestExact(t *testing.T)             { testExact(t, dynaliteEnv) }
func TestPartialReplay(t *testing.T)     { testPartialReplay(t, dynaliteEnv) }
func TestHandover(t *testing.T)          { testHandover(t, dynaliteEnv) }
func TestTwoShards(t *testing.T)         { testTwoShards(t, dynaliteEnv) }
func TestConcurrentWriters(t *testing.T) { testConcurrentWriters(t, dynaliteEnv) }
func TestReplayOrder(t *testing.T)       { testReplayOrder(t, dynaliteEnv) }
func TestCrashBeforeNote(t *testing.T)   { testCrashBeforeNote(t, dynaliteEnv) }
func TestPartialThenParked(t *testing.T) { testPartialThenParked(t, dynaliteEnv) }
func TestOverlappingLetter(t *testing.T) { testOverlappingLetter(t, dynaliteEnv) }
func TestWindows(t *testing.T)           { testWindows(t, dynaliteEnv) }

// TestWriteUnitsPer1000: the write units dynalite reports (by item size,
// as DynamoDB bills) stay at most 10 per 1,000 corpus events from 8
// shards, here with windows of 2,500 events (half the default, so the
// default costs less still: make bench measures it), and a window costs
// the same however many shards there are.
func TestWriteUnitsPer1000(t *testing.T) {
	writes, units := cost(t, dynaliteEnv(t), 8, 2500, 2500)
	t.Logf("8 shards: %.1f writes and %.1f write units per 1,000 events", writes, units)
	if units == 0 || units > 10 {
		t.Errorf("got %.1f write units per 1,000 events, want (0, 10]", units)
	}
	_, u4 := cost(t, dynaliteEnv(t), 4, 500, 500)
	_, u16 := cost(t, dynaliteEnv(t), 16, 500, 500)
	t.Logf("windows of 500 events: %.2f write units per 1,000 events from 4 shards, %.2f from 16", u4, u16)
	if u16 > u4*1.1 {
		t.Errorf("16 shards cost %.2f units per 1,000 events against %.2f for 4: it grows with the shards", u16, u4)
	}
}

func TestEnsureTableConcurrently(t *testing.T) {
	e := dynaliteEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		s := newSink(t, e.api, e.table, 0)
		wg.Go(func() { errs[i] = s.EnsureTable(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	out, err := e.api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(e.table)})
	if err != nil {
		t.Fatal(err)
	}
	ks := out.Table.KeySchema
	if len(ks) != 2 || aws.ToString(ks[0].AttributeName) != attrPK || aws.ToString(ks[1].AttributeName) != attrSK || out.Table.TableStatus != types.TableStatusActive {
		t.Errorf("table %s: keys %+v, status %s; want pk and sk, ACTIVE", e.table, ks, out.Table.TableStatus)
	}
}

// TestValueAttributeNames: values with characters that mean something in
// expressions or paths are plain attribute names to DynamoDB.
func TestValueAttributeNames(t *testing.T) {
	ctx := context.Background()
	e := dynaliteEnv(t)
	s := newSink(t, e.api, e.table, 0)
	w := open(t, s, shard0)
	props := `{"buildVersion":"a.b[0] #x :y","plugins":[{"name":"@scope/p","version":"1.0.0-rc.1+build"}]}`
	recs := []processor.Record{{SequenceNumber: "7", Events: []*event.Event{build(t, "a", "2026-11-27T10:00:00.000Z", props)}}}
	if err := w.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for dim, v := range map[string]string{"buildVersion": "a.b[0] #x :y", "plugin": "@scope/p@1.0.0-rc.1+build"} {
		dcs, err := ReadCounts(ctx, e.query, e.table, dim, "2026-11-27", "2026-11-27")
		if err != nil {
			t.Fatal(err)
		}
		if len(dcs) != 1 || dcs[0].Values[v] != 1 || dcs[0].Events != 1 {
			t.Errorf("%s: got %+v, want %q counted once", dim, dcs, v)
		}
	}
}

// BenchmarkDynamoDBSink counts corpus events through one writer in
// batches of 500 events (50 records of 10) against dynalite.
func BenchmarkDynamoDBSink(b *testing.B) {
	s := devstack.ForTest(b)
	table := devstack.UniqueName(b, "bench")
	evs, _ := corpusEvents(b, 10000, 8)
	recs := recordsOf(evs, 10)
	sink := newSink(b, s.DynamoDB(), table, 0)
	w := open(b, sink, shard0)
	ctx := context.Background()
	seq := 0
	b.ResetTimer()
	for b.Loop() {
		batch := make([]processor.Record, 50)
		for i := range batch {
			seq++
			r := recs[seq%len(recs)]
			r.SequenceNumber = seqNum(seq)
			batch[i] = r
		}
		if err := w.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	st := sink.Stats()
	b.ReportMetric(float64(st.Events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(st.Updates)*1000/float64(st.Events), "writes/1000events")
}
