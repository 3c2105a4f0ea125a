package event

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/corpus"
)

// ParseTrusted must agree with Parse on every valid event.
func TestParseTrustedMatchesParse(t *testing.T) {
	g := corpus.NewNetlify(11)
	norm := &Normalizer{}
	var inputs [][]byte
	for i := 0; i < 500; i++ {
		r, err := DecodeRequest(g.NextJSON(), Single, Track, 0)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := norm.Normalize(r, Meta{Source: "s", ReceivedAt: received})
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, evs[0].AppendJSON(nil))
	}
	inputs = append(inputs,
		[]byte(` { "messageId" : "a\"b" , "type":"track", "event":"e\\u00e9", "k\u00e9y":[1,{"x":"]}"}], "n": -1.5e3 , "t": true, "z": null } `),
		[]byte(`{"messageId":"m","type":"identify","traits":{},"empty":[],"s":""}`),
	)
	for _, in := range inputs {
		want, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%s): %v", in, err)
		}
		got, err := ParseTrusted(in)
		if err != nil {
			t.Fatalf("ParseTrusted(%s): %v", in, err)
		}
		// Field order follows the input in ParseTrusted and is sorted
		// in Parse; the fields themselves must be the same.
		slices.SortFunc(got.fields, func(a, b field) int { return strings.Compare(a.name, b.name) })
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseTrusted(%s)\n got %+v\nwant %+v", in, got, want)
		}
	}
}

func TestParseTrustedRejects(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1`, `{"a":"x}`, `{"a":{"b":1}`, `{"a":1,}`, `{"a":1} x`, `{a:1}`,
		`{"type":"track"}`, `{"messageId":"m","type":"nope"}`,
	} {
		if _, err := ParseTrusted([]byte(in)); err == nil {
			t.Errorf("ParseTrusted(%q) succeeded, want an error", in)
		}
	}
}

// TestLookupNested: Lookup walks nested objects without decoding them,
// with the last of repeated keys winning, escaped keys matched, and
// non-objects reporting false.
func TestLookupNested(t *testing.T) {
	e, err := ParseTrusted([]byte(`{"messageId":"m","type":"track","properties":{"a":{"b":"1"},"x":2,"x":3,"k\u00e9":"y","s":"{\"a\":1}"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string
		ok   bool
	}{
		{"properties.a.b", `"1"`, true},
		{"properties.x", `3`, true},
		{"properties.ké", `"y"`, true},
		{"properties.s.a", "", false},
		{"properties.missing", "", false},
		{"properties.a.b.c", "", false},
		{"type", `"track"`, true},
	} {
		got, ok := e.Lookup(tc.path)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("Lookup(%q) = %s, %v; want %s, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}
