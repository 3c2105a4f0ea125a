package segment

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/testkit"
	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

const testKey = "wk_test_S3CR3T"

// Segment's limits, as the server enforces them.
const (
	apiMaxBody       = 500 << 10
	apiMaxEvent      = 32 << 10
	apiMaxBatch      = 2500
	apiMaxMessageLen = 99
)

// server stands in for the Tracking API's /v1/batch. It answers as
// Segment does: 401 for a bad write key, 400 for a body over 500 KB, an
// event over 32 KB or invalid JSON, and 200 otherwise, dropping events
// Segment drops (over 2,500 in a batch, no userId or anonymousId, a track
// without event, a messageId of 100 characters or more). Everything the
// sink should never have sent is a violation, which fails the test.
type server struct {
	*httptest.Server
	t testing.TB
	// fail, when set, may answer request n (from 1) itself, after the
	// auth and size checks, by returning true.
	fail func(n int, w http.ResponseWriter, r *http.Request) bool

	hookMu     sync.Mutex // serialises fail
	mu         sync.Mutex
	requests   int
	got        map[string]int // messageId -> deliveries
	maxBody    int
	bodies     [][]byte
	violations []string
}

func newServer(t testing.TB) *server {
	t.Helper()
	s := &server{t: t, got: map[string]int{}}
	s.Server = httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		for _, v := range s.violationsSeen() {
			t.Errorf("server: %s", v)
		}
	})
	return s
}

func (s *server) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func (s *server) violationsSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *server) received() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

// seen returns the bodies received and the size of the largest.
func (s *server) seen() ([][]byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...), s.maxBody
}

func (s *server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code == http.StatusOK {
		io.WriteString(w, `{"success":true}`)
		return
	}
	fmt.Fprintf(w, `{"success":false,"message":%q}`, msg)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n, fail := s.requests, s.fail
	s.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v1/batch" {
		s.violate("request %d: %s %s", n, r.Method, r.URL.Path)
		answer(w, http.StatusNotFound, "not found")
		return
	}
	if user, pass, ok := r.BasicAuth(); !ok || user != testKey || pass != "" {
		answer(w, http.StatusUnauthorized, "invalid write key")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.violate("request %d: Content-Type %q", n, ct)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		answer(w, http.StatusBadRequest, "read body")
		return
	}
	s.mu.Lock()
	s.maxBody = max(s.maxBody, len(body))
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	if len(body) > apiMaxBody {
		s.violate("request %d: body of %d bytes, over %d", n, len(body), apiMaxBody)
		answer(w, http.StatusBadRequest, "payload too large")
		return
	}
	if fail != nil {
		// Hooks run one at a time, so they may keep state unguarded.
		s.hookMu.Lock()
		done := fail(n, w, r)
		s.hookMu.Unlock()
		if done {
			return
		}
	}
	var req struct {
		Batch   []json.RawMessage `json:"batch"`
		SentAt  string            `json:"sentAt"`
		Context json.RawMessage   `json:"context"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.violate("request %d: invalid JSON: %v", n, err)
		answer(w, http.StatusBadRequest, "invalid JSON")
		return
	}
	for i, it := range req.Batch {
		if len(it) > apiMaxEvent {
			s.violate("request %d: event %d is %d bytes, over %d", n, i, len(it), apiMaxEvent)
			answer(w, http.StatusBadRequest, "event too large")
			return
		}
	}
	if len(req.Batch) > apiMaxBatch {
		// Segment answers 200 and drops them all.
		s.violate("request %d: %d events, over %d", n, len(req.Batch), apiMaxBatch)
		answer(w, http.StatusOK, "")
		return
	}
	if _, err := time.Parse(time.RFC3339, req.SentAt); err != nil {
		s.violate("request %d: sentAt %q is not ISO-8601", n, req.SentAt)
	}
	for i, it := range req.Batch {
		var e struct {
			Type        string  `json:"type"`
			Event       *string `json:"event"`
			UserID      string  `json:"userId"`
			AnonymousID string  `json:"anonymousId"`
			MessageID   string  `json:"messageId"`
			Timestamp   *string `json:"timestamp"`
		}
		if err := json.Unmarshal(it, &e); err != nil {
			s.violate("request %d: event %d: %v", n, i, err)
			continue
		}
		var why string
		switch {
		case e.Type == "":
			why = "no type"
		case e.UserID == "" && e.AnonymousID == "":
			why = "no_user_anon_id"
		case e.Type == "track" && (e.Event == nil || *e.Event == ""):
			why = "track without event"
		case e.MessageID == "" || len(e.MessageID) > apiMaxMessageLen:
			why = fmt.Sprintf("messageId %q", e.MessageID)
		case e.Timestamp != nil:
			if _, err := time.Parse(time.RFC3339, *e.Timestamp); err != nil {
				why = fmt.Sprintf("timestamp %q", *e.Timestamp)
			}
		}
		if why != "" {
			s.violate("request %d: event %d dropped: %s", n, i, why)
			continue
		}
		s.mu.Lock()
		s.got[e.MessageID]++
		s.mu.Unlock()
	}
	answer(w, http.StatusOK, "")
}

// tiny returns n small valid events with messageIds prefix-i, of at least
// pad bytes of properties.
func tiny(prefix string, n, pad int) [][]byte {
	out := make([][]byte, n)
	p := strings.Repeat("x", pad)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"messageId":"%s-%d","type":"track","event":"Build Completed","userId":"u1","timestamp":"2026-11-27T12:00:00.000Z","receivedAt":"2026-11-27T12:00:01.000Z","properties":{"pad":%q}}`, prefix, i, p)
	}
	return out
}

