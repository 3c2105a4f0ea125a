package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/testkit"
)

var received = time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC)

func normalize(t testing.TB, body []byte, shape Shape, typ Type) ([]*Event, error) {
	t.Helper()
	r, err := DecodeRequest(body, shape, typ, 0)
	if err != nil {
		return nil, err
	}
	n := &Normalizer{NewID: func() string { return "minted" }}
	return n.Normalize(r, Meta{Source: "src", ReceivedAt: received})
}

func str(t testing.TB, e *Event, path string) string {
	t.Helper()
	s, _ := e.LookupString(path)
	return s
}

func TestNormalizeNetlifyBuild(t *testing.T) {
	body := testkit.ClientPayload(t, "netlify-build-track.json")
	evs, err := normalize(t, body, Single, Track)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0]
	if !strings.HasPrefix(e.MessageID, "gw-") || len(e.MessageID) != 35 {
		t.Errorf("messageId = %q, want a derived gw- ID", e.MessageID)
	}
	// Same bytes, same source: same ID, so client retries collapse.
	again, _ := normalize(t, body, Single, Track)
	if again[0].MessageID != e.MessageID {
		t.Errorf("derived messageId not stable: %q vs %q", again[0].MessageID, e.MessageID)
	}
	for path, want := range map[string]string{
		"type":                    "track",
		"event":                   "build:ci_build_process_completed",
		"userId":                  "buildbot_user",
		"timestamp":               "2024-06-10T06:13:20.000Z",
		"originalTimestamp":       "2024-06-10T06:13:20.000Z",
		"receivedAt":              "2026-11-27T22:00:00.000Z",
		"source":                  "src",
		"properties.buildVersion": "29.50.1",
		"properties.steps":        "4",
	} {
		if got := str(t, e, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if e.Name != "build:ci_build_process_completed" || e.Type != Track || e.UserID != "buildbot_user" {
		t.Errorf("typed fields = %+v", e)
	}
	// Round trip through JSON keeps everything.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.MessageID != e.MessageID || !back.Timestamp.Equal(e.Timestamp) || !back.ReceivedAt.Equal(received) {
		t.Errorf("round trip: got %+v, want %+v", back, e)
	}
	plugins, _ := back.Lookup("properties.plugins")
	if !strings.Contains(string(plugins), "@netlify/plugin-nextjs") {
		t.Errorf("plugins lost: %s", plugins)
	}
}

func TestNormalizeLegacyCollect(t *testing.T) {
	evs, err := normalize(t, testkit.ClientPayload(t, "netlify-build-legacy-collect.json"), Legacy, Track)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0]
	if got := str(t, e, "timestamp"); got != "2020-09-13T12:26:40.000Z" {
		t.Errorf("timestamp = %q, want meta.timestamp", got)
	}
	if e.UserID != "" || e.Field("userId") != nil {
		t.Errorf("null userId should be dropped, got %q", e.Field("userId"))
	}
	if e.AnonymousID != "0b5a8f1e-3c2d-4e6f-9a7b-1c2d3e4f5a6b" {
		t.Errorf("anonymousId = %q", e.AnonymousID)
	}
	if e.Field("meta") == nil || e.Field("options") == nil {
		t.Error("unknown fields meta and options must be kept")
	}
	evs, err = normalize(t, testkit.ClientPayload(t, "netlify-build-legacy-identify.json"), Legacy, Identify)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Type != Identify || str(t, evs[0], "traits.email") != "ada@example.com" {
		t.Errorf("legacy identify = %s", mustMarshal(t, evs[0]))
	}
	if evs[0].MessageID != "minted" {
		t.Errorf("no timestamp: messageId = %q, want a minted one", evs[0].MessageID)
	}
}

func TestNormalizeAnalyticsNodeBatch(t *testing.T) {
	body := testkit.ClientPayload(t, "analytics-node-batch.json")
	r, err := DecodeRequest(body, Batch, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.WriteKey != "test-write-key" || r.Len() != 2 {
		t.Fatalf("writeKey %q, len %d", r.WriteKey, r.Len())
	}
	evs, err := (&Normalizer{}).Normalize(r, Meta{Source: "node", ReceivedAt: received})
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].MessageID != "node-next-1795816556066-190392a3-1e1b-4164-a92a-bdad57ac1671" {
		t.Errorf("client messageId not kept: %q", evs[0].MessageID)
	}
	// sentAt is 7 ms after the event: the corrected timestamp is 7 ms
	// before receivedAt.
	if got := str(t, evs[0], "timestamp"); got != "2026-11-27T21:59:59.993Z" {
		t.Errorf("skew-corrected timestamp = %q", got)
	}
	if got := str(t, evs[0], "originalTimestamp"); got != "2026-11-27T21:55:56.066Z" {
		t.Errorf("originalTimestamp = %q", got)
	}
	if got := str(t, evs[1], "sentAt"); got != "2026-11-27T21:55:56.073Z" {
		t.Errorf("batch sentAt not applied: %q", got)
	}
	if evs[0].Field("writeKey") != nil {
		t.Error("writeKey must not be stored")
	}
	if evs[1].Type != Identify || str(t, evs[1], "traits.plan") != "pro" {
		t.Errorf("identify = %s", mustMarshal(t, evs[1]))
	}
	if str(t, evs[0], "_metadata.jsRuntime") != "node" {
		t.Error("unknown field _metadata lost")
	}
}

