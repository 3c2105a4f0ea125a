package gateway

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
)

// fakeWriter records what the handler writes; err, when set, is returned
// instead.
type fakeWriter struct {
	mu   sync.Mutex
	msgs []Message
	err  error
}

func (f *fakeWriter) Write(ctx context.Context, msgs []Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.msgs = append(f.msgs, msgs...)
	return nil
}

func (f *fakeWriter) events(t testing.TB) []*event.Event {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*event.Event, len(f.msgs))
	for i, m := range f.msgs {
		e, err := event.Parse(m.Data)
		if err != nil {
			t.Fatalf("written message %d does not parse: %v", i, err)
		}
		if e.MessageID != m.ID {
			t.Fatalf("message ID %q != event messageId %q", m.ID, e.MessageID)
		}
		out[i] = e
	}
	return out
}

const testKey = "test-write-key"

func newTestHandler(t testing.TB, w EventWriter) *Handler {
	t.Helper()
	h, err := NewHandler(w, Config{
		WriteKeys:    map[string]string{testKey: "test-source", "other-key": "other"},
		LegacySource: "legacy",
		Now:          func() time.Time { return time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC) },
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func clientBody(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "clients", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

type req struct {
	method, path, body string
	header             map[string]string
	gzip               bool
}

func do(t testing.TB, h http.Handler, r req) *httptest.ResponseRecorder {
	t.Helper()
	r.method = cmp.Or(r.method, http.MethodPost)
	var body io.Reader = strings.NewReader(r.body)
	if r.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(r.body))
		zw.Close()
		body = &buf
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.gzip {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	return rec
}

func TestIngestAcceptedShapes(t *testing.T) {
	auth := map[string]string{"Authorization": basic(testKey), "Content-Type": "application/json"}
	for _, tc := range []struct {
		name   string
		r      req
		events int
		check  func(t *testing.T, evs []*event.Event)
	}{
		{"netlify build /v1/track", req{path: "/v1/track", body: clientBody(t, "netlify-build-track.json"), header: auth}, 1, func(t *testing.T, evs []*event.Event) {
			e := evs[0]
			if e.Source != "test-source" || e.Name != "build:ci_build_process_completed" || e.Timestamp.UnixMilli() != 1718000000000 {
				t.Errorf("got %+v", e)
			}
			if v, _ := e.LookupString("properties.buildVersion"); v != "29.50.1" {
				t.Errorf("buildVersion = %q", v)
			}
		}},
		{"analytics-node /v1/batch", req{path: "/v1/batch", body: clientBody(t, "analytics-node-batch.json"), header: auth}, 2, func(t *testing.T, evs []*event.Event) {
			if evs[0].MessageID != "node-next-1795816556066-190392a3-1e1b-4164-a92a-bdad57ac1671" || evs[1].Type != event.Identify {
				t.Errorf("got %s, %s", evs[0].MessageID, evs[1].Type)
			}
		}},
		{"batch with body writeKey only", req{path: "/v1/batch", body: clientBody(t, "analytics-node-batch.json")}, 2, nil},
		{"analytics.js /v1/t text/plain", req{path: "/v1/t", body: clientBody(t, "analytics-js-track.json"), header: map[string]string{"Content-Type": "text/plain", "Origin": "http://127.0.0.1:18130"}}, 1, func(t *testing.T, evs []*event.Event) {
			if evs[0].Type != event.Track || evs[0].Name != "Signed Up" {
				t.Errorf("got %+v", evs[0])
			}
		}},
		{"gzip form-encoded like rudder", req{path: "/v1/batch", body: clientBody(t, "analytics-node-batch.json"), gzip: true, header: map[string]string{"Authorization": basic(testKey), "Content-Type": "application/x-www-form-urlencoded"}}, 2, nil},
		{"legacy /collect without key", req{path: "/collect", body: clientBody(t, "netlify-build-legacy-collect.json"), header: map[string]string{"X-Netlify-Client": "NETLIFY_CI", "X-Netlify-Client-Version": "4.1.0"}}, 1, func(t *testing.T, evs []*event.Event) {
			if evs[0].Source != "legacy" || evs[0].Timestamp.UnixMilli() != 1600000000000 {
				t.Errorf("got %+v", evs[0])
			}
			if v, _ := evs[0].LookupString("context.library.version"); v != "4.1.0" {
				t.Errorf("library version = %q", v)
			}
		}},
		{"legacy /identify", req{path: "/identify", body: clientBody(t, "netlify-build-legacy-identify.json")}, 1, func(t *testing.T, evs []*event.Event) {
			if evs[0].Type != event.Identify {
				t.Errorf("type = %s", evs[0].Type)
			}
		}},
		{"legacy with a key", req{path: "/collect", body: clientBody(t, "netlify-build-legacy-collect.json"), header: map[string]string{"Authorization": basic("other-key")}}, 1, func(t *testing.T, evs []*event.Event) {
			if evs[0].Source != "other" {
				t.Errorf("source = %q", evs[0].Source)
			}
		}},
		{"identify", req{path: "/v1/identify", body: `{"userId":"u","traits":{"a":1}}`, header: auth}, 1, nil},
		{"i", req{path: "/v1/i", body: `{"anonymousId":"a","traits":{"a":1}}`, header: auth}, 1, nil},
		{"page", req{path: "/v1/page", body: `{"userId":"u","name":"Home"}`, header: auth}, 1, nil},
		{"p", req{path: "/v1/p", body: `{"userId":"u"}`, header: auth}, 1, nil},
		{"screen", req{path: "/v1/screen", body: `{"userId":"u","name":"Main"}`, header: auth}, 1, nil},
		{"s", req{path: "/v1/s", body: `{"userId":"u"}`, header: auth}, 1, nil},
		{"group", req{path: "/v1/group", body: `{"userId":"u","groupId":"g"}`, header: auth}, 1, nil},
		{"g", req{path: "/v1/g", body: `{"userId":"u","groupId":7}`, header: auth}, 1, nil},
		{"alias", req{path: "/v1/alias", body: `{"userId":"u","previousId":"p"}`, header: auth}, 1, nil},
		{"a", req{path: "/v1/a", body: `{"userId":"u","previousId":"p"}`, header: auth}, 1, nil},
		{"import", req{path: "/v1/import", body: `{"batch":[{"type":"track","event":"e","userId":"u"}]}`, header: auth}, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{}
			rec := do(t, newTestHandler(t, w), tc.r)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), `"success":true`) {
				t.Errorf("body %s", rec.Body)
			}
			evs := w.events(t)
			if len(evs) != tc.events {
				t.Fatalf("wrote %d events, want %d", len(evs), tc.events)
			}
			for _, e := range evs {
				if e.Field("writeKey") != nil {
					t.Error("writeKey stored in the event")
				}
			}
			if tc.check != nil {
				tc.check(t, evs)
			}
		})
	}
}