func ids(raws [][]byte) []string {
	out := make([]string, len(raws))
	for i, raw := range raws {
		e, _ := event.Parse(raw)
		out[i] = e.MessageID
	}
	return out
}

func newSink(t testing.TB, srv *server, cfg Config) *Sink {
	t.Helper()
	cfg.Endpoint = srv.URL
	cfg.WriteKey = cmp.Or(cfg.WriteKey, testKey)
	s, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func open(t testing.TB, s *Sink) processor.Writer {
	t.Helper()
	w, err := s.Open(context.Background(), processor.Shard{Stream: "s", ID: "shardId-0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func wantOnce(t *testing.T, srv *server, want []string) {
	t.Helper()
	got := srv.received()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("messageId %s received %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("server received %d messageIds, want %d", len(got), len(want))
	}
}

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key", Config{}, "WriteKey is required"},
		{"bad endpoint", Config{WriteKey: "k", Endpoint: "api.segment.io"}, "Endpoint"},
		{"batch over limit", Config{WriteKey: "k", MaxBatchBytes: 600 << 10}, "MaxBatchBytes"},
		{"event over limit", Config{WriteKey: "k", MaxEventBytes: 33 << 10}, "MaxEventBytes"},
		{"too many events", Config{WriteKey: "k", MaxBatchEvents: 2501}, "MaxBatchEvents"},
		{"negative timeout", Config{WriteKey: "k", Timeout: -1}, "Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "segment: ") {
				t.Errorf("got %v, want a segment: error naming %s", err, tc.want)
			}
		})
	}
	s, err := New(Config{WriteKey: "k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != DefaultName || s.url != DefaultEndpoint+"/v1/batch" || s.cfg.Timeout != DefaultTimeout {
		t.Errorf("defaults: got name %q, url %q, timeout %v", s.Name(), s.url, s.cfg.Timeout)
	}
}

