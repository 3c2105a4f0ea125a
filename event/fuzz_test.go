package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func clientSeeds(f *testing.F) [][]byte {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "clients", "*.json"))
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzDecodeRequest feeds the gateway's request decoding: whatever the
// body, it must not panic, and an accepted event must be valid JSON that
// parses back with its messageId.
func FuzzDecodeRequest(f *testing.F) {
	for _, b := range clientSeeds(f) {
		for shape := range 3 {
			f.Add(b, uint8(shape))
		}
	}
	f.Add([]byte(`{"batch":[{"type":"track","event":"e","userId":1,"timestamp":"2024-01-01"}],"sentAt":1718000000000}`), uint8(Batch))
	f.Add([]byte(`{"userId":"u","event":"e","timestamp":"1718000000000","sentAt":"bad"}`), uint8(Single))
	n := &Normalizer{}
	f.Fuzz(func(t *testing.T, body []byte, shape uint8) {
		r, err := DecodeRequest(body, Shape(shape%3), Track, 0)
		if err != nil {
			return
		}
		evs, err := n.Normalize(r, Meta{Source: "fuzz", ReceivedAt: time.Unix(1800000000, 0)})
		if err != nil {
			return
		}
		for _, e := range evs {
			out := e.AppendJSON(nil)
			if !json.Valid(out) {
				t.Fatalf("normalised event is not valid JSON: %s", out)
			}
			back, err := Parse(out)
			if err != nil || back.MessageID != e.MessageID {
				t.Fatalf("normalised event does not parse back: %v: %s", err, out)
			}
			trusted, err := ParseTrusted(out)
			if err != nil || trusted.MessageID != e.MessageID {
				t.Fatalf("ParseTrusted disagrees: %v: %s", err, out)
			}
		}
	})
}

// FuzzRecordDecode feeds the worker's record decoding: no panic, no
// unbounded allocation, and what encodes decodes to the same events.
func FuzzRecordDecode(f *testing.F) {
	enc, err := NewRecordEncoder()
	if err != nil {
		f.Fatal(err)
	}
	dec, err := NewRecordDecoder()
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range clientSeeds(f) {
		f.Add(b)
		f.Add(enc.Encode(nil, [][]byte{bytes.TrimSpace(b)}))
	}
	f.Add([]byte{0xB7, 'B', 'T', 1, 0, 1, 2, '{', '}'})
	f.Add([]byte{0xF3, 0x89, 0x9A, 0xC2, 0, 1})
	// KPL aggregates, bare and as the worker's client hides them from the
	// library: the decoder must never panic on what GetRecords returns.
	agg := EncodeKPL([]string{"k1", "k2"}, [][]byte{[]byte(`{"messageId":"a","type":"track","event":"e","userId":"u"}`), enc.Encode(nil, [][]byte{[]byte(`{"messageId":"b","type":"track"}`)})})
	f.Add(agg)
	f.Add(WrapKPL(agg))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := dec.Decode(data)
		if err != nil {
			return
		}
		again, err := dec.Decode(enc.Encode(nil, evs))
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		for i := range evs {
			if !bytes.Equal(again[i], evs[i]) {
				t.Fatalf("event %d changed through encode/decode", i)
			}
		}
	})
}