func gzipBomb(t testing.TB, size int) string {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write([]byte(`{"userId":"u","event":"e","properties":{"x":"`))
	zw.Write(bytes.Repeat([]byte("a"), size))
	zw.Write([]byte(`"}}`))
	zw.Close()
	return buf.String()
}

// Segment's answer semantics: a request whose body is JSON within the
// limits gets 200 whatever its events; each invalid one is named in the
// answer's rejected list, counted by reason, and written to the stream in
// an envelope only the archive's error output takes, while the valid ones
// go on as usual.
func TestInvalidEventsAccepted(t *testing.T) {
	auth := map[string]string{"Authorization": basic(testKey)}
	big := `{"type":"track","userId":"u","event":"e","properties":{"x":"` + strings.Repeat("a", 33<<10) + `"}}`
	for _, tc := range []struct {
		name       string
		r          req
		valid      int
		rejected   []int
		reason     string
		errorsLike string
	}{
		{"wrong type", req{path: "/v1/track", body: `{"userId":"u","event":["e"]}`, header: auth}, 0, []int{0}, event.RejectedInvalid, "event: want a string"},
		{"properties not object", req{path: "/v1/track", body: `{"userId":"u","event":"e","properties":"x"}`, header: auth}, 0, []int{0}, event.RejectedInvalid, "properties: want an object"},
		{"missing identity", req{path: "/v1/track", body: `{"event":"e"}`, header: auth}, 0, []int{0}, event.RejectedInvalid, "userId and anonymousId"},
		{"one bad item of a batch", req{path: "/v1/batch", body: `{"batch":[{"type":"track","userId":"u","event":"e"},{"type":"track","userId":"u"},{"type":"identify","anonymousId":"a"}]}`, header: auth},
			2, []int{1}, event.RejectedInvalid, "batch[1].event: missing"},
		{"an item over the event limit", req{path: "/v1/batch", body: `{"batch":[` + big + `,{"type":"track","userId":"u","event":"e"}]}`, header: auth},
			1, []int{0}, event.RejectedTooLarge, "over the limit of 32768"},
		{"a client marking its own event refused", req{path: "/v1/track", body: `{"userId":"u","event":"e","_rejected":{"reason":"x"}}`, header: auth}, 1, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{}
			reg := prometheus.NewRegistry()
			h, err := NewHandler(w, Config{WriteKeys: map[string]string{testKey: "src"}, Registerer: reg}, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			rec := do(t, h, tc.r)
			var resp struct {
				Success  bool `json:"success"`
				Rejected []struct {
					Index int    `json:"index"`
					Error string `json:"error"`
				} `json:"rejected"`
			}
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil || !resp.Success {
				t.Fatalf("status %d, body %s; want 200 and success", rec.Code, rec.Body)
			}
			var idx []int
			for _, r := range resp.Rejected {
				idx = append(idx, r.Index)
				if !strings.Contains(r.Error, tc.errorsLike) {
					t.Errorf("rejected[%d] error %q, want it to say %q", r.Index, r.Error, tc.errorsLike)
				}
			}
			if !slices.Equal(idx, tc.rejected) {
				t.Errorf("rejected indexes %v, want %v", idx, tc.rejected)
			}
			valid, refused := 0, 0
			for _, e := range w.events(t) {
				if e.Rejected == "" {
					valid++
					if e.Field(event.FieldRejected) != nil {
						t.Error("a valid event kept a client's _rejected field")
					}
					continue
				}
				refused++
				if e.Rejected != tc.reason || e.Field("rawEvent") == nil && e.Field("rawEventTruncated") == nil {
					t.Errorf("envelope %s: reason %q, want %q, with the event kept", e.MessageID, e.Rejected, tc.reason)
				}
			}
			if valid != tc.valid || refused != len(tc.rejected) {
				t.Errorf("stream got %d valid events and %d envelopes, want %d and %d", valid, refused, tc.valid, len(tc.rejected))
			}
			if tc.reason != "" {
				if got := testutil.ToFloat64(h.metrics.rejectedEvents.WithLabelValues(tc.reason)); got != float64(len(tc.rejected)) {
					t.Errorf("rejected events metric %v, want %d", got, len(tc.rejected))
				}
			}
		})
	}
}