func TestWriteDeliversEveryEventOnce(t *testing.T) {
	srv := newServer(t)
	s := newSink(t, srv, Config{MaxBatchBytes: 20 << 10})
	w := open(t, s)
	raws := corpusEvents(t, 1000)
	recs := records(t, raws, 100, 1)
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	wantOnce(t, srv, ids(raws))
	if got, want := w.Durable(), recs[len(recs)-1].SequenceNumber; got != want {
		t.Errorf("Durable() = %q, want %q", got, want)
	}
	if srv.count() < 30 {
		t.Errorf("%d requests, want at least 30 for 1,000 events of ~700 bytes in 20 KB", srv.count())
	}
	if _, largest := srv.seen(); largest > 20<<10 {
		t.Errorf("largest body %d bytes, over MaxBatchBytes %d", largest, 20<<10)
	}
	// An empty write is the processor's idle tick: nothing is sent.
	n := srv.count()
	if err := w.Write(context.Background(), nil); err != nil || srv.count() != n {
		t.Errorf("empty Write: err %v, %d requests, want nil and none", err, srv.count()-n)
	}
}

func TestSplitsAtSegmentLimits(t *testing.T) {
	for _, tc := range []struct {
		name         string
		n, pad       int
		wantRequests int
	}{
		// 3,000 small events: cut by the 2,500-event limit.
		{"events", 3000, 0, 2},
		// 1,200 events of ~1.1 KB: cut by the 500 KB limit.
		{"bytes", 1200, 1000, 3},
		// Exactly 2,500: one request.
		{"exact", 2500, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			w := open(t, newSink(t, srv, Config{}))
			raws := tiny(tc.name, tc.n, tc.pad)
			if err := w.Write(context.Background(), records(t, raws, 500, 1)); err != nil {
				t.Fatal(err)
			}
			wantOnce(t, srv, ids(raws))
			if got := srv.count(); got != tc.wantRequests {
				t.Errorf("%d requests, want %d", got, tc.wantRequests)
			}
			if _, largest := srv.seen(); largest > apiMaxBody {
				t.Errorf("largest body %d bytes, over %d", largest, apiMaxBody)
			}
		})
	}
}

func TestEventsSegmentWouldRefuseAreReportedFailed(t *testing.T) {
	huge := fmt.Appendf(nil, `{"messageId":"big","type":"track","event":"e","userId":"u","properties":{"log":%q}}`, strings.Repeat("a", 40<<10))
	for _, tc := range []struct {
		name string
		cfg  Config
		raw  []byte
		want error
	}{
		{"over 32 KB", Config{}, huge, ErrEventTooLarge},
		{"over a small MaxBatchBytes", Config{MaxBatchBytes: 1 << 10}, tiny("mid", 1, 2<<10)[0], ErrEventTooLarge},
		{"no identity", Config{}, []byte(`{"messageId":"anon","type":"track","event":"e"}`), ErrEventInvalid},
		{"track without event", Config{}, []byte(`{"messageId":"noname","type":"track","userId":"u"}`), ErrEventInvalid},
		{"messageId of 100", Config{}, fmt.Appendf(nil, `{"messageId":"%s","type":"track","event":"e","userId":"u"}`, strings.Repeat("m", 100)), ErrEventInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			w := open(t, newSink(t, srv, tc.cfg))
			good := tiny("ok", 2, 10)
			recs := records(t, [][]byte{good[0], tc.raw, good[1]}, 3, 7)
			err := w.Write(context.Background(), recs)
			var pe *processor.PartialError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *processor.PartialError", err)
			}
			if len(pe.Failed) != 1 || pe.Failed[0].Index != 1 || pe.Failed[0].Record != &recs[0] || !errors.Is(pe.Failed[0].Err, tc.want) {
				t.Fatalf("failed = %+v, want event 1 of record 7 with %v", pe.Failed, tc.want)
			}
			wantOnce(t, srv, ids(good))
			if w.Durable() != "7" {
				t.Errorf("Durable() = %q, want 7: the rest was accepted", w.Durable())
			}
		})
	}
}

