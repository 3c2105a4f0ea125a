package ga4

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/testkit"
	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

const (
	testMID    = "G-TEST123"
	testSecret = "s3cr3t/API+key"
)

// The server's own copy of GA4's rules, kept apart from
// the sink's so that a mistake in one is caught by the other.
var (
	nameRule          = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	serverReservedEvs = []string{"ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
		"adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_remove", "app_store_refund",
		"app_store_subscription_cancel", "app_store_subscription_convert", "app_store_subscription_renew",
		"app_update", "app_upgrade", "click", "dynamic_link_app_open", "dynamic_link_app_update",
		"dynamic_link_first_open", "error", "file_download", "first_open", "first_visit", "form_start",
		"form_submit", "in_app_purchase", "notification_dismiss", "notification_foreground", "notification_open",
		"notification_receive", "os_update", "page_view", "screen_view", "scroll", "session_start",
		"session_start_with_rollout", "user_engagement", "view_search_results"}
	serverReservedParams = []string{"session_id", "engagement_time_msec", "gclid", "session_number"}
	serverPrefixes       = []string{"_", "firebase_", "ga_", "google_", "gtag."}
)

// message is one entry of validationMessages.
type message struct {
	FieldPath      string `json:"fieldPath"`
	Description    string `json:"description"`
	ValidationCode string `json:"validationCode"`
}

// received is one event the server accepted on /mp/collect.
type received struct {
	clientID, userID string
	micros           int64
	name             string
	params           map[string]any
}

// server stands in for the Measurement Protocol. /debug/mp/collect
// answers {"validationMessages":[...]} by GA4's documented rules (names, lengths, counts, reserved names);
// /mp/collect answers 204 to anything, as GA4 does, but records the
// messages of bad data as violations, which fail the test, and keeps the
// events of good data.
type server struct {
	*httptest.Server
	t   testing.TB
	now time.Time
	// fail, when set, may answer request n (from 1) itself by returning
	// true. Calls are serialised.
	fail func(n int, w http.ResponseWriter, r *http.Request) bool
	// extra, when set, adds messages to a debug answer.
	extra func(body []byte) []message

	hookMu     sync.Mutex
	mu         sync.Mutex
	requests   int
	events     []received
	debug      int // requests to the validation server
	maxBody    int
	violations []string
}

