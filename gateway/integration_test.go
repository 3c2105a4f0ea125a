//go:build integration

package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/streamread"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// teeWriter remembers what the handler handed to the producer.
type teeWriter struct {
	w    EventWriter
	mu   sync.Mutex
	msgs []Message
}

func (t *teeWriter) Write(ctx context.Context, msgs []Message) error {
	err := t.w.Write(ctx, msgs)
	if err == nil {
		t.mu.Lock()
		t.msgs = append(t.msgs, msgs...)
		t.mu.Unlock()
	}
	return err
}

// liveGateway is a handler and producer writing to a fresh stream.
type liveGateway struct {
	stack  *devstack.Stack
	stream string
	prod   *Producer
	tee    *teeWriter
	srv    *httptest.Server
}

func newLiveGateway(t *testing.T, pcfg ProducerConfig) *liveGateway {
	t.Helper()
	ctx := context.Background()
	s := devstack.ForTest(t)
	g := &liveGateway{stack: s, stream: devstack.UniqueName(t, "gw")}
	if pcfg.StreamName == "" {
		pcfg.StreamName = g.stream
		if err := s.CreateStream(ctx, g.stream, 4); err != nil {
			t.Fatal(err)
		}
	}
	enc, err := event.NewRecordEncoder()
	if err != nil {
		t.Fatal(err)
	}
	g.prod, err = NewProducer(s.Kinesis(), enc, pcfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	g.tee = &teeWriter{w: g.prod}
	h, err := NewHandler(g.tee, Config{
		WriteKeys:    map[string]string{testKey: "test-source"},
		LegacySource: "legacy",
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		g.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.prod.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return g
}

func (g *liveGateway) post(t *testing.T, r req) (int, string) {
	t.Helper()
	rec := do(t, g.srv.Config.Handler, r)
	return rec.Code, rec.Body.String()
}

// streamEvents returns every event in the stream by messageId, failing on
// any record that does not decode or any duplicate.
func (g *liveGateway) streamEvents(t *testing.T) map[string][]byte {
	t.Helper()
	recs, err := streamread.ReadAll(context.Background(), g.stack.Kinesis(), g.stream)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := event.NewRecordDecoder()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, r := range recs {
		evs, err := dec.Decode(r.Data)
		if err != nil {
			t.Fatalf("record %s does not decode: %v", *r.SequenceNumber, err)
		}
		for _, raw := range evs {
			e, err := event.Parse(raw)
			if err != nil {
				t.Fatalf("event does not parse: %v: %s", err, raw)
			}
			if _, dup := out[e.MessageID]; dup {
				t.Errorf("messageId %s twice in the stream", e.MessageID)
			}
			out[e.MessageID] = raw
		}
	}
	return out
}

func TestIntegrationEveryShapeRoundTrips(t *testing.T) {
	g := newLiveGateway(t, ProducerConfig{})
	auth := map[string]string{"Authorization": basic(testKey)}
	netlify := clientBody(t, "netlify-build-track.json")
	for _, r := range []req{
		{path: "/v1/track", body: netlify, header: auth},
		{path: "/v1/batch", body: clientBody(t, "analytics-node-batch.json"), header: auth},
		{path: "/v1/batch", body: strings.ReplaceAll(clientBody(t, "analytics-node-batch.json"), "node-next-", "gzipped-"), gzip: true, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{path: "/v1/t", body: clientBody(t, "analytics-js-track.json"), header: map[string]string{"Content-Type": "text/plain"}},
		{path: "/collect", body: clientBody(t, "netlify-build-legacy-collect.json"), header: map[string]string{"X-Netlify-Client": "NETLIFY_CI"}},
		{path: "/identify", body: clientBody(t, "netlify-build-legacy-identify.json")},
		{path: "/v1/identify", body: `{"userId":"u1","traits":{"plan":"pro"},"timestamp":"2026-11-27T10:00:00Z"}`, header: auth},
		{path: "/v1/page", body: `{"anonymousId":"a1","name":"Home","properties":{"path":"/"}}`, header: auth},
		{path: "/v1/s", body: `{"userId":"u1","name":"Main"}`, header: auth},
		{path: "/v1/group", body: `{"userId":"u1","groupId":"g1","traits":{"size":3}}`, header: auth},
		{path: "/v1/a", body: `{"userId":"u1","previousId":"a1"}`, header: auth},
	} {
		if code, body := g.post(t, r); code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", r.path, code, body)
		}
	}
	got := g.streamEvents(t)
	want := map[string][]byte{}
	for _, m := range g.tee.msgs {
		want[m.ID] = m.Data
	}
	if len(got) != len(want) {
		t.Errorf("stream holds %d distinct events, want %d", len(got), len(want))
	}
	for id, data := range want {
		if string(got[id]) != string(data) {
			t.Errorf("event %s: stream has %s, want %s", id, got[id], data)
		}
	}

	// The Netlify payload: properties exactly as sent, timestamp normalised.
	var sent struct {
		Properties map[string]any `json:"properties"`
	}
	json.Unmarshal([]byte(netlify), &sent)
	var found bool
	for _, raw := range got {
		e, _ := event.Parse(raw)
		if e.Name != "build:ci_build_process_completed" {
			continue
		}
		found = true
		var stored struct {
			Properties map[string]any `json:"properties"`
			Timestamp  string         `json:"timestamp"`
			Source     string         `json:"source"`
		}
		json.Unmarshal(raw, &stored)
		if !reflect.DeepEqual(stored.Properties, sent.Properties) {
			t.Errorf("properties changed:\n got %v\nwant %v", stored.Properties, sent.Properties)
		}
		if stored.Timestamp != "2024-06-10T06:13:20.000Z" || stored.Source != "test-source" {
			t.Errorf("timestamp %q source %q", stored.Timestamp, stored.Source)
		}
		if !strings.HasPrefix(e.MessageID, "gw-") {
			t.Errorf("messageId %q, want a derived one", e.MessageID)
		}
	}
	if !found {
		t.Error("the Netlify Build event is not in the stream")
	}
}

func TestIntegrationRejectedRequestsWriteNothing(t *testing.T) {
	g := newLiveGateway(t, ProducerConfig{})
	auth := map[string]string{"Authorization": basic(testKey)}
	for _, r := range []req{
		{path: "/v1/track", body: `{"userId":"u",`, header: auth},
		{path: "/v1/track", body: gzipBomb(t, 5<<20), header: map[string]string{"Authorization": basic(testKey), "Content-Encoding": "gzip"}},
		{path: "/v1/track", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic("wrong")}},
		{path: "/v1/batch", body: `{"batch":[]}`, header: auth},
		{path: "/v9/track", body: `{"userId":"u","event":"e"}`, header: auth},
	} {
		if code, body := g.post(t, r); code == http.StatusOK {
			t.Fatalf("%s accepted a bad request: %s", r.path, body)
		}
	}
	if got := g.streamEvents(t); len(got) != 0 {
		t.Errorf("rejected requests put %d events in the stream", len(got))
	}
}

// Requests that are JSON within the limits get 200 whatever their events:
// the valid ones go to the stream as usual, and each invalid one in its
// envelope, marked with its reason, for the archive's error output.
func TestIntegrationInvalidEventsKeptInTheStream(t *testing.T) {
	g := newLiveGateway(t, ProducerConfig{})
	auth := map[string]string{"Authorization": basic(testKey)}
	for _, r := range []req{
		{path: "/v1/track", body: `{"userId":"u","event":1}`, header: auth},
		{path: "/v1/batch", body: `{"batch":[{"type":"track","userId":"u","event":"ok","messageId":"ok-1"},{"type":"track","event":"no identity"}]}`, header: auth},
		{path: "/v1/batch", body: `{"batch":[{"type":"track","userId":"u","event":"ok","messageId":"ok-2"},{"type":"track","userId":"u","event":"big","properties":{"x":"` + strings.Repeat("x", 40<<10) + `"}}]}`, header: auth},
	} {
		if code, body := g.post(t, r); code != http.StatusOK || !strings.Contains(body, `"rejected"`) {
			t.Fatalf("%s: %d %s; want 200 naming the rejected event", r.path, code, body)
		}
	}
	reasons := map[string]int{}
	valid := 0
	for _, raw := range g.streamEvents(t) {
		e, err := event.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if e.Rejected == "" {
			valid++
		} else {
			reasons[e.Rejected]++
		}
	}
	if valid != 2 || reasons[event.RejectedInvalid] != 2 || reasons[event.RejectedTooLarge] != 1 {
		t.Errorf("stream holds %d valid events and envelopes %v; want 2, and 2 invalid-event and 1 event-too-large", valid, reasons)
	}
}

// With no stream to write to, Kinesis keeps failing: the client gets 503
// and Retry-After, not a 200 and not a hang.
func TestIntegrationKinesisFailingGives503(t *testing.T) {
	g := newLiveGateway(t, ProducerConfig{StreamName: "no-such-stream", RetryTimeout: 500 * time.Millisecond})
	rec := do(t, g.srv.Config.Handler, req{path: "/v1/track", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic(testKey)}})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}