func TestNormalizeBatchContextMerge(t *testing.T) {
	body := `{"batch":[{"type":"track","event":"e","userId":"u","context":{"ip":"1.2.3.4"}}],"context":{"ip":"9.9.9.9","locale":"fr"},"integrations":{"All":false}}`
	evs, err := normalize(t, []byte(body), Batch, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := str(t, evs[0], "context.ip"); got != "1.2.3.4" {
		t.Errorf("event context must win: ip = %q", got)
	}
	if got := str(t, evs[0], "context.locale"); got != "fr" {
		t.Errorf("batch context not merged: locale = %q", got)
	}
	if got := str(t, evs[0], "integrations.All"); got != "false" {
		t.Errorf("batch integrations not merged: %q", got)
	}
}

func TestNormalizeTimestamps(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"epoch ms", `{"event":"e","userId":"u","timestamp":1718000000123}`, "2024-06-10T06:13:20.123Z"},
		{"epoch ms string", `{"event":"e","userId":"u","timestamp":"1718000000123"}`, "2024-06-10T06:13:20.123Z"},
		{"iso zulu", `{"event":"e","userId":"u","timestamp":"2024-06-10T06:13:20.123Z"}`, "2024-06-10T06:13:20.123Z"},
		{"iso offset", `{"event":"e","userId":"u","timestamp":"2024-06-10T08:13:20.123+02:00"}`, "2024-06-10T06:13:20.123Z"},
		{"none", `{"event":"e","userId":"u"}`, "2026-11-27T22:00:00.000Z"},
		{"skew", `{"event":"e","userId":"u","timestamp":"2026-11-27T23:00:00.000Z","sentAt":"2026-11-27T23:00:01.000Z"}`, "2026-11-27T21:59:59.000Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := normalize(t, []byte(tc.body), Single, Track)
			if err != nil {
				t.Fatal(err)
			}
			if got := str(t, evs[0], "timestamp"); got != tc.want {
				t.Errorf("timestamp = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNormalizeRejects(t *testing.T) {
	big := `{"event":"e","userId":"u","properties":{"x":"` + strings.Repeat("a", 33000) + `"}}`
	for _, tc := range []struct {
		name, body string
		shape      Shape
		kind       ErrorKind
		want       string
	}{
		{"malformed", `{"event":`, Single, Invalid, "malformed JSON"},
		{"not object", `[1,2]`, Single, Invalid, "JSON object"},
		{"empty", ``, Single, Invalid, "empty body"},
		{"no identity", `{"event":"e"}`, Single, Invalid, "userId and anonymousId"},
		{"no event name", `{"userId":"u"}`, Single, Invalid, "event: missing"},
		{"event wrong type", `{"userId":"u","event":5}`, Single, Invalid, "event: want a string"},
		{"userId wrong type", `{"userId":{"a":1},"event":"e"}`, Single, Invalid, "userId: want a string or a number"},
		{"properties wrong type", `{"userId":"u","event":"e","properties":[1]}`, Single, Invalid, "properties: want an object"},
		{"bad timestamp", `{"userId":"u","event":"e","timestamp":"yesterday"}`, Single, Invalid, "not ISO-8601"},
		{"long messageId", `{"userId":"u","event":"e","messageId":"` + strings.Repeat("m", 100) + `"}`, Single, Invalid, "over the limit of 99"},
		{"too large", big, Single, TooLarge, "over the limit of 32768"},
		{"empty batch", `{"batch":[]}`, Batch, Invalid, "batch: empty"},
		{"batch missing", `{"events":[]}`, Batch, Invalid, "batch: missing"},
		{"batch not array", `{"batch":{}}`, Batch, Invalid, "want an array"},
		{"batch item type", `{"batch":[{"userId":"u","event":"e"}]}`, Batch, Invalid, "batch[0].type: missing"},
		{"batch unknown type", `{"batch":[{"type":"trak","userId":"u","event":"e"}]}`, Batch, Invalid, `unknown type "trak"`},
		{"batch item too large", `{"batch":[{"type":"track","userId":"u","event":"e"},` + big + `]}`, Batch, TooLarge, "batch[1]"},
		{"batch item not object", `{"batch":[1]}`, Batch, Invalid, "batch[0]: want a JSON object"},
		{"writeKey wrong type", `{"userId":"u","event":"e","writeKey":1}`, Single, Invalid, "writeKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := normalize(t, []byte(tc.body), tc.shape, Track)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a ValidationError", err)
			}
			if ve.Kind != tc.kind || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q (kind %d), want %q (kind %d)", err, ve.Kind, tc.want, tc.kind)
			}
		})
	}
}

