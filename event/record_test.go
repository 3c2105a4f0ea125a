package event

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/corpus"
)

func codecs(t testing.TB) (*RecordEncoder, *RecordDecoder) {
	t.Helper()
	enc, err := NewRecordEncoder()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewRecordDecoder()
	if err != nil {
		t.Fatal(err)
	}
	return enc, dec
}

func TestRecordRoundTrip(t *testing.T) {
	enc, dec := codecs(t)
	g := corpus.NewNetlify(1)
	for _, n := range []int{1, 2, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			events := make([][]byte, n)
			for i := range events {
				events[i] = g.NextJSON()
			}
			rec := enc.Encode(nil, events)
			if !IsRecord(rec) {
				t.Fatal("encoded record lacks the magic")
			}
			got, err := dec.Decode(rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("got %d events, want %d", len(got), n)
			}
			for i := range got {
				if !bytes.Equal(got[i], events[i]) {
					t.Fatalf("event %d: got %s, want %s", i, got[i], events[i])
				}
			}
		})
	}
}

func TestRecordDecodePlainJSON(t *testing.T) {
	_, dec := codecs(t)
	got, err := dec.Decode([]byte(` {"a":1} `))
	if err != nil || len(got) != 1 || string(got[0]) != `{"a":1}` {
		t.Fatalf("object: got %q, %v", got, err)
	}
	got, err = dec.Decode([]byte(`[{"a":1},{"b":2}]`))
	if err != nil || len(got) != 2 || string(got[1]) != `{"b":2}` {
		t.Fatalf("array: got %q, %v", got, err)
	}
}

func TestRecordDecodeRejects(t *testing.T) {
	enc, dec := codecs(t)
	good := enc.Encode(nil, [][]byte{[]byte(`{"a":1}`)})
	flipped := bytes.Clone(good)
	flipped[len(flipped)-6] ^= 0xff
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrUnknownFormat},
		{"binary", []byte{0x01, 0x02}, ErrUnknownFormat},
		{"kpl magic, too short", []byte{0xF3, 0x89, 0x9A, 0xC2, 0x00}, ErrBadAggregate},
		{"bad json", []byte(`{"a":`), ErrUnknownFormat},
		{"array of scalars", []byte(`[1]`), ErrUnknownFormat},
		{"short header", good[:4], ErrCorruptRecord},
		{"future version", append([]byte{0xB7, 'B', 'T', 9, 0}, 0), ErrUnknownFormat},
		{"unknown codec", append([]byte{0xB7, 'B', 'T', 1, 7}, 0), ErrUnknownFormat},
		{"truncated", good[:len(good)-3], ErrCorruptRecord},
		{"bit flip", flipped, ErrCorruptRecord},
		{"bad count", []byte{0xB7, 'B', 'T', 1, codecNone, 0xff}, ErrCorruptRecord},
		{"length past end", []byte{0xB7, 'B', 'T', 1, codecNone, 1, 50, '{'}, ErrCorruptRecord},
		{"trailing bytes", []byte{0xB7, 'B', 'T', 1, codecNone, 1, 2, '{', '}', 'x'}, ErrCorruptRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dec.Decode(tc.data)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// The dictionary pays off most on small records, which low traffic makes:
// even one event a record compresses to well under half its size, and
// records of more events compress better still.
func TestRecordCompression(t *testing.T) {
	enc, _ := codecs(t)
	g := corpus.NewNetlify(2)
	prev := 1.0
	for _, tc := range []struct {
		n        int
		maxRatio float64 // record bytes over raw bytes
	}{{1, 0.45}, {10, 0.30}, {500, 0.25}} {
		raw, size := 0, 0
		for i := 0; i < 2000/tc.n; i++ {
			events := make([][]byte, tc.n)
			for j := range events {
				events[j] = g.NextJSON()
				raw += len(events[j])
			}
			size += len(enc.Encode(nil, events))
		}
		ratio := float64(size) / float64(raw)
		t.Logf("%4d events/record: %.0f raw bytes/event -> %.0f bytes/event", tc.n, float64(raw)/2000, float64(size)/2000)
		if ratio > tc.maxRatio || ratio > prev {
			t.Errorf("%d events/record compress to %.2f of their size; want at most %.2f and no more than with fewer events (%.2f)", tc.n, ratio, tc.maxRatio, prev)
		}
		prev = ratio
	}
}

func BenchmarkRecordEncode(b *testing.B) {
	enc, _ := codecs(b)
	g := corpus.NewNetlify(3)
	events := make([][]byte, 500)
	raw := 0
	for i := range events {
		events[i] = g.NextJSON()
		raw += len(events[i])
	}
	b.SetBytes(int64(raw))
	var buf []byte
	for b.Loop() {
		buf = enc.Encode(buf[:0], events)
	}
	b.ReportMetric(float64(len(buf))/float64(len(events)), "bytes/event")
}

func BenchmarkRecordDecode(b *testing.B) {
	enc, dec := codecs(b)
	g := corpus.NewNetlify(4)
	events := make([][]byte, 500)
	for i := range events {
		events[i] = g.NextJSON()
	}
	rec := enc.Encode(nil, events)
	for b.Loop() {
		if _, err := dec.Decode(rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}
