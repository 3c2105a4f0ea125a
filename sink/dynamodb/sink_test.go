package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

func memEnv(t *testing.T) env {
	db := newMemDB()
	return env{api: db, query: db, table: "counts"}
}

func TestExactMem(t *testing.T)             { testExact(t, memEnv) }
func TestPartialReplayMem(t *testing.T)     { testPartialReplay(t, memEnv) }
func TestHandoverMem(t *testing.T)          { testHandover(t, memEnv) }
func TestTwoShardsMem(t *testing.T)         { testTwoShards(t, memEnv) }
func TestConcurrentWritersMem(t *testing.T) { testConcurrentWriters(t, memEnv) }
func TestReplayOrderMem(t *testing.T)       { testReplayOrder(t, memEnv) }
func TestCrashBeforeNoteMem(t *testing.T)   { testCrashBeforeNote(t, memEnv) }
func TestPartialThenParkedMem(t *testing.T) { testPartialThenParked(t, memEnv) }
func TestOverlappingLetterMem(t *testing.T) { testOverlappingLetter(t, memEnv) }
func TestWindowsMem(t *testing.T)           { testWindows(t, memEnv) }

func TestWritesPer1000Mem(t *testing.T) {
	got, _ := cost(t, memEnv(t), 8, 2500, 2500)
	t.Logf("%.1f DynamoDB writes per 1,000 events from 8 shards in windows of 2,500", got)
	if got > 10 {
		t.Errorf("got %.1f writes per 1,000 events, want at most 10", got)
	}
}

// fakeDB is a DynamoDB of function fields; an unset one panics.
type fakeDB struct {
	updateItem    func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	getItem       func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	describeTable func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	createTable   func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
}

func (f *fakeDB) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return f.updateItem(in)
}
func (f *fakeDB) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return f.getItem(in)
}
func (f *fakeDB) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return f.describeTable(in)
}
func (f *fakeDB) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return f.createTable(in)
}

func activeTable(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
	return &dynamodb.DescribeTableOutput{Table: &types.TableDescription{
		TableStatus: types.TableStatusActive,
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	}}, nil
}