func TestIngestRejects(t *testing.T) {
	auth := map[string]string{"Authorization": basic(testKey)}
	bigEvent := `{"userId":"u","event":"e","properties":{"x":"` + strings.Repeat("a", 33<<10) + `"}}`
	var items []string
	for i := 0; i < 20; i++ {
		items = append(items, `{"type":"track","userId":"u","event":"e","properties":{"x":"`+strings.Repeat("b", 30<<10)+`"}}`)
	}
	bigRequest := `{"batch":[` + strings.Join(items, ",") + `]}`
	bomb := gzipBomb(t, 10<<20)
	for _, tc := range []struct {
		name   string
		r      req
		status int
		want   string
	}{
		{"malformed JSON", req{path: "/v1/track", body: `{"userId":"u",`, header: auth}, 400, "malformed JSON"},
		{"event too large", req{path: "/v1/track", body: bigEvent, header: auth}, 400, "over the limit of 32768"},
		{"request too large", req{path: "/v1/batch", body: bigRequest, header: auth}, 400, "over the limit of 512000"},
		{"gzip bomb", req{path: "/v1/track", body: bomb, header: map[string]string{"Authorization": basic(testKey), "Content-Encoding": "gzip"}}, 400, "after decompression"},
		{"not gzip", req{path: "/v1/track", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic(testKey), "Content-Encoding": "gzip"}}, 400, "not valid gzip"},
		{"brotli", req{path: "/v1/track", body: `x`, header: map[string]string{"Authorization": basic(testKey), "Content-Encoding": "br"}}, 415, "not supported"},
		{"invalid UTF-8", req{path: "/v1/track", body: "{\"userId\":\"u\",\"event\":\"\xff\xfe\"}", header: auth}, 400, "UTF-8"},
		{"UTF-16 body", req{path: "/v1/track", body: "\xff\xfe{\x00}\x00", header: auth}, 400, "UTF-8"},
		{"unknown write key", req{path: "/v1/track", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic("nope")}}, 401, "unknown write key"},
		{"unknown body write key", req{path: "/v1/batch", body: `{"writeKey":"nope","batch":[{"type":"track","userId":"u","event":"e"}]}`}, 401, "unknown write key"},
		{"missing write key", req{path: "/v1/track", body: `{"userId":"u","event":"e"}`}, 401, "missing write key"},
		{"empty batch", req{path: "/v1/batch", body: `{"batch":[]}`, header: auth}, 400, "batch: empty"},
		{"unknown path", req{path: "/v2/track", body: `{}`, header: auth}, 404, "no such path /v2/track"},
		{"wrong method", req{method: "GET", path: "/v1/track", header: auth}, 405, "method GET not allowed"},
		{"put on batch", req{method: "PUT", path: "/v1/batch", body: `{}`, header: auth}, 405, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{}
			rec := do(t, newTestHandler(t, w), tc.r)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			var resp struct {
				Success bool   `json:"success"`
				Error   string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("error body is not JSON: %s", rec.Body)
			}
			if resp.Success || !strings.Contains(resp.Error, tc.want) {
				t.Errorf("error %q, want it to contain %q", resp.Error, tc.want)
			}
			if len(w.msgs) != 0 {
				t.Errorf("a rejected request wrote %d events", len(w.msgs))
			}
		})
	}
}

