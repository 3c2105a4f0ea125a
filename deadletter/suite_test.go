package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// Sequence numbers shaped like Kinesis'.
const (
	seq1 = "49590338271490256608559692538361571095921575989136588898"
	seq2 = "49590338271490256608559692538361571095921575989136588899"
	seq3 = "49590338271490256608559692540780422735164733838749564930"
)

// ev returns a normalised event's JSON.
func ev(id string) []byte {
	return []byte(`{"event":"Build Completed","messageId":"` + id + `","properties":{"buildVersion":"29.1.0","note":"<a&b>"},"receivedAt":"2024-05-01T10:00:00.000Z","type":"track","userId":"netlify"}`)
}

// letter returns a letter of sink with one event per id, two ids per
// sequence number.
func letter(sink, reason, shard string, ids ...string) processor.Letter {
	l := processor.Letter{
		Sink: sink, Reason: reason, Error: "segment: 503 Service Unavailable",
		Stream: "builds", Shard: shard,
		ParkedAt: time.Date(2024, 5, 1, 10, 0, 1, 123456789, time.UTC),
	}
	seqs := []string{seq1, seq2, seq3}
	for i, id := range ids {
		l.Entries = append(l.Entries, processor.LetterEntry{SequenceNumber: seqs[i/2%len(seqs)], Event: ev(id)})
	}
	l.FirstSeq = l.Entries[0].SequenceNumber
	l.LastSeq = l.Entries[len(l.Entries)-1].SequenceNumber
	return l
}

// mustPark parks l and returns its key.
func mustPark(t *testing.T, s *Store, l processor.Letter) string {
	t.Helper()
	if err := s.Park(context.Background(), l); err != nil {
		t.Fatalf("Park: %v", err)
	}
	key, err := s.Key(l)
	if err != nil {
		t.Fatalf("Key: %v", err)
	}
	return key
}

func mustList(t *testing.T, s *Store, sink, reason string) []string {
	t.Helper()
	keys, err := s.List(context.Background(), sink, reason)
	if err != nil {
		t.Fatalf("List(%q, %q): %v", sink, reason, err)
	}
	return keys
}

func mustRead(t *testing.T, s *Store, key string) processor.Letter {
	t.Helper()
	l, err := s.Read(context.Background(), key)
	if err != nil {
		t.Fatalf("Read(%s): %v", key, err)
	}
	return l
}

// equalLetter fails the test unless got and want are the same letter.
func equalLetter(t *testing.T, got, want processor.Letter) {
	t.Helper()
	if !got.ParkedAt.Equal(want.ParkedAt) {
		t.Errorf("ParkedAt = %v, want %v", got.ParkedAt, want.ParkedAt)
	}
	got.ParkedAt, want.ParkedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("letter read back differs\n got: %s\nwant: %s", g, w)
	}
}

