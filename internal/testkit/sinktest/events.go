package sinktest

import (
	"strconv"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/processor"
)

// Stored returns a client's single track call as the gateway stores it:
// normalised, from source netlify-build, received at receivedAt.
func Stored(t testing.TB, body []byte, receivedAt time.Time) []byte {
	t.Helper()
	req, err := event.DecodeRequest(body, event.Single, event.Track, 0)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := (&event.Normalizer{}).Normalize(req, event.Meta{Source: "netlify-build", ReceivedAt: receivedAt})
	if err != nil {
		t.Fatal(err)
	}
	return evs[0].AppendJSON(nil)
}

// NetlifyEvents returns n Netlify Build events of the corpus (always the
// same ones) as the gateway stores them.
func NetlifyEvents(t testing.TB, n int, receivedAt time.Time) [][]byte {
	t.Helper()
	g := corpus.NewNetlify(42)
	out := make([][]byte, n)
	for i := range out {
		out[i] = Stored(t, g.NextJSON(), receivedAt)
	}
	return out
}

// Pack packs stored events into records of per events each, with
// sequence numbers counting from first, as the processor hands them to a
// sink.
func Pack(t testing.TB, raws [][]byte, per, first int) []processor.Record {
	t.Helper()
	var out []processor.Record
	for i := 0; i < len(raws); i += per {
		r := processor.Record{SequenceNumber: strconv.Itoa(first + len(out))}
		for _, raw := range raws[i:min(i+per, len(raws))] {
			e, err := event.Parse(raw)
			if err != nil {
				t.Fatalf("parse %s: %v", raw, err)
			}
			r.Events = append(r.Events, e)
			r.Raw = append(r.Raw, raw)
		}
		out = append(out, r)
	}
	return out
}
