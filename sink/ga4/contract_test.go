package ga4

import (
	"testing"

	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// The GA4 sink keeps the Writer contract against the in-test server that
// applies the Measurement Protocol's rules; an event with no identity to
// derive a client_id from is the one it refuses.
func TestWriterContract(t *testing.T) {
	var srv *server
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) processor.Sink {
			srv = newServer(t)
			return newSink(t, srv, Config{})
		},
		Delivered: func(t *testing.T) int {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			return len(srv.events)
		},
		Poison: sinktest.NoIdentity,
	})
}
