package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/corpus"
)

// fakeWriterNop accepts and forgets.
type fakeWriterNop struct{}

func (fakeWriterNop) Write(context.Context, []Message) error { return nil }

// BenchmarkHandlerSingle measures the handler's own work per single-event
// request: read, decode, authenticate, normalise, marshal. No network, no
// producer.
func BenchmarkHandlerSingle(b *testing.B) {
	h := newTestHandler(b, &fakeWriterNop{})
	g := corpus.NewNetlify(7)
	bodies := make([][]byte, 1024)
	for i := range bodies {
		bodies[i] = g.NextJSON()
	}
	auth := basic(testKey)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/track", bytes.NewReader(bodies[i%len(bodies)]))
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body)
		}
		i++
	}
}