func TestNumericUserID(t *testing.T) {
	evs, err := normalize(t, []byte(`{"userId":42,"event":"e"}`), Single, Track)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].UserID != "42" || string(evs[0].Field("userId")) != `"42"` {
		t.Errorf("userId = %q / %s, want the string 42", evs[0].UserID, evs[0].Field("userId"))
	}
}

func TestLibraryFromHeaders(t *testing.T) {
	r, _ := DecodeRequest(testkit.ClientPayload(t, "netlify-build-legacy-collect.json"), Legacy, Track, 0)
	evs, err := (&Normalizer{}).Normalize(r, Meta{ReceivedAt: received, LibraryName: "NETLIFY_CI", LibraryVersion: "4.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := str(t, evs[0], "context.library.version"); got != "4.1.0" {
		t.Errorf("context.library.version = %q", got)
	}
}

func mustMarshal(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Enabled follows Segment's rules for an integrations object: the
// destination's own key, else All, else on; false is off, true or an
// object of options is on.
func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		integrations string
		dest         string
		want         bool
	}{
		{"", "Google Analytics 4", true},
		{`{}`, "Google Analytics 4", true},
		{`{"All":false}`, "Google Analytics 4", false},
		{`{"All":false,"Segment.io":true}`, "Segment.io", true},
		{`{"All":false,"Segment.io":true}`, "Google Analytics 4", false},
		{`{"Google Analytics 4":false}`, "Google Analytics 4", false},
		{`{"Google Analytics 4":false}`, "Amazon S3", true},
		{`{"All":false,"Build Counts":{"note":"options"}}`, "Build Counts", true},
		{`{"All":true,"Amazon S3":false}`, "Amazon S3", false},
	} {
		body := `{"messageId":"m","type":"track","event":"e","userId":"u"`
		if tc.integrations != "" {
			body += `,"integrations":` + tc.integrations
		}
		e, err := Parse([]byte(body + "}"))
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Enabled(tc.dest); got != tc.want {
			t.Errorf("integrations %s, %q: %v, want %v", tc.integrations, tc.dest, got, tc.want)
		}
	}
}

// Timestamps are corrected by sentAt before any range check: a client
// clock at 1970 sending both is right after correction. A time that stays
// implausible (before 2000, or more than a day after receivedAt) becomes
// receivedAt, and originalTimestamp keeps what the client sent.
func TestImplausibleTimestamps(t *testing.T) {
	received := time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, body          string
		timestamp, original string
	}{
		{"clock at 1970 with sentAt", `{"userId":"u","event":"e","timestamp":"1970-01-01T00:00:10.000Z","sentAt":"1970-01-01T00:00:12.000Z"}`,
			"2026-11-27T21:59:58.000Z", "1970-01-01T00:00:10.000Z"},
		{"epoch seconds", `{"userId":"u","event":"e","timestamp":1718000000}`, "2026-11-27T22:00:00.000Z", "1970-01-20T21:13:20.000Z"},
		{"far future", `{"userId":"u","event":"e","timestamp":"2099-01-01T00:00:00.000Z"}`, "2026-11-27T22:00:00.000Z", "2099-01-01T00:00:00.000Z"},
		{"plausible", `{"userId":"u","event":"e","timestamp":"2026-11-27T21:00:00.000Z"}`, "2026-11-27T21:00:00.000Z", "2026-11-27T21:00:00.000Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeRequest([]byte(tc.body), Single, Track, 0)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := (&Normalizer{}).Normalize(req, Meta{Source: "s", ReceivedAt: received})
			if err != nil {
				t.Fatal(err)
			}
			ts, _ := evs[0].LookupString(FieldTimestamp)
			orig, _ := evs[0].LookupString(FieldOriginalTimestamp)
			if ts != tc.timestamp || orig != tc.original {
				t.Errorf("timestamp %s, originalTimestamp %s; want %s and %s", ts, orig, tc.timestamp, tc.original)
			}
		})
	}
}