func TestIngestBackpressure(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{
		{ErrBufferFull, 429},
		{ErrUnavailable, 503},
		{ErrInvalidMessage, 400},
		{ErrClosed, 503},
		{context.DeadlineExceeded, 503},
		{errors.New("boom"), 500},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			rec := do(t, newTestHandler(t, &fakeWriter{err: tc.err}), req{path: "/v1/track", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic(testKey)}})
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if ra := rec.Header().Get("Retry-After"); (tc.status == 429 || tc.status == 503) && ra != "1" {
				t.Errorf("Retry-After = %q, want 1", ra)
			}
		})
	}
}

// CORS: any origin by default, as "*" and never with credentials; with
// a list, only those origins, reflected.
func TestCORS(t *testing.T) {
	preflight := req{method: "OPTIONS", path: "/v1/i", header: map[string]string{
		"Origin": "http://127.0.0.1:18130", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization",
	}}
	post := func(origin string) req {
		return req{path: "/v1/t", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic(testKey), "Origin": origin}}
	}
	h := newTestHandler(t, &fakeWriter{})
	rec := do(t, h, preflight)
	hdr := rec.Header()
	if rec.Code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(strings.ToLower(hdr.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight: %d %v", rec.Code, hdr)
	}
	rec = do(t, h, post("https://example.com"))
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" || rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("POST from any origin: %v; want * without credentials", rec.Header())
	}

	h, err := NewHandler(&fakeWriter{}, Config{WriteKeys: map[string]string{testKey: "s"}, CORSOrigins: []string{"https://app.example.com/", "http://127.0.0.1:18130"}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got := do(t, h, preflight).Header().Get("Access-Control-Allow-Origin"); got != "http://127.0.0.1:18130" {
		t.Errorf("preflight from a listed origin: Allow-Origin %q", got)
	}
	if rec := do(t, h, post("https://app.example.com")); rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" || rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("POST from a listed origin: %v", rec.Header())
	}
	if rec := do(t, h, post("https://evil.example.com")); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST from an unlisted origin allowed: %v", rec.Header())
	}
}