func TestResponseClassification(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		code       int
		header     map[string]string
		permanent  bool
		retryAfter time.Duration
	}{
		{"500", 500, nil, false, 0},
		{"502", 502, nil, false, 0},
		{"503 Retry-After", 503, map[string]string{"Retry-After": "2"}, false, 2 * time.Second},
		{"429 Retry-After", 429, map[string]string{"Retry-After": "3"}, false, 3 * time.Second},
		{"429 Retry-After date", 429, map[string]string{"Retry-After": now.Add(7 * time.Second).Format(http.TimeFormat)}, false, 7 * time.Second},
		{"429 X-RateLimit-Reset", 429, map[string]string{"X-RateLimit-Reset": "5"}, false, 5 * time.Second},
		{"429 X-RateLimit-Reset epoch", 429, map[string]string{"X-RateLimit-Reset": strconv.FormatInt(now.Add(9*time.Second).Unix(), 10)}, false, 9 * time.Second},
		{"429 both, longer wins", 429, map[string]string{"Retry-After": "1", "X-RateLimit-Reset": "4"}, false, 4 * time.Second},
		{"429 bare", 429, nil, false, 0},
		{"408", 408, nil, false, 0},
		{"400", 400, nil, true, 0},
		{"413", 413, nil, true, 0},
		{"401", 401, nil, true, 0},
		{"403", 403, nil, true, 0},
		{"404", 404, nil, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				// Echo the key, as a careless server might: it must be
				// redacted from the error.
				answer(w, tc.code, "bad key "+testKey)
				return true
			}
			s := newSink(t, srv, Config{})
			s.now = func() time.Time { return now }
			w := open(t, s)
			err := w.Write(context.Background(), records(t, tiny("c", 3, 0), 3, 1))
			if err == nil {
				t.Fatal("got nil, want an error")
			}
			if got := processor.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent(%v) = %t, want %t", err, got, tc.permanent)
			}
			if got := processor.RetryAfterOf(err); got != tc.retryAfter {
				t.Errorf("RetryAfterOf = %v, want %v", got, tc.retryAfter)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Errorf("got %v, want a *StatusError of %d", err, tc.code)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q holds the write key", err)
			}
			if !strings.HasPrefix(err.Error(), "segment: ") {
				t.Errorf("error %q lacks the segment: prefix", err)
			}
			if tc.permanent && tc.code == 400 && w.Durable() != "1" {
				t.Errorf("Durable() = %q after a 400 for the whole batch, want 1 (it is parked)", w.Durable())
			}
			if !tc.permanent && w.Durable() != "" {
				t.Errorf("Durable() = %q after a transient error, want \"\"", w.Durable())
			}
		})
	}
}

