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

// NetlifyEvents returns n Netlify Build events of the corpus (the same
// ones for the same seed) as the gateway stores them.
func NetlifyEvents(t testing.TB, seed uint64, n int, receivedAt time.Time) [][]byte {
	t.Helper()
	g := corpus.NewNetlify(seed)
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
		out = append(out, Record(t, strconv.Itoa(first+len(out)), time.Time{}, raws[i:min(i+per, len(raws))]...))
	}
	return out
}

// Record returns the record seq, arriving at at, of the stored events
// raws, parsed as the processor parses them.
func Record(t testing.TB, seq string, at time.Time, raws ...[]byte) processor.Record {
	t.Helper()
	r := processor.Record{SequenceNumber: seq, ArrivalTime: at}
	for _, raw := range raws {
		e, err := event.Parse(raw)
		if err != nil {
			t.Fatalf("parse %s: %v", raw, err)
		}
		r.Events = append(r.Events, e)
		r.Raw = append(r.Raw, raw)
	}
	return r
}