// /readyz answers on the public port: it never says why it is not ready.
func TestHealth(t *testing.T) {
	var readyErr error
	h, err := NewHandler(&fakeWriter{}, Config{WriteKeys: map[string]string{"k": "s"}, Ready: func(context.Context) error { return readyErr }}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(t, h, req{method: "GET", path: "/healthz"}); rec.Code != 200 {
		t.Errorf("healthz %d", rec.Code)
	}
	if rec := do(t, h, req{method: "GET", path: "/readyz"}); rec.Code != 200 {
		t.Errorf("readyz %d", rec.Code)
	}
	readyErr = errors.New("describe stream: AccessDenied: arn:aws:iam::123456789012:role/gateway")
	if rec := do(t, h, req{method: "GET", path: "/readyz"}); rec.Code != 503 || strings.Contains(rec.Body.String(), "AccessDenied") || strings.Contains(rec.Body.String(), "1234") {
		t.Errorf("readyz when not ready: %d %s; want 503 without the error", rec.Code, rec.Body)
	}
}

// context.ip: from the connection, or the entry of X-Forwarded-For that
// the trusted proxies put there; never over what the client set; and
// truncated to its network on request.
func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		trusted  int
		truncate bool
		xff      []string
		body     string
		want     string
	}{
		{name: "connection", want: "192.0.2.7"},
		{name: "forwarded header ignored without trusted proxies", xff: []string{"203.0.113.9"}, want: "192.0.2.7"},
		{name: "one trusted proxy", trusted: 1, xff: []string{"10.9.9.9, 203.0.113.9"}, want: "203.0.113.9"},
		{name: "two trusted proxies, two headers", trusted: 2, xff: []string{"1.1.1.1, 203.0.113.9", "10.0.0.2"}, want: "203.0.113.9"},
		{name: "fewer hops than proxies", trusted: 3, xff: []string{"203.0.113.9"}, want: "192.0.2.7"},
		{name: "truncated IPv4", trusted: 1, truncate: true, xff: []string{"203.0.113.9"}, want: "203.0.113.0"},
		{name: "truncated IPv6", trusted: 1, truncate: true, xff: []string{"2001:db8:abcd:12::1"}, want: "2001:db8:abcd::"},
		{name: "client's own", body: `{"userId":"u","event":"e","context":{"ip":"198.51.100.1"}}`, want: "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{}
			h, err := NewHandler(w, Config{WriteKeys: map[string]string{testKey: "s"}, TrustedProxies: tc.trusted, TruncateIP: tc.truncate}, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			body := tc.body
			body = cmp.Or(body, `{"userId":"u","event":"e"}`)
			r := httptest.NewRequest("POST", "/v1/track", strings.NewReader(body))
			r.RemoteAddr = "192.0.2.7:41234"
			r.Header.Set("Authorization", basic(testKey))
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			e := w.events(t)[0]
			if got, _ := e.LookupString("context.ip"); got != tc.want {
				t.Errorf("context.ip = %v, want %s", got, tc.want)
			}
		})
	}
}