func TestBadWriteKeyIsPermanentAndRedacted(t *testing.T) {
	srv := newServer(t)
	core, logs := observer.New(zap.DebugLevel)
	const wrong = "wk_wrong_K3Y"
	s, err := New(Config{Endpoint: srv.URL, WriteKey: wrong}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	w := open(t, s)
	err = w.Write(context.Background(), records(t, tiny("k", 2, 0), 2, 1))
	if !processor.IsPermanent(err) {
		t.Fatalf("got %v, want a permanent error", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Errorf("got %v, want a 401", err)
	}
	if len(srv.received()) != 0 {
		t.Error("server accepted events with a bad key")
	}
	for _, text := range []string{err.Error(), fmt.Sprint(s.cfg), fmt.Sprintf("%+v", s.cfg), fmt.Sprintf("%#v", s.cfg)} {
		if strings.Contains(text, wrong) {
			t.Errorf("%q holds the write key", text)
		}
	}
	for _, e := range logs.All() {
		if b, _ := json.Marshal(e.ContextMap()); strings.Contains(e.Message+string(b), wrong) {
			t.Errorf("log %q holds the write key", e.Message)
		}
	}
}

func TestResumesAfterTransientFailure(t *testing.T) {
	srv := newServer(t)
	var failed bool
	srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 2 && !failed {
			failed = true
			answer(w, http.StatusInternalServerError, "boom")
			return true
		}
		return false
	}
	w := open(t, newSink(t, srv, Config{MaxBatchEvents: 10}))
	raws := tiny("r", 30, 0)
	recs := records(t, raws, 5, 1)
	err := w.Write(context.Background(), recs)
	if err == nil || processor.IsPermanent(err) {
		t.Fatalf("got %v, want a transient error", err)
	}
	if w.Durable() != "" {
		t.Errorf("Durable() = %q after a failure, want \"\"", w.Durable())
	}
	// The processor retries with the same records.
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	wantOnce(t, srv, ids(raws))
	if got := srv.count(); got != 4 {
		t.Errorf("%d requests, want 4: the accepted first one is not resent", got)
	}
	if w.Durable() != recs[len(recs)-1].SequenceNumber {
		t.Errorf("Durable() = %q, want %q", w.Durable(), recs[len(recs)-1].SequenceNumber)
	}
}

func TestBadRequestFailsOnlyItsEvents(t *testing.T) {
	srv := newServer(t)
	srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 2 {
			answer(w, http.StatusBadRequest, "invalid JSON")
			return true
		}
		return false
	}
	w := open(t, newSink(t, srv, Config{MaxBatchEvents: 10}))
	raws := tiny("b", 30, 0)
	recs := records(t, raws, 10, 1)
	err := w.Write(context.Background(), recs)
	var pe *processor.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a *processor.PartialError", err)
	}
	if len(pe.Failed) != 10 {
		t.Fatalf("%d failed, want the 10 of the refused request", len(pe.Failed))
	}
	for i, f := range pe.Failed {
		if f.Record != &recs[1] || f.Index != i {
			t.Errorf("failed[%d] = record %s event %d, want record 2 event %d", i, f.Record.SequenceNumber, f.Index, i)
		}
	}
	wantOnce(t, srv, append(ids(raws[:10]), ids(raws[20:])...))
	if w.Durable() != "3" {
		t.Errorf("Durable() = %q, want 3", w.Durable())
	}
}

func TestTimeoutAndNetworkErrorsAreTransient(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		srv := newServer(t)
		srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
			<-r.Context().Done() // slow: answers only when the client gives up
			return true
		}
		w := open(t, newSink(t, srv, Config{Timeout: 50 * time.Millisecond}))
		err := w.Write(context.Background(), records(t, tiny("t", 1, 0), 1, 1))
		if err == nil || processor.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want a transient deadline error", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := newServer(t)
		url := srv.URL
		srv.Close()
		s, err := New(Config{Endpoint: url, WriteKey: testKey}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = open(t, s).Write(context.Background(), records(t, tiny("n", 1, 0), 1, 1))
		if err == nil || processor.IsPermanent(err) || processor.RetryAfterOf(err) != 0 {
			t.Errorf("got %v, want a transient error", err)
		}
	})
}