func newServer(t testing.TB) *server {
	t.Helper()
	s := &server{t: t, now: mapNow}
	s.Server = httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, v := range s.violations {
			t.Errorf("server: %s", v)
		}
	})
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.mu.Unlock()
	debug := r.URL.Path == debugPath
	if r.Method != http.MethodPost || (!debug && r.URL.Path != collectPath) {
		s.violate("request %d: %s %s", n, r.Method, r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.maxBody = max(s.maxBody, len(body))
	s.mu.Unlock()
	if s.fail != nil {
		s.hookMu.Lock()
		done := s.fail(n, w, r)
		s.hookMu.Unlock()
		if done {
			return
		}
	}
	msgs, evs := s.check(r, body)
	if debug {
		if s.extra != nil {
			msgs = append(msgs, s.extra(body)...)
		}
		s.mu.Lock()
		s.debug++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if msgs == nil {
			msgs = []message{}
		}
		json.NewEncoder(w).Encode(map[string]any{"validationMessages": msgs})
		return
	}
	for _, m := range msgs {
		s.violate("request %d: %s %s: %s", n, m.ValidationCode, m.FieldPath, m.Description)
	}
	if len(msgs) == 0 {
		s.mu.Lock()
		s.events = append(s.events, evs...)
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func (s *server) got() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.events...)
}

func (s *server) count() (requests, debug, maxBody int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.debug, s.maxBody
}

// check applies GA4's rules to one request.
func (s *server) check(r *http.Request, body []byte) ([]message, []received) {
	var msgs []message
	bad := func(path, code, format string, args ...any) {
		msgs = append(msgs, message{FieldPath: path, ValidationCode: code, Description: fmt.Sprintf(format, args...)})
	}
	q := r.URL.Query()
	if q.Get("measurement_id") != testMID || q.Get("api_secret") != testSecret {
		bad("measurement_id", "VALUE_INVALID", "Unknown measurement_id or api_secret.")
	}
	if len(body) >= MaxBodyBytes {
		bad("", "VALUE_OUT_OF_BOUNDS", "Request body of %d bytes is over the 130kB limit.", len(body))
		return msgs, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var req map[string]any
	if err := dec.Decode(&req); err != nil {
		bad("", "VALUE_INVALID", "Unable to parse request: %v", err)
		return msgs, nil
	}
	for k := range req {
		switch k {
		case "client_id", "user_id", "timestamp_micros", "user_properties", "consent", "events", "non_personalized_ads", "user_data":
		default:
			bad(k, "VALUE_INVALID", "Unknown field [%s].", k)
		}
	}
	clientID, _ := req["client_id"].(string)
	if clientID == "" {
		bad("client_id", "VALUE_REQUIRED", "Measurement requires a client_id.")
	}
	userID, _ := req["user_id"].(string)
	if v, ok := req["user_id"]; ok && (userID == "" || len(userID) > 256) {
		bad("user_id", "VALUE_INVALID", "user_id [%v] is invalid.", v)
	}
	var micros int64
	if v, ok := req["timestamp_micros"]; ok {
		n, _ := v.(json.Number)
		m, err := n.Int64()
		ts := time.UnixMicro(m)
		switch {
		case err != nil:
			bad("timestamp_micros", "VALUE_INVALID", "timestamp_micros [%v] is not an integer.", v)
		case ts.After(s.now) || s.now.Sub(ts) > MaxBackdate:
			bad("timestamp_micros", "VALUE_OUT_OF_BOUNDS", "timestamp_micros [%d] is outside the last 72 hours.", m)
		}
		micros = m
	}
	if up, ok := req["user_properties"].(map[string]any); ok && len(up) > 25 {
		bad("user_properties", "VALUE_OUT_OF_BOUNDS", "Too many user properties: %d.", len(up))
	}
	events, _ := req["events"].([]any)
	switch {
	case len(events) == 0:
		bad("events", "VALUE_REQUIRED", "Measurement requires at least one event.")
	case len(events) > MaxEventsPerRequest:
		bad("events", "VALUE_OUT_OF_BOUNDS", "Too many events: %d, at most 25.", len(events))
	}
	var out []received
	for i, v := range events {
		e, _ := v.(map[string]any)
		name, _ := e["name"].(string)
		switch {
		case !nameRule.MatchString(name) || len(name) > MaxNameLen:
			bad("events", "NAME_INVALID", "Event at index: [%d] has invalid name [%s]. Names must start with an alphabetic character and contain only alphanumeric characters and underscores, at most 40.", i, name)
		case reservedName(name, serverReservedEvs, append(serverPrefixes, "video_")):
			bad("events", "NAME_RESERVED", "Event at index: [%d] has name [%s] which is reserved.", i, name)
		}
		params, _ := e["params"].(map[string]any)
		if p, ok := e["params"]; ok && params == nil {
			bad(fmt.Sprintf("events[%d].params", i), "VALUE_INVALID", "Event at index: [%d] has params [%v] that are not an object.", i, p)
		}
		if len(params) > MaxParams {
			bad(fmt.Sprintf("events[%d].params", i), "VALUE_OUT_OF_BOUNDS", "Event at index: [%d] has %d params, at most 25.", i, len(params))
		}
		for k, pv := range params {
			switch {
			case !nameRule.MatchString(k) || len(k) > MaxNameLen:
				bad(fmt.Sprintf("events[%d].params", i), "NAME_INVALID", "Event at index: [%d] has invalid param [%s].", i, k)
			case reservedName(k, serverReservedParams, serverPrefixes):
				bad(fmt.Sprintf("events[%d].params", i), "NAME_RESERVED", "Event at index: [%d] has param [%s] which is reserved.", i, k)
			}
			switch pv := pv.(type) {
			case json.Number:
			case string:
				if utf8.RuneCountInString(pv) > MaxValueLen {
					bad(fmt.Sprintf("events[%d].params.%s", i, k), "VALUE_OUT_OF_BOUNDS", "Event at index: [%d] has param [%s] with a value of %d characters, at most 100.", i, k, utf8.RuneCountInString(pv))
				}
			default:
				bad(fmt.Sprintf("events[%d].params.%s", i, k), "VALUE_INVALID", "Event at index: [%d] has param [%s] of an unsupported type.", i, k)
			}
		}
		out = append(out, received{clientID: clientID, userID: userID, micros: micros, name: name, params: params})
	}
	return msgs, out
}

func reservedName(name string, names, prefixes []string) bool {
	for _, n := range names {
		if name == n {
			return true
		}
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func newSink(t testing.TB, srv *server, cfg Config) *Sink {
	t.Helper()
	cfg.Endpoint = srv.URL
	cfg.MeasurementID, cfg.APISecret = testMID, testSecret
	s, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return mapNow }
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

func parseAll(t testing.TB, raws [][]byte) []*event.Event {
	t.Helper()
	out := make([]*event.Event, len(raws))
	for i, raw := range raws {
		out[i] = parse(t, string(raw))
	}
	return out
}

// wantOnce checks that every deploy ID arrived exactly once.
func wantOnce(t *testing.T, srv *server, raws [][]byte) {
	t.Helper()
	got := map[string]int{}
	for _, e := range srv.got() {
		id, _ := e.params["deploy_id"].(string)
		got[id]++
	}
	for _, e := range parseAll(t, raws) {
		id, _ := e.LookupString("properties.deployId")
		if got[id] != 1 {
			t.Errorf("deploy %s received %d times, want 1", id, got[id])
		}
	}
	if n := len(srv.got()); n != len(raws) {
		t.Errorf("server received %d events, want %d", n, len(raws))
	}
}

func TestNetlifyBuildPayloadValidates(t *testing.T) {
	srv := newServer(t)
	s := newSink(t, srv, Config{})
	raw := normalized(t, testkit.ClientPayload(t, "netlify-build-track.json"))
	msgs, err := s.Validate(context.Background(), parseAll(t, [][]byte{raw}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Errorf("validation message: %+v", m)
	}
	if _, debug, _ := srv.count(); debug != 1 {
		t.Errorf("%d requests to the validation server, want 1", debug)
	}
	// And what the sink sends for it.
	w := open(t, s)
	if err := w.Write(context.Background(), records(t, [][]byte{raw}, 1, 1)); err != nil {
		t.Fatal(err)
	}
	got := srv.got()
	if len(got) != 1 {
		t.Fatalf("server received %d events, want 1", len(got))
	}
	e := got[0]
	if e.name != "build_ci_build_process_completed" || e.userID != "" || e.micros != 0 || !clientIDFormat.MatchString(e.clientID) {
		t.Errorf("got name %q user_id %q timestamp_micros %d client_id %q; want the mapped name, no user_id (shared), no timestamp (2024 is too old)",
			e.name, e.userID, e.micros, e.clientID)
	}
	want := map[string]string{
		"deploy_id": "66683a2f8a1b2c0008d1e2f3", "build_id": "66683a2f8a1b2c0008d1e2f4", "status": "success", "steps": "4",
		"build_version": "29.50.1", "node_version": "v20.14.0", "os_platform": "Linux", "os_name": "Ubuntu", "framework": "next",
		"site_id": "1f0c5d3e-8a4b-4c2d-9e6f-7a8b9c0d1e2f", "plugin_count": "1", "duration": "45678", "plugins": "@netlify/plugin-nextjs",
	}
	for k, v := range want {
		if g := fmt.Sprint(e.params[k]); g != v {
			t.Errorf("param %s = %q, want %q", k, g, v)
		}
	}
	if len(e.params) != len(want) {
		t.Errorf("%d params %v, want %d", len(e.params), e.params, len(want))
	}
	if _, isNum := e.params["duration"].(json.Number); !isNum {
		t.Errorf("duration %T, want a number", e.params["duration"])
	}
}

func TestCorpusValidates(t *testing.T) {
	srv := newServer(t)
	s := newSink(t, srv, Config{})
	evs := parseAll(t, corpusEvents(t, 1000))
	msgs, err := s.Validate(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if i == 10 {
			t.Errorf("... %d messages in all", len(msgs))
			break
		}
		t.Errorf("validation message: %+v", m)
	}
	// The corpus is dated within the 24 h before mapNow: every request
	// carries timestamp_micros, inside the window the server checks.
	_, debug, _ := srv.count()
	if debug < 900 {
		t.Errorf("%d validation requests, want about one per event (a client each)", debug)
	}
}

func TestValidateReportsMessages(t *testing.T) {
	srv := newServer(t)
	srv.extra = func(body []byte) []message {
		if !bytes.Contains(body, []byte(`"status":"plugin-error"`)) {
			return nil
		}
		return []message{{FieldPath: "events", ValidationCode: "VALUE_INVALID", Description: "Event at index: [0] is not liked."}}
	}
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	s, err := New(Config{Endpoint: srv.URL, MeasurementID: testMID, APISecret: testSecret, Validate: true, Registerer: reg}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return mapNow }
	raws := corpusEvents(t, 100)
	evs := parseAll(t, raws)
	noID := parse(t, `{"messageId":"noid","type":"track","event":"e"}`)
	msgs, err := s.Validate(context.Background(), append(evs, noID))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, e := range evs {
		if s, _ := e.LookupString("properties.status"); s == "plugin-error" {
			want++
		}
	}
	if want == 0 {
		t.Fatal("corpus has no plugin-error event to flag")
	}
	if len(msgs) != want+1 {
		t.Fatalf("%d messages, want %d flagged and 1 for the event without identity", len(msgs), want)
	}
	for _, m := range msgs {
		if m.Index == 100 {
			if m.ValidationCode != "VALUE_REQUIRED" || m.MessageID != "noid" || m.FieldPath != "client_id" {
				t.Errorf("message %+v, want the local client_id message", m)
			}
			continue
		}
		if m.Index < 0 || evs[m.Index].MessageID != m.MessageID || m.EventName != "build_ci_build_process_completed" || m.ValidationCode != "VALUE_INVALID" {
			t.Errorf("message %+v, want it tied to its event", m)
			continue
		}
		if s, _ := evs[m.Index].LookupString("properties.status"); s != "plugin-error" {
			t.Errorf("message tied to event %d of status %s", m.Index, s)
		}
	}

	// A writer in Validate mode sends only to the validation server, logs
	// each message at warn and counts it.
	w := open(t, s)
	if err := w.Write(context.Background(), records(t, raws, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.got()); n != 0 {
		t.Errorf("/mp/collect got %d events in Validate mode, want none", n)
	}
	warned := logs.FilterMessage("ga4 validation message").All()
	if len(warned) != want {
		t.Errorf("%d warnings, want %d", len(warned), want)
	}
	for _, l := range warned {
		if l.ContextMap()["event"] != "build_ci_build_process_completed" || l.Level != zap.WarnLevel {
			t.Errorf("warning %v, want the event name at warn", l.ContextMap())
		}
	}
	if got := testkit.Counters(t, reg)[`sink_ga4_validation_messages_total{code="VALUE_INVALID",sink="ga4"}`]; got != float64(want) {
		t.Errorf("validation messages metric = %v, want %d", got, want)
	}
}

func TestWriteDeliversAndReportsUnmappable(t *testing.T) {
	srv := newServer(t)
	w := open(t, newSink(t, srv, Config{}))
	raws := corpusEvents(t, 200)
	identify := []byte(`{"messageId":"id1","type":"identify","userId":"u","traits":{"email":"a@example.com"}}`)
	noID := []byte(`{"messageId":"noid","type":"track","event":"e"}`)
	all := append([][]byte{identify, noID}, raws...)
	recs := records(t, all, 20, 1)
	err := w.Write(context.Background(), recs)
	var pe *processor.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Record != &recs[0] || pe.Failed[0].Index != 1 || !errors.Is(pe.Failed[0].Err, errNoIdentity) {
		t.Fatalf("got %v, want the event without identity failed", err)
	}
	wantOnce(t, srv, raws)
	if w.Durable() != recs[len(recs)-1].SequenceNumber {
		t.Errorf("Durable() = %q, want %q", w.Durable(), recs[len(recs)-1].SequenceNumber)
	}
}

func TestGroupsIntoRequests(t *testing.T) {
	// One client, 60 events: 25, 25 and 10.
	var same [][]byte
	for i := range 60 {
		same = append(same, fmt.Appendf(nil, `{"messageId":"m%d","type":"track","event":"e","anonymousId":"a","timestamp":"2020-01-01T00:00:00.000Z","properties":{"deployId":"d%d"}}`, i, i))
	}
	// Values that escape to 6 bytes a character: 25 events of 25 such
	// params are over 130 kB, so the size limit cuts first.
	var heavy [][]byte
	for i := range 25 {
		props := fmt.Sprintf(`"deployId":"h%d"`, i)
		for j := range 24 {
			props += fmt.Sprintf(`,"k%02d":"%s"`, j, strings.Repeat(`\u0001`, 100))
		}
		heavy = append(heavy, fmt.Appendf(nil, `{"messageId":"h%d","type":"track","event":"e","anonymousId":"a","properties":{%s}}`, i, props))
	}
	for _, tc := range []struct {
		name string
		raws [][]byte
		// wantRequests is the exact count, or with atLeast a lower bound.
		wantRequests int
		atLeast      bool
	}{
		{"25 events a request", same, 3, false},
		// About 14.7 kB an event: 8 a request.
		{"under 130 kB a request", heavy, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			w := open(t, newSink(t, srv, Config{}))
			if err := w.Write(context.Background(), records(t, tc.raws, 10, 1)); err != nil {
				t.Fatal(err)
			}
			wantOnce(t, srv, tc.raws)
			requests, _, largest := srv.count()
			if requests != tc.wantRequests && !(tc.atLeast && requests > tc.wantRequests) {
				t.Errorf("%d requests, want %d", requests, tc.wantRequests)
			}
			if largest >= MaxBodyBytes {
				t.Errorf("largest body %d bytes, want under %d", largest, MaxBodyBytes)
			}
		})
	}
}

func TestResponseClassification(t *testing.T) {
	for _, tc := range []struct {
		name       string
		code       int
		header     map[string]string
		permanent  bool
		retryAfter time.Duration
	}{
		{"500", 500, nil, false, 0},
		{"503 Retry-After", 503, map[string]string{"Retry-After": "2"}, false, 2 * time.Second},
		{"429 Retry-After", 429, map[string]string{"Retry-After": "3"}, false, 3 * time.Second},
		{"429 Retry-After date", 429, map[string]string{"Retry-After": mapNow.Add(7 * time.Second).Format(http.TimeFormat)}, false, 7 * time.Second},
		{"429 bare", 429, nil, false, 0},
		{"408", 408, nil, false, 0},
		{"400", 400, nil, true, 0},
		{"403", 403, nil, true, 0},
		{"404", 404, nil, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.code)
				// A careless server echoing the URL: redacted from errors.
				io.WriteString(w, "bad request "+r.URL.String())
				return true
			}
			w := open(t, newSink(t, srv, Config{}))
			err := w.Write(context.Background(), records(t, corpusEvents(t, 3), 3, 1))
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
			noSecret(t, err.Error())
			if !strings.HasPrefix(err.Error(), "ga4: ") {
				t.Errorf("error %q lacks the ga4: prefix", err)
			}
		})
	}
}

func noSecret(t *testing.T, text string) {
	t.Helper()
	for _, s := range []string{testSecret, "s3cr3t"} {
		if strings.Contains(text, s) {
			t.Errorf("%q holds the API secret", text)
		}
	}
}

func TestTransportErrorsAreTransientAndRedacted(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		srv := newServer(t)
		srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
			<-r.Context().Done() // slow: answers only when the client gives up
			return true
		}
		w := open(t, newSink(t, srv, Config{Timeout: 50 * time.Millisecond}))
		err := w.Write(context.Background(), records(t, corpusEvents(t, 1), 1, 1))
		if err == nil || processor.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want a transient deadline error", err)
		}
		noSecret(t, err.Error())
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := newServer(t)
		s := newSink(t, srv, Config{})
		srv.Close()
		err := open(t, s).Write(context.Background(), records(t, corpusEvents(t, 1), 1, 1))
		if err == nil || processor.IsPermanent(err) {
			t.Errorf("got %v, want a transient error", err)
		}
		noSecret(t, err.Error())
	})
	t.Run("config", func(t *testing.T) {
		cfg := Config{MeasurementID: testMID, APISecret: testSecret}
		for _, text := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
			noSecret(t, text)
		}
	})
}