// testStore runs the store's behaviour tests against the stores newStore
// returns, each over an empty bucket: an in-memory fake in the unit tests,
// the S3 emulator in the integration tests.
func testStore(t *testing.T, newStore func(t *testing.T, cfg Config) *Store) {
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t, Config{})
		l := letter("segment", processor.ReasonBreakerOpen, "shardId-000000000001", "m1", "m2", "m3")
		l.Entries[2].Error = "segment: 400 event too large"
		// Bytes that a re-encoding would change: spacing, HTML characters,
		// escapes, key order.
		l.Entries[1].Event = []byte(`{"type":"track", "messageId":"m2","userId":"\u00e9<>&","event":"x"}`)
		decode := processor.Letter{
			Sink: processor.DecodeSink, Reason: processor.ReasonDecode, Error: "decode record: bad magic",
			Stream: "builds", Shard: "shardId-000000000001", FirstSeq: seq1, LastSeq: seq3,
			ParkedAt: l.ParkedAt,
			Entries: []processor.LetterEntry{
				{SequenceNumber: seq1, Data: []byte{0xff, 0x00, '\n', 'x', 0x80}},
				{SequenceNumber: seq3, Data: []byte("{not json"), Error: "unexpected EOF"},
			},
		}
		key := mustPark(t, s, l)
		dkey := mustPark(t, s, decode)

		for _, c := range []struct {
			sink, reason string
			want         []string
		}{
			{"segment", "", []string{key}},
			{"segment", processor.ReasonBreakerOpen, []string{key}},
			{"segment", processor.ReasonPermanent, nil},
			{"segmen", "", nil},
			{processor.DecodeSink, "", []string{dkey}},
		} {
			if got := mustList(t, s, c.sink, c.reason); !slices.Equal(got, c.want) {
				t.Errorf("List(%q, %q) = %q, want %q", c.sink, c.reason, got, c.want)
			}
		}
		equalLetter(t, mustRead(t, s, key), l)
		equalLetter(t, mustRead(t, s, dkey), decode)

		if _, err := s.Read(ctx, strings.Replace(key, processor.PadSeq(seq1), processor.PadSeq(seq2), 1)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Read(missing key) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("ParkTwiceOverwrites", func(t *testing.T) {
		s := newStore(t, Config{})
		l := letter("ga4", processor.ReasonRetriesExhausted, "shardId-000000000002", "a", "b")
		first := mustPark(t, s, l)
		// The next attempt: later, with another error.
		l.ParkedAt = l.ParkedAt.Add(time.Hour)
		l.Error = "ga4: timeout"
		second := mustPark(t, s, l)
		if first != second {
			t.Fatalf("keys differ between attempts: %s and %s", first, second)
		}
		if got := mustList(t, s, "ga4", ""); !slices.Equal(got, []string{first}) {
			t.Fatalf("List = %q, want one object %q", got, first)
		}
		equalLetter(t, mustRead(t, s, first), l)
	})

	t.Run("ListPages", func(t *testing.T) {
		s := newStore(t, Config{ListPageSize: 2})
		var want []string
		for i := range 5 {
			want = append(want, mustPark(t, s, letter("s3", processor.ReasonPermanent, fmt.Sprintf("shardId-%012d", i), "x")))
		}
		if got := mustList(t, s, "s3", ""); !slices.Equal(got, want) {
			t.Errorf("List = %q, want %q", got, want)
		}
	})

	t.Run("ReplayDelivers", func(t *testing.T) {
		s := newStore(t, Config{})
		a := letter("test", processor.ReasonBreakerOpen, "shardId-000000000000", "a1", "a2", "a3")
		b := letter("test", processor.ReasonPermanent, "shardId-000000000001", "b1")
		c := letter("test", processor.ReasonBreakerOpen, "shardId-000000000002", "c1", "c2")
		other := letter("other", processor.ReasonBreakerOpen, "shardId-000000000000", "o1")
		for _, l := range []processor.Letter{a, b, c, other} {
			mustPark(t, s, l)
		}
		sink := &testSink{name: "test"}

		// One reason first: the permanent letter stays.
		stats, err := Replay(ctx, s, sink, ReplayOptions{Reason: processor.ReasonBreakerOpen})
		if err != nil {
			t.Fatalf("Replay(breaker-open): %v", err)
		}
		if want := (ReplayStats{Letters: 2, Events: 5}); stats != want {
			t.Errorf("Replay(breaker-open) stats = %+v, want %+v", stats, want)
		}
		if got := mustList(t, s, "test", ""); len(got) != 1 || !strings.Contains(got[0], "/permanent/") {
			t.Errorf("after replaying breaker-open, List = %q, want the permanent letter only", got)
		}

		var results []LetterResult
		stats, err = Replay(ctx, s, sink, ReplayOptions{OnLetter: func(r LetterResult) { results = append(results, r) }})
		if err != nil {
			t.Fatalf("Replay(all): %v", err)
		}
		if want := (ReplayStats{Letters: 1, Events: 1}); stats != want {
			t.Errorf("Replay(all) stats = %+v, want %+v", stats, want)
		}
		if len(results) != 1 || !results[0].Deleted || results[0].Events != 1 {
			t.Errorf("OnLetter results = %+v, want one deleted letter with 1 event", results)
		}

		var want []string
		for _, l := range []processor.Letter{a, c, b} {
			for _, e := range l.Entries {
				want = append(want, string(e.Event))
			}
		}
		if got := sink.raws(); !slices.Equal(got, want) {
			t.Errorf("delivered events:\n got %q\nwant %q", got, want)
		}
		for _, sh := range sink.shards {
			if sh.Stream != "builds" || !strings.HasPrefix(sh.ID, "replay-shardId-") || sh.Worker != "replay" || sh.Saver == nil {
				t.Errorf("opened shard %+v, want stream builds, ID replay-shardId-..., worker replay, a saver", sh)
			}
		}
		if got := mustList(t, s, "test", ""); len(got) != 0 {
			t.Errorf("after replay, List(test) = %q, want none", got)
		}
		if got := mustList(t, s, "other", ""); len(got) != 1 {
			t.Errorf("after replay, List(other) = %q, want the other sink's letter", got)
		}
	})

	t.Run("ReplaySkipsCorruptObjects", func(t *testing.T) {
		s := newStore(t, Config{})
		key := mustPark(t, s, letter("test", processor.ReasonBreakerOpen, "shardId-000000000000", "a1"))
		good := mustPark(t, s, letter("test", processor.ReasonBreakerOpen, "shardId-000000000001", "b1"))
		// What a worker killed mid-upload leaves on an S3 that keeps
		// partial bodies: an empty object under a valid key.
		if _, err := s.api.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(nil)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(ctx, key); !errors.Is(err, ErrCorruptLetter) {
			t.Fatalf("Read(empty object) = %v, want ErrCorruptLetter", err)
		}
		sink := &testSink{name: "test"}
		stats, err := Replay(ctx, s, sink, ReplayOptions{StopOnError: true})
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if want := (ReplayStats{Letters: 1, Events: 1, Corrupt: 1}); stats != want {
			t.Errorf("stats = %+v, want %+v", stats, want)
		}
		if got := mustList(t, s, "test", ""); !slices.Equal(got, []string{key}) {
			t.Errorf("after replay, List = %q, want only the corrupt object %q (%q was replayed)", got, key, good)
		}
	})

	t.Run("ReplayFailureKeepsLetters", func(t *testing.T) {
		boom := errors.New("segment: 503")
		for _, c := range []struct {
			name string
			sink *testSink
		}{
			{"Open", &testSink{failOpen: boom}},
			{"Write", &testSink{failWrite: boom}},
			{"Flush", &testSink{failFlush: boom}},
			{"Close", &testSink{failClose: boom}},
			{"NotDurable", &testSink{stuck: true}},
		} {
			t.Run(c.name, func(t *testing.T) {
				s := newStore(t, Config{})
				c.sink.name = "test"
				l1 := letter("test", processor.ReasonBreakerOpen, "shardId-000000000000", "a1", "a2")
				l2 := letter("test", processor.ReasonBreakerOpen, "shardId-000000000001", "b1")
				k1, k2 := mustPark(t, s, l1), mustPark(t, s, l2)

				stats, err := Replay(ctx, s, c.sink, ReplayOptions{})
				if err == nil {
					t.Fatal("Replay succeeded, want an error")
				}
				if c.name != "NotDurable" && !errors.Is(err, boom) {
					t.Errorf("Replay error = %v, want it to wrap %v", err, boom)
				}
				if stats.Failed != 2 || stats.Letters != 0 {
					t.Errorf("stats = %+v, want 2 failed, 0 replayed", stats)
				}
				if got := mustList(t, s, "test", ""); !slices.Equal(got, []string{k1, k2}) {
					t.Errorf("after a failed replay, List = %q, want both letters %q", got, []string{k1, k2})
				}
				equalLetter(t, mustRead(t, s, k1), l1)

				// StopOnError stops at the first letter.
				stats, err = Replay(ctx, s, c.sink, ReplayOptions{StopOnError: true})
				if err == nil || stats.Failed != 1 {
					t.Errorf("Replay(StopOnError) = %+v, %v; want 1 failed and an error", stats, err)
				}
			})
		}
	})

	t.Run("ReplayPartial", func(t *testing.T) {
		s := newStore(t, Config{})
		l := letter("test", processor.ReasonBreakerOpen, "shardId-000000000000", "a1", "bad", "a3")
		key := mustPark(t, s, l)
		rejected := errors.New("segment: 400 invalid event")
		sink := &testSink{name: "test", reject: func(e *event.Event) error {
			if e.MessageID == "bad" {
				return rejected
			}
			return nil
		}}
		stats, err := Replay(ctx, s, sink, ReplayOptions{})
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if want := (ReplayStats{Letters: 1, Events: 2, Rejected: 1}); stats != want {
			t.Errorf("stats = %+v, want %+v", stats, want)
		}
		if got, want := sink.raws(), []string{string(ev("a1")), string(ev("a3"))}; !slices.Equal(got, want) {
			t.Errorf("delivered %q, want %q", got, want)
		}
		// The rejected event is kept, under the same key, and only it.
		if got := mustList(t, s, "test", ""); !slices.Equal(got, []string{key}) {
			t.Fatalf("List = %q, want the letter kept as %s", got, key)
		}
		got := mustRead(t, s, key)
		want := l
		want.Entries = []processor.LetterEntry{{SequenceNumber: seq1, Event: ev("bad"), Error: rejected.Error()}}
		want.Error = got.Error
		if !strings.Contains(got.Error, rejected.Error()) {
			t.Errorf("letter error = %q, want it to name the rejection", got.Error)
		}
		equalLetter(t, got, want)

		// Once the sink takes it, the letter goes.
		sink.reject = nil
		stats, err = Replay(ctx, s, sink, ReplayOptions{})
		if err != nil || stats != (ReplayStats{Letters: 1, Events: 1}) {
			t.Errorf("second Replay = %+v, %v; want 1 letter, 1 event", stats, err)
		}
		if got := mustList(t, s, "test", ""); len(got) != 0 {
			t.Errorf("List = %q, want none", got)
		}
	})

	t.Run("ReplayKeepsRawData", func(t *testing.T) {
		s := newStore(t, Config{})
		l := letter("test", processor.ReasonPermanent, "shardId-000000000000", "a1", "a2", "a3")
		raw := processor.LetterEntry{SequenceNumber: seq2, Data: []byte{0x1f, 0x8b, 0x00}}
		l.Entries = append(l.Entries, raw)
		notEvent := processor.LetterEntry{SequenceNumber: seq3, Event: []byte(`{"no":"messageId"}`)}
		l.Entries = append(l.Entries, notEvent)
		l.LastSeq = seq3
		key := mustPark(t, s, l)
		onlyRaw := processor.Letter{
			Sink: "test", Reason: processor.ReasonPermanent, Stream: "builds", Shard: "shardId-000000000001",
			FirstSeq: seq1, LastSeq: seq1, ParkedAt: l.ParkedAt,
			Entries: []processor.LetterEntry{{SequenceNumber: seq1, Data: []byte("raw")}},
		}
		rawKey := mustPark(t, s, onlyRaw)

		sink := &testSink{name: "test"}
		stats, err := Replay(ctx, s, sink, ReplayOptions{})
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if want := (ReplayStats{Letters: 1, Events: 3, Skipped: 3}); stats != want {
			t.Errorf("stats = %+v, want %+v", stats, want)
		}
		want := l
		want.Entries = []processor.LetterEntry{raw, notEvent}
		equalLetter(t, mustRead(t, s, key), want)
		equalLetter(t, mustRead(t, s, rawKey), onlyRaw)
		if len(sink.shards) != 1 {
			t.Errorf("opened %d writers, want 1 (none for a letter with nothing to replay)", len(sink.shards))
		}
	})
}