func TestPayloadAsSegmentExpects(t *testing.T) {
	srv := newServer(t)
	var auth []string
	var attempt int
	srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
		auth = append(auth, r.Header.Get("Authorization"))
		attempt++
		if attempt == 1 {
			answer(w, http.StatusServiceUnavailable, "")
			return true
		}
		return false
	}
	s := newSink(t, srv, Config{})
	var clock time.Time
	s.now = func() time.Time { return clock }
	w := open(t, s)
	raw := normalized(t, testkit.ClientPayload(t, "netlify-build-track.json"))
	recs := records(t, [][]byte{raw}, 1, 1)
	clock = time.Date(2026, 11, 27, 13, 0, 1, 0, time.UTC)
	if err := w.Write(context.Background(), recs); err == nil {
		t.Fatal("first attempt: want the 503")
	}
	clock = clock.Add(time.Second)
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testKey+":"))
	for i, a := range auth {
		if a != wantAuth {
			t.Errorf("attempt %d: Authorization %q, want %q", i+1, a, wantAuth)
		}
	}
	var stored map[string]any
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	bodies, _ := srv.seen()
	for i, body := range bodies {
		var got struct {
			Batch   []map[string]any `json:"batch"`
			SentAt  string           `json:"sentAt"`
			Context map[string]any   `json:"context"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		// sentAt is stamped per attempt.
		if want := time.Date(2026, 11, 27, 13, 0, i+1, 0, time.UTC).Format(event.TimeLayout); got.SentAt != want {
			t.Errorf("attempt %d: sentAt %q, want %q", i+1, got.SentAt, want)
		}
		if lib, _ := got.Context["library"].(map[string]any); lib["name"] != "buildtelemetry-pipeline" {
			t.Errorf("batch context %v, want our library", got.Context)
		}
		e := got.Batch[0]
		for _, k := range []string{"messageId", "type", "event", "userId", "timestamp", "originalTimestamp", "properties", "source"} {
			if g, w := fmt.Sprint(e[k]), fmt.Sprint(stored[k]); g != w || e[k] == nil {
				t.Errorf("%s = %v, want %v as stored", k, g, w)
			}
		}
		for _, k := range []string{"receivedAt", "sentAt", "writeKey"} {
			if v, ok := e[k]; ok {
				t.Errorf("event carries %s = %v, want it left out", k, v)
			}
		}
	}
	if len(bodies) != 2 {
		t.Errorf("%d requests, want 2", len(bodies))
	}
}

func TestMetrics(t *testing.T) {
	srv := newServer(t)
	reg := prometheus.NewRegistry()
	w := open(t, newSink(t, srv, Config{Registerer: reg, MaxBatchEvents: 5}))
	big := fmt.Appendf(nil, `{"messageId":"big","type":"track","event":"e","userId":"u","properties":{"log":%q}}`, strings.Repeat("a", 40<<10))
	raws := append(tiny("m", 10, 0), big)
	var pe *processor.PartialError
	if err := w.Write(context.Background(), records(t, raws, 11, 1)); !errors.As(err, &pe) {
		t.Fatalf("got %v, want the big event failed", err)
	}
	got := testkit.Counters(t, reg)
	for name, want := range map[string]float64{
		`sink_segment_requests_total{code="200",sink="segment"}`:                2,
		`sink_segment_events_sent_total{sink="segment"}`:                        10,
		`sink_segment_events_rejected_total{reason="too_large",sink="segment"}`: 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if b := got[`sink_segment_request_bytes_total{sink="segment"}`]; b < 1000 {
		t.Errorf("request bytes = %v, want the bodies' size", b)
	}
	// A second sink of another name registers beside it.
	if _, err := New(Config{WriteKey: "k", Name: "segment-eu", Registerer: reg}, nil); err != nil {
		t.Errorf("second sink: %v", err)
	}
}

// gather returns every sample of reg as name{labels} -> value.

// TestThroughProcessor runs the sink under the real processor: a 429
// with Retry-After delays the retry at least that long and every event
// arrives; a 400 parks the batch; an oversize event is parked alone.
func TestThroughProcessor(t *testing.T) {
	run := func(t *testing.T, srv *server, recs []types.Record) *pt.DeadLetters {
		t.Helper()
		dlq := &pt.DeadLetters{}
		s := newSink(t, srv, Config{})
		f, err := kclproc.NewFactory(kclproc.Config{
			WorkerID: "w1", Stream: "s", MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
			CheckpointInterval: time.Nanosecond,
		}, []processor.Sink{s}, dlq, &pt.Store{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		p := f.CreateProcessor()
		p.Initialize(&kcl.InitializationInput{ShardId: "shardId-0"})
		p.ProcessRecords(&kcl.ProcessRecordsInput{Records: recs, Checkpointer: &pt.Checkpointer{}})
		p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: &pt.Checkpointer{}})
		return dlq
	}
	want := func(prefix string, n, per int) []string {
		var out []string
		for i := 0; i < n; i++ {
			for j := 0; j < per; j++ {
				out = append(out, fmt.Sprintf("%s-%d-%d", prefix, 1+i, j))
			}
		}
		return out
	}

	t.Run("429 Retry-After", func(t *testing.T) {
		srv := newServer(t)
		srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				answer(w, http.StatusTooManyRequests, "slow down")
				return true
			}
			return false
		}
		start := time.Now()
		dlq := run(t, srv, pt.KinesisRecords("ra", 1, 4, 5))
		if d := time.Since(start); d < time.Second {
			t.Errorf("delivered after %v, want at least the 1 s Retry-After", d)
		}
		wantOnce(t, srv, want("ra", 4, 5))
		if l := dlq.Letters(); len(l) != 0 {
			t.Errorf("parked %d letters, want none", len(l))
		}
	})
	t.Run("400 parks the batch", func(t *testing.T) {
		srv := newServer(t)
		srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
			answer(w, http.StatusBadRequest, "invalid JSON")
			return true
		}
		dlq := run(t, srv, pt.KinesisRecords("bad", 1, 2, 3))
		letters := dlq.Letters()
		if len(letters) != 1 || letters[0].Reason != processor.ReasonPermanent || len(letters[0].Entries) != 6 {
			t.Fatalf("letters = %+v, want one permanent letter of 6 events", letters)
		}
		if srv.count() != 1 {
			t.Errorf("%d requests, want 1: a 400 is not retried", srv.count())
		}
	})
	t.Run("oversize event parked alone", func(t *testing.T) {
		srv := newServer(t)
		enc, err := event.NewRecordEncoder()
		if err != nil {
			t.Fatal(err)
		}
		big := fmt.Appendf(nil, `{"messageId":"big","type":"track","event":"e","userId":"u","properties":{"log":%q}}`, strings.Repeat("a", 40<<10))
		evs := append(tiny("small", 2, 0), big)
		now := time.Now()
		recs := []types.Record{{SequenceNumber: aws.String("1"), Data: enc.Encode(nil, evs), ApproximateArrivalTimestamp: &now, PartitionKey: aws.String("k")}}
		dlq := run(t, srv, recs)
		wantOnce(t, srv, []string{"small-0", "small-1"})
		letters := dlq.Letters()
		if len(letters) != 1 || len(letters[0].Entries) != 1 || !bytes.Equal(letters[0].Entries[0].Event, big) ||
			!strings.Contains(letters[0].Entries[0].Error, "over the limit") {
			t.Fatalf("letters = %d, want the big event parked with its reason", len(letters))
		}
	})
}

// BenchmarkSegmentSink measures events/s through one writer into a server
// that answers at once: building bodies, HTTP on loopback, and the
// server's reading of the body.
func BenchmarkSegmentSink(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"success":true}`)
	}))
	defer srv.Close()
	s, err := New(Config{Endpoint: srv.URL, WriteKey: testKey}, nil)
	if err != nil {
		b.Fatal(err)
	}
	w, _ := s.Open(context.Background(), processor.Shard{ID: "shardId-0"})
	recs := records(b, corpusEvents(b, 5000), 100, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*5000)/b.Elapsed().Seconds(), "events/s")
}

// normalized returns a client payload as the gateway stores it.
func normalized(t testing.TB, body []byte) []byte {
	return sinktest.Stored(t, body, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
}

// corpusEvents returns n normalised Netlify Build events.
func corpusEvents(t testing.TB, n int) [][]byte {
	return sinktest.NetlifyEvents(t, 42, n, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
}

// records packs raw events into records of per events, with sequence
// numbers from first.
func records(t testing.TB, raws [][]byte, per, first int) []processor.Record {
	return sinktest.Pack(t, raws, per, first)
}
