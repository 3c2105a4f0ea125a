package segment

import (
	"testing"

	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// The Segment sink keeps the Writer contract against the in-test server
// that enforces the Tracking API's limits; an event without a user or
// anonymous ID is the one it refuses.
func TestWriterContract(t *testing.T) {
	var srv *server
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) processor.Sink {
			srv = newServer(t)
			return newSink(t, srv, Config{})
		},
		Delivered: func(t *testing.T) int {
			n := 0
			for _, c := range srv.received() {
				n += c
			}
			return n
		},
		Poison: sinktest.NoIdentity,
	})
}