func TestResumeSendsNothingTwice(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			srv := newServer(t)
			failed := false
			srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
				if n == 5 && !failed {
					failed = true
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return true
				}
				return false
			}
			w := open(t, newSink(t, srv, Config{Concurrency: conc}))
			raws := corpusEvents(t, 40) // 40 sites: 40 requests
			recs := records(t, raws, 8, 1)
			err := w.Write(context.Background(), recs)
			if err == nil || processor.IsPermanent(err) || processor.RetryAfterOf(err) != time.Second {
				t.Fatalf("got %v, want a transient error with Retry-After", err)
			}
			if w.Durable() != "" {
				t.Errorf("Durable() = %q after a failure, want \"\"", w.Durable())
			}
			if conc == 1 {
				if requests, _, _ := srv.count(); requests != 5 {
					t.Errorf("%d requests, want 5: none started after the failure", requests)
				}
				// What the processor would park now: only the events not
				// sent (the fifth request's and the ones never started).
				pw := w.(processor.PartialWriter)
				sent := 0
				for _, r := range recs {
					for i := range r.Events {
						if pw.Delivered(r.SequenceNumber, i) {
							sent++
						}
					}
				}
				if sent != 4 || pw.Delivered("no such record", 0) {
					t.Errorf("Delivered reports %d events, want the 4 of the requests answered 2xx", sent)
				}
			}
			if err := w.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			wantOnce(t, srv, raws)
			if requests, _, _ := srv.count(); requests != 41 {
				t.Errorf("%d requests, want 41: each event once, plus the refused one", requests)
			}
		})
	}
}

