package event

import (
	"reflect"
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