// ev builds an event the way the worker reads one.
func ev(t testing.TB, json string) *event.Event {
	t.Helper()
	e, err := event.Parse([]byte(json))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func build(t testing.TB, id, ts, props string) *event.Event {
	return ev(t, fmt.Sprintf(`{"messageId":%q,"type":"track","event":"build:ci_build_process_completed","timestamp":%q,"receivedAt":"2026-11-27T12:00:00.000Z","properties":%s}`, id, ts, props))
}

func TestParseDimensions(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []Dimension
		wantErr string
	}{
		{in: "", want: nil},
		{in: "buildVersion=properties.buildVersion", want: []Dimension{{"buildVersion", "properties.buildVersion"}}},
		{in: " nodeVersion , plugin=properties.plugins,lib=context.library.version ", want: []Dimension{
			{"nodeVersion", "properties.nodeVersion"}, {"plugin", "properties.plugins"}, {"lib", "context.library.version"}}},
		{in: "a=x,a=y", wantErr: "used twice"},
		{in: "a#b=x", wantErr: "name may hold only"},
		{in: "a=", wantErr: "invalid path"},
		{in: "a=properties..x", wantErr: "invalid path"},
		{in: "=x", wantErr: "empty name"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDimensions(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	db := &fakeDB{}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no table", Config{}, "Table is required"},
		{"bad dimension", Config{FlushEvents: 1, Table: "t", Dimensions: []Dimension{{Name: "x y", Path: "p"}}}, "Dimensions"},
		{"negative parallelism", Config{FlushEvents: 1, Table: "t", Parallelism: -1}, "Parallelism"},
	} {
		if _, err := New(db, tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	s, err := New(db, Config{FlushEvents: 1, Table: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != DefaultName || len(s.Dimensions()) != 6 || s.par != DefaultParallelism {
		t.Errorf("defaults: name %q, %d dimensions, parallelism %d", s.Name(), len(s.Dimensions()), s.par)
	}
}

func TestValues(t *testing.T) {
	e := build(t, "m1", "2026-11-27T10:00:00.000Z", `{
		"buildVersion": "29.58.2", "nodeVersion": 18, "osPlatform": null, "framework": "",
		"status": {"x": 1}, "big": "`+strings.Repeat("é", 100)+`",
		"plugins": [
			{"name": "@netlify/plugin-nextjs", "version": "5.8.1"},
			{"name": "@netlify/plugin-nextjs", "version": "5.8.1"},
			{"name": "netlify-plugin-cache"},
			{"version": "1.0"},
			"legacy-plugin", 3, null, ["nested"]
		]}`)
	dims := []Dimension{
		{"buildVersion", "properties.buildVersion"},
		{"nodeVersion", "properties.nodeVersion"},
		{"osPlatform", "properties.osPlatform"},
		{"framework", "properties.framework"},
		{"status", "properties.status"},
		{"plugin", "properties.plugins"},
		{"missing", "properties.nothing"},
		{"deep", "properties.plugins.name"},
		{"type", "type"},
		{"big", "properties.big"},
	}
	x := newExtractor(dims)
	want := map[string][]string{
		"buildVersion": {"29.58.2"},
		"nodeVersion":  {"18"},
		"plugin":       {"@netlify/plugin-nextjs@5.8.1", "netlify-plugin-cache", "legacy-plugin", "3"},
		"type":         {"track"},
		"big":          {strings.Repeat("é", 64)},
	}
	x.reset()
	for i, d := range dims {
		got := x.values(nil, e, i)
		if !slices.Equal(got, want[d.Name]) {
			t.Errorf("%s: got %q, want %q", d.Name, got, want[d.Name])
		}
	}
}

func TestDayOf(t *testing.T) {
	arrival := time.Date(2026, 11, 28, 0, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, json, want string
	}{
		{"event time", `{"messageId":"m","type":"track","timestamp":"2026-11-26T23:59:59.000Z","receivedAt":"2026-11-27T00:00:01.000Z"}`, "2026-11-26"},
		{"future clock", `{"messageId":"m","type":"track","timestamp":"2026-11-28T01:00:00.000Z","receivedAt":"2026-11-27T23:00:00.000Z"}`, "2026-11-27"},
		{"clock far behind", `{"messageId":"m","type":"track","timestamp":"2025-01-01T00:00:00.000Z","receivedAt":"2026-11-27T23:00:00.000Z"}`, "2026-11-27"},
		{"no receivedAt", `{"messageId":"m","type":"track","timestamp":"2026-11-20T10:00:00.000Z"}`, "2026-11-20"},
		{"no times", `{"messageId":"m","type":"track"}`, "2026-11-28"},
		{"offset", `{"messageId":"m","type":"track","timestamp":"2026-11-27T01:00:00+02:00","receivedAt":"2026-11-27T00:00:00.000Z"}`, "2026-11-26"},
	} {
		if got := dayOf(ev(t, tc.json), arrival); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	s, err := New(&fakeDB{}, Config{FlushEvents: 1, Table: "t", Dimensions: []Dimension{{"buildVersion", "properties.buildVersion"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{s: s, shard: shard0}
	day1, day2 := "2026-11-26T23:00:00.000Z", "2026-11-27T10:00:00.000Z"
	other := ev(t, `{"messageId":"o","type":"track","event":"Signed Up","properties":{"buildVersion":"1"}}`)
	page := ev(t, `{"messageId":"p","type":"page","name":"build:ci_build_process_completed","properties":{"buildVersion":"1"}}`)
	recs := []processor.Record{
		{SequenceNumber: "10", Events: []*event.Event{build(t, "a", day1, `{"buildVersion":"1"}`), build(t, "b", day1, `{"buildVersion":"1"}`), other}},
		{SequenceNumber: "11", Events: []*event.Event{page}},
		{SequenceNumber: "12", Events: []*event.Event{build(t, "c", day2, `{"buildVersion":"2"}`), build(t, "d", day1, `{}`)}},
	}
	plans, events := w.plan(recs)
	if events != 4 {
		t.Errorf("got %d events counted, want 4", events)
	}
	var got []string
	for _, p := range plans {
		for _, rc := range p.recs {
			got = append(got, fmt.Sprintf("%s %s n=%d %v", p.item.day, strings.TrimLeft(rc.seq, "0"), rc.events, rc.values))
		}
	}
	want := []string{
		"2026-11-26 10 n=2 map[1:2]",
		"2026-11-26 12 n=1 map[]",
		"2026-11-27 12 n=1 map[2:1]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got plans\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestChunksAndCap(t *testing.T) {
	s, _ := New(&fakeDB{}, Config{FlushEvents: 1, Table: "t"}, nil)
	w := &writer{s: s}
	vals := func(prefix string, n int) map[string]int64 {
		m := map[string]int64{}
		for i := range n {
			m[fmt.Sprintf("%s%03d", prefix, i)] = int64(i + 1)
		}
		return m
	}
	p := &plan{recs: []recCount{
		{seq: "1", values: vals("a", 120)},
		{seq: "2", values: vals("a", 50)},               // no new value: same chunk
		{seq: "3", values: vals("b", 90)},               // 120+90 > 200: new chunk
		{seq: "4", values: vals("c", 250)},              // alone too many: capped, own chunk
		{seq: "5", values: map[string]int64{"c249": 1}}, // a kept value: fits
	}}
	chunks := w.chunks(p)
	var sizes []string
	for _, c := range chunks {
		var seqs []string
		for _, rc := range c {
			seqs = append(seqs, rc.seq)
		}
		sizes = append(sizes, strings.Join(seqs, ","))
	}
	if want := []string{"1,2", "3", "4,5"}; !slices.Equal(sizes, want) {
		t.Errorf("got chunks %v, want %v", sizes, want)
	}
	capped := chunks[2][0].values
	if len(capped) != MaxValuesPerUpdate {
		t.Errorf("capped to %d values, want %d", len(capped), MaxValuesPerUpdate)
	}
	var sum, want int64
	for _, n := range capped {
		sum += n
	}
	for i := range 250 {
		want += int64(i + 1)
	}
	// The 51 rarest (counts 1..51) go to OtherValue; c249 (250) is kept.
	if sum != want || capped[OtherValue] != 51*52/2 || capped["c249"] != 250 {
		t.Errorf("capped: sum %d (want %d), other %d, c249 %d", sum, want, capped[OtherValue], capped["c249"])
	}
}

// TestConditionFailedRecount: the optimistic update fails, the watermark
// is in the middle of the batch, and the retry adds only the records above
// it, on condition that the watermark is unchanged.
func TestConditionFailedRecount(t *testing.T) {
	var calls []*dynamodb.UpdateItemInput
	db := &fakeDB{
		describeTable: activeTable,
		updateItem: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			calls = append(calls, in)
			if len(calls) == 1 {
				return nil, &types.ConditionalCheckFailedException{Message: aws.String("no")}
			}
			return &dynamodb.UpdateItemOutput{}, nil
		},
		getItem: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			if !aws.ToBool(in.ConsistentRead) {
				t.Error("watermark read is not consistent")
			}
			return &dynamodb.GetItemOutput{Item: map[string]types.AttributeValue{
				"wm": &types.AttributeValueMemberS{Value: processor.PadSeq("11")},
			}}, nil
		},
	}
	s, _ := New(db, Config{FlushEvents: 1, Table: "t", Dimensions: []Dimension{{"v", "properties.v"}}}, nil)
	w := open(t, s, shard0)
	ts := "2026-11-27T10:00:00.000Z"
	recs := []processor.Record{
		{SequenceNumber: "10", Events: []*event.Event{build(t, "a", ts, `{"v":"x"}`)}},
		{SequenceNumber: "11", Events: []*event.Event{build(t, "b", ts, `{"v":"x"}`), build(t, "c", ts, `{"v":"y"}`)}},
		{SequenceNumber: "12", Events: []*event.Event{build(t, "d", ts, `{"v":"y"}`)}},
		{SequenceNumber: "13", Events: []*event.Event{build(t, "e", ts, `{"v":"x"}`)}},
	}
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 {
		t.Fatalf("got %d UpdateItem calls, want 2", len(calls))
	}
	describe := func(in *dynamodb.UpdateItemInput) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(in.ExpressionAttributeValues)) {
			switch v := in.ExpressionAttributeValues[k].(type) {
			case *types.AttributeValueMemberN:
				parts = append(parts, k+"="+v.Value)
			case *types.AttributeValueMemberS:
				parts = append(parts, k+"="+strings.TrimLeft(v.Value, "0"))
			}
		}
		return aws.ToString(in.ConditionExpression) + " | " + aws.ToString(in.UpdateExpression) + " | " + strings.Join(parts, " ")
	}
	want := []string{
		"attribute_not_exists(#wm) OR #wm < :first | SET #wm = :wm ADD #n :n, #v0 :v0, #v1 :v1 | :first=10 :n=5 :v0=3 :v1=2 :wm=13",
		"#wm = :seen | SET #wm = :wm ADD #n :n, #v0 :v0, #v1 :v1 | :n=2 :seen=11 :v0=1 :v1=1 :wm=13",
	}
	for i, in := range calls {
		if got := describe(in); got != want[i] {
			t.Errorf("call %d:\ngot  %s\nwant %s", i, got, want[i])
		}
	}
	if got := calls[1].ExpressionAttributeNames; got["#wm"] != "wm" || got["#v0"] != "v#x" || got["#v1"] != "v#y" || got["#n"] != "n" {
		t.Errorf("names %v", got)
	}
	if k := calls[0].Key; k["pk"].(*types.AttributeValueMemberS).Value != "v" || k["sk"].(*types.AttributeValueMemberS).Value != "day#2026-11-27#"+shard0 {
		t.Errorf("key %v", k)
	}
	if st := s.Stats(); st != (Stats{Events: 5, Updates: 2, ConditionFailures: 1, Reads: 1}) {
		t.Errorf("stats %+v", st)
	}
	if w.Durable() != "13" {
		t.Errorf("durable %q, want 13", w.Durable())
	}
}

// TestAlreadyApplied: the item's watermark is at or past the batch: no
// further write, and the batch is durable.
func TestAlreadyApplied(t *testing.T) {
	updates := 0
	db := &fakeDB{
		describeTable: activeTable,
		updateItem: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			updates++
			return nil, &types.ConditionalCheckFailedException{Message: aws.String("no")}
		},
		getItem: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			return &dynamodb.GetItemOutput{Item: map[string]types.AttributeValue{
				"wm": &types.AttributeValueMemberS{Value: processor.PadSeq("20")},
			}}, nil
		},
	}
	s, _ := New(db, Config{FlushEvents: 1, Table: "t", Dimensions: []Dimension{{"v", "properties.v"}}}, nil)
	w := open(t, s, shard0)
	recs := []processor.Record{{SequenceNumber: "20", Events: []*event.Event{build(t, "a", "2026-11-27T10:00:00.000Z", `{"v":"x"}`)}}}
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if updates != 1 || w.Durable() != "20" {
		t.Errorf("%d updates, durable %q; want 1 and 20", updates, w.Durable())
	}
}

func TestContention(t *testing.T) {
	n := 0
	db := &fakeDB{
		describeTable: activeTable,
		updateItem: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return nil, &types.ConditionalCheckFailedException{Message: aws.String("no")}
		},
		getItem: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			n++ // another writer keeps moving it, never past the batch
			return &dynamodb.GetItemOutput{Item: map[string]types.AttributeValue{
				"wm": &types.AttributeValueMemberS{Value: processor.PadSeq("1")},
			}}, nil
		},
	}
	s, _ := New(db, Config{FlushEvents: 1, Table: "t", Dimensions: []Dimension{{"v", "properties.v"}}}, nil)
	w := open(t, s, shard0)
	recs := []processor.Record{{SequenceNumber: "5", Events: []*event.Event{build(t, "a", "2026-11-27T10:00:00.000Z", `{"v":"x"}`)}}}
	err := w.Write(context.Background(), recs)
	if !errors.Is(err, ErrContention) || processor.IsPermanent(err) || w.Durable() != "" {
		t.Errorf("got %v (durable %q), want a transient ErrContention", err, w.Durable())
	}
	if n != maxAttempts-1 {
		t.Errorf("%d reads, want %d", n, maxAttempts-1)
	}
}

func TestErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"validation", &smithy.GenericAPIError{Code: "ValidationException", Message: "Item size has exceeded the maximum allowed size"}, true},
		{"throttled", &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}, false},
		{"network", errors.New("connection reset"), false},
	} {
		db := &fakeDB{
			describeTable: activeTable,
			updateItem:    func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, tc.err },
		}
		s, _ := New(db, Config{FlushEvents: 1, Table: "t"}, nil)
		w := open(t, s, shard0)
		err := w.Write(context.Background(), []processor.Record{{SequenceNumber: "1", Events: []*event.Event{build(t, "a", "2026-11-27T10:00:00.000Z", `{"buildVersion":"1"}`)}}})
		if err == nil || processor.IsPermanent(err) != tc.permanent || !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v (permanent %v), want permanent %v", tc.name, err, processor.IsPermanent(err), tc.permanent)
		}
		if !strings.Contains(err.Error(), "dynamodb: update counter buildVersion/2026-11-27 for "+shard0) {
			t.Errorf("%s: error %q does not name the counter", tc.name, err)
		}
	}
}