func TestRefusedRequestFailsOnlyItsEvents(t *testing.T) {
	srv := newServer(t)
	srv.fail = func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 2 {
			w.WriteHeader(http.StatusBadRequest)
			return true
		}
		return false
	}
	w := open(t, newSink(t, srv, Config{Concurrency: 1}))
	raws := corpusEvents(t, 3)
	recs := records(t, raws, 3, 1)
	err := w.Write(context.Background(), recs)
	var pe *processor.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Index != 1 {
		t.Fatalf("got %v, want event 1 failed", err)
	}
	wantOnce(t, srv, [][]byte{raws[0], raws[2]})
	if w.Durable() != "1" {
		t.Errorf("Durable() = %q, want 1", w.Durable())
	}
}

func TestMetrics(t *testing.T) {
	srv := newServer(t)
	reg := prometheus.NewRegistry()
	w := open(t, newSink(t, srv, Config{Registerer: reg}))
	raws := corpusEvents(t, 10)
	identify := []byte(`{"messageId":"id1","type":"identify","userId":"u"}`)
	if err := w.Write(context.Background(), records(t, append(raws, identify), 11, 1)); err != nil {
		t.Fatal(err)
	}
	got := testkit.Counters(t, reg)
	for name, want := range map[string]float64{
		`sink_ga4_requests_total{code="204",sink="ga4"}`:            10,
		`sink_ga4_events_sent_total{sink="ga4"}`:                    10,
		`sink_ga4_events_skipped_total{sink="ga4",type="identify"}`: 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if b := got[`sink_ga4_request_bytes_total{sink="ga4"}`]; b < 1000 {
		t.Errorf("request bytes = %v, want the bodies' size", b)
	}
}

// gather returns every counter of reg as name{labels} -> value.

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no measurement ID", Config{APISecret: "s"}, "MeasurementID is required"},
		{"no secret", Config{MeasurementID: "G-1"}, "APISecret is required"},
		{"bad endpoint", Config{MeasurementID: "G-1", APISecret: "s", Endpoint: "www.google-analytics.com"}, "Endpoint"},
		{"negative concurrency", Config{MeasurementID: "G-1", APISecret: "s", Concurrency: -1}, "Concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ga4: ") {
				t.Errorf("got %v, want a ga4: error naming %s", err, tc.want)
			}
		})
	}
	s, err := New(Config{MeasurementID: "G-1", APISecret: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != DefaultName || s.cfg.Endpoint != DefaultEndpoint || s.cfg.Concurrency != DefaultConcurrency || !s.mapper.shared["buildbot_user"] {
		t.Errorf("defaults: %v", s.cfg)
	}
}

// BenchmarkGA4Sink measures events/s through one writer into a server
// that answers at once. Netlify events are one request each (a client_id
// per site), so this is mostly HTTP on loopback.
func BenchmarkGA4Sink(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := New(Config{Endpoint: srv.URL, MeasurementID: testMID, APISecret: testSecret}, nil)
	if err != nil {
		b.Fatal(err)
	}
	w, _ := s.Open(context.Background(), processor.Shard{ID: "shardId-0"})
	const n = 1000
	recs := records(b, corpusEvents(b, n), 100, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// normalized returns a client payload as the gateway stores it.
func normalized(t testing.TB, body []byte) []byte { return sinktest.Stored(t, body, mapNow) }

// corpusEvents returns n normalised Netlify Build events.
func corpusEvents(t testing.TB, n int) [][]byte { return sinktest.NetlifyEvents(t, 42, n, mapNow) }

// records packs raw events into records of per events, with sequence
// numbers from first.
func records(t testing.TB, raws [][]byte, per, first int) []processor.Record {
	return sinktest.Pack(t, raws, per, first)
}