// Per-key rate limits: a source over its rate gets 429 with a Retry-After
// of when its bucket holds the request again, counted per source; other
// sources are not affected.
func TestKeyRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	h, err := NewHandler(&fakeWriter{}, Config{WriteKeys: map[string]string{testKey: "browser", "other-key": "ci"},
		KeyRate: 10, KeyBurst: 20, Registerer: reg, Now: func() time.Time { return now }}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	batch := func(key string, n int) *httptest.ResponseRecorder {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"type":"track","userId":"u","event":"e","messageId":"m%d"}`, i)
		}
		return do(t, h, req{path: "/v1/batch", body: `{"batch":[` + strings.Join(items, ",") + `]}`, header: map[string]string{"Authorization": basic(key)}})
	}
	if rec := batch(testKey, 15); rec.Code != 200 {
		t.Fatalf("first 15 events: %d", rec.Code)
	}
	rec := batch(testKey, 15)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("15 more at once: %d, Retry-After %q; want 429 and 1 (10 tokens short at 10/s)", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := batch("other-key", 15); rec.Code != 200 {
		t.Errorf("another source: %d, want 200", rec.Code)
	}
	if rec := batch(testKey, 30); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "3" {
		t.Errorf("30 events, more than a full bucket: %d, Retry-After %q; want 429 and 3", rec.Code, rec.Header().Get("Retry-After"))
	}
	now = now.Add(time.Second)
	if rec := batch(testKey, 15); rec.Code != 200 {
		t.Errorf("a second later: %d, want 200", rec.Code)
	}
	if got := testutil.ToFloat64(h.metrics.rateLimited.WithLabelValues("browser")); got != 45 {
		t.Errorf("rate-limited events of browser = %v, want 45", got)
	}
}

// Write keys can be replaced while serving: the old key stops working,
// the new one works.
func TestSetWriteKeys(t *testing.T) {
	h := newTestHandler(t, &fakeWriter{})
	send := func(key string) int {
		return do(t, h, req{path: "/v1/t", body: `{"userId":"u","event":"e"}`, header: map[string]string{"Authorization": basic(key)}}).Code
	}
	if err := h.SetWriteKeys(map[string]string{"rotated": "test-source"}); err != nil {
		t.Fatal(err)
	}
	if a, b := send(testKey), send("rotated"); a != 401 || b != 200 {
		t.Errorf("after rotation: old key %d, new key %d; want 401 and 200", a, b)
	}
	if err := h.SetWriteKeys(map[string]string{"": "x"}); err == nil {
		t.Error("an empty key accepted")
	}
	if send("rotated") != 200 {
		t.Error("a rejected reload replaced the keys")
	}
}

func TestWriteKeys(t *testing.T) {
	keys, err := ParseWriteKeys(" a=one, b=two ,")
	if err != nil || len(keys) != 2 || keys["b"] != "two" {
		t.Fatalf("got %v, %v", keys, err)
	}
	if _, err := ParseWriteKeys("secretkey"); err == nil || strings.Contains(err.Error(), "secretkey") {
		t.Errorf("a malformed entry must fail without echoing the secret: %v", err)
	}
	wk, _ := NewWriteKeys(keys)
	if src, ok := wk.Lookup("a"); !ok || src != "one" {
		t.Errorf("Lookup(a) = %q, %v", src, ok)
	}
	if _, ok := wk.Lookup("c"); ok {
		t.Error("Lookup(c) found a source")
	}
	if _, err := NewHandler(&fakeWriter{}, Config{}, zap.NewNop()); err == nil {
		t.Error("a handler with no keys and no legacy source must be refused")
	}
}

// A negative setting is an error naming it, not a silent default.
func TestNewHandlerRefusesNegativeSettings(t *testing.T) {
	for name, cfg := range map[string]Config{
		"MaxEventBytes": {MaxEventBytes: -1},
		"AckTimeout":    {AckTimeout: -time.Second},
		"BodyTimeout":   {BodyTimeout: -time.Second},
		"KeyRate":       {KeyRate: -1},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.WriteKeys = map[string]string{testKey: "s"}
			if _, err := NewHandler(&fakeWriter{}, cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("NewHandler: %v, want an error naming %s", err, name)
			}
		})
	}
}