func TestEnsureTable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		createErr error
	}{
		{"created", nil},
		{"created by another worker", &types.ResourceInUseException{Message: aws.String("exists")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			describes := 0
			var created *dynamodb.CreateTableInput
			db := &fakeDB{
				describeTable: func(in *dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
					describes++
					switch describes {
					case 1, 2: // missing, then not yet visible after CreateTable
						return nil, &types.ResourceNotFoundException{Message: aws.String("no")}
					case 3:
						out, _ := activeTable(in)
						out.Table.TableStatus = types.TableStatusCreating
						return out, nil
					}
					return activeTable(in)
				},
				createTable: func(in *dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
					if created != nil {
						return nil, &types.ResourceInUseException{Message: aws.String("creating")}
					}
					created = in
					return &dynamodb.CreateTableOutput{}, tc.createErr
				},
			}
			s, _ := New(db, Config{FlushEvents: 1, Table: "t"}, nil)
			if err := s.EnsureTable(context.Background()); err != nil {
				t.Fatal(err)
			}
			if created == nil || created.BillingMode != types.BillingModePayPerRequest || len(created.KeySchema) != 2 {
				t.Errorf("CreateTable input %+v", created)
			}
			if describes != 4 {
				t.Errorf("%d DescribeTable calls, want 4", describes)
			}
		})
	}
	t.Run("wrong key schema", func(t *testing.T) {
		db := &fakeDB{describeTable: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
			return &dynamodb.DescribeTableOutput{Table: &types.TableDescription{
				TableStatus: types.TableStatusActive,
				KeySchema:   []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
			}}, nil
		}}
		s, _ := New(db, Config{FlushEvents: 1, Table: "t"}, nil)
		if err := s.EnsureTable(context.Background()); err == nil || !strings.Contains(err.Error(), "key schema") {
			t.Errorf("got %v, want a key schema error", err)
		}
		if _, err := s.Open(context.Background(), processor.Shard{ID: shard0}); err == nil {
			t.Error("Open succeeded on a table with the wrong key")
		}
	})
}

func TestClosedWriter(t *testing.T) {
	s, _ := New(&fakeDB{describeTable: activeTable}, Config{FlushEvents: 1, Table: "t"}, nil)
	w := open(t, s, shard0)
	w.Close()
	if err := w.Write(context.Background(), nil); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := w.Flush(context.Background()); err == nil {
		t.Error("Flush after Close succeeded")
	}
}
