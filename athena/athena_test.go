package athena_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/athena"
	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/testkit/mems3"
	"github.com/buildtelemetry/pipeline/processor"
	s3sink "github.com/buildtelemetry/pipeline/sink/s3"
)

const testBucket = "telemetry-test"

// jsonText are the string paths the DDL documents as holding any JSON
// value's text (see its comment on properties.plugins).
var jsonText = map[string]bool{"properties.plugins[]": true}

func mustParse(t testing.TB, bucket string) *table {
	t.Helper()
	tbl, err := parseDDL(athena.DDL(bucket, ""))
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// The statement is what Athena's partition projection over the sink's
// layout needs.
func TestDDL(t *testing.T) {
	tbl := mustParse(t, testBucket)
	want := map[string]string{
		"projection.enabled":                "true",
		"projection.datehour.type":          "date",
		"projection.datehour.format":        "yyyy/MM/dd/HH",
		"projection.datehour.interval":      "1",
		"projection.datehour.interval.unit": "HOURS",
		"storage.location.template":         "s3://" + testBucket + "/events/${datehour}/",
	}
	for k, v := range want {
		if tbl.props[k] != v {
			t.Errorf("TBLPROPERTIES %s = %q, want %q", k, tbl.props[k], v)
		}
	}
	if tbl.partitionKey != "datehour" || tbl.partitionTyp != "string" {
		t.Errorf("PARTITIONED BY (%s %s), want (datehour string)", tbl.partitionKey, tbl.partitionTyp)
	}
	if tbl.location+"${datehour}/" != tbl.props["storage.location.template"] {
		t.Errorf("LOCATION %s is not the template's prefix %s", tbl.location, tbl.props["storage.location.template"])
	}
	if tbl.serde != "org.openx.data.jsonserde.JsonSerDe" || tbl.serdeProps["case.insensitive"] != "true" {
		t.Errorf("SerDe %s %v, want the OpenX JsonSerDe, case-insensitive", tbl.serde, tbl.serdeProps)
	}
	start, end, ok := strings.Cut(tbl.props["projection.datehour.range"], ",")
	if _, err := time.Parse(goLayout(t, tbl.props["projection.datehour.format"]), start); !ok || end != "NOW" || err != nil {
		t.Errorf("range %q: want <start in the format>,NOW (%v)", tbl.props["projection.datehour.range"], err)
	}
	var names []string
	for _, c := range tbl.columns {
		names = append(names, c.name)
	}
	for _, col := range []string{"messageid", "type", "event", "userid", "anonymousid", "timestamp", "originaltimestamp", "sentat", "receivedat", "source", "properties", "context"} {
		if !slices.Contains(names, col) {
			t.Errorf("no column %s in %v", col, names)
		}
	}
	if got := athena.DDL("b", "tel"); !strings.Contains(got, "LOCATION 's3://b/tel/'") || !strings.Contains(got, "'s3://b/tel/${datehour}/'") {
		t.Errorf("DDL(b, tel) does not point at s3://b/tel/")
	}
}

// goLayout turns the projection's Java date format into a Go layout.
func goLayout(t testing.TB, java string) string {
	t.Helper()
	r := strings.NewReplacer("yyyy", "2006", "MM", "01", "dd", "02", "HH", "15")
	l := r.Replace(java)
	if strings.ContainsAny(l, "yMdHhmsS") {
		t.Fatalf("format %q has fields this test does not know", java)
	}
	return l
}

// formatRE turns the projection's Java date format into a regexp.
func formatRE(java string) string {
	r := strings.NewReplacer("yyyy", `\d{4}`, "MM", `\d{2}`, "dd", `\d{2}`, "HH", `\d{2}`)
	return r.Replace(regexp.QuoteMeta(java))
}

// The queries deduplicate on messageId and prune partitions.
func TestQueries(t *testing.T) {
	q := athena.Queries()
	queries := strings.Split(q, "-- name: ")[1:]
	if len(queries) < 2 {
		t.Fatalf("%d named queries, want the dedup and the version adoption ones", len(queries))
	}
	for _, body := range queries {
		name, _, _ := strings.Cut(body, "\n")
		if !strings.Contains(body, "datehour") {
			t.Errorf("%s: no datehour filter: it would read every hour", name)
		}
		if name != "duplicate_rate" && !regexp.MustCompile(`row_number\(\) OVER \(PARTITION BY messageid`).MatchString(body) {
			t.Errorf("%s: does not deduplicate on messageid", name)
		}
	}
	for _, name := range []string{"events_deduplicated", "build_version_adoption"} {
		if !strings.Contains(q, "-- name: "+name+"\n") {
			t.Errorf("no query %s", name)
		}
	}
}

// Objects written by the sink are where the table's projection looks,
// and every line reads as the table's columns declare.
func TestObjectsMatchTable(t *testing.T) {
	mem := mems3.New()
	objects, recs := writeSamples(t, mem, testBucket, mem.Objects)
	checkObjects(t, mustParse(t, testBucket), testBucket, objects, recs)
}

// writeSamples writes every kind of event the gateway accepts through the
// sink, in records arriving across an hour boundary, and returns the
// objects and the records.
func writeSamples(t *testing.T, api s3sink.S3API, bucket string, objects func() map[string][]byte) (map[string][]byte, []processor.Record) {
	t.Helper()
	s, err := s3sink.New(api, s3sink.Config{Bucket: bucket, BufferBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Open(context.Background(), processor.Shard{Stream: "telemetry-events", ID: "shardId-000000000003"})
	if err != nil {
		t.Fatal(err)
	}
	recs := sampleRecords(t, time.Date(2026, 11, 27, 11, 58, 0, 0, time.UTC), 60, 4*time.Second)
	if err := w.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return objects(), recs
}

func checkObjects(t *testing.T, tbl *table, bucket string, objects map[string][]byte, recs []processor.Record) {
	t.Helper()
	// Keys the projection reads: the template with ${datehour} as the
	// format, and the object right in it (not in a subfolder).
	tmpl := tbl.props["storage.location.template"]
	before, after, ok := strings.Cut(regexp.QuoteMeta(tmpl), regexp.QuoteMeta("${datehour}"))
	if !ok {
		t.Fatalf("template %q has no ${datehour}", tmpl)
	}
	format := tbl.props["projection.datehour.format"]
	keyRE := regexp.MustCompile("^" + before + "(" + formatRE(format) + ")" + after + `[^/]+\.gz$`)
	layout := goLayout(t, format)
	rangeStart, _, _ := strings.Cut(tbl.props["projection.datehour.range"], ",")
	start, _ := time.Parse(layout, rangeStart)

	arrival := map[string]time.Time{} // messageId -> its record's arrival
	for _, r := range recs {
		for _, e := range r.Events {
			arrival[e.MessageID] = r.ArrivalTime
		}
	}
	c := &checker{jsonText: jsonText, seen: map[string]bool{}}
	hours := map[string]bool{}
	lines := 0
	for _, key := range slices.Sorted(maps.Keys(objects)) {
		if !strings.HasPrefix(key, s3sink.DefaultPrefix) {
			continue
		}
		m := keyRE.FindStringSubmatch("s3://" + bucket + "/" + key)
		if m == nil {
			t.Errorf("s3://%s/%s is not under the projection template %s", bucket, key, tmpl)
			continue
		}
		hour, err := time.Parse(layout, m[1])
		if err != nil || hour.Before(start) || hour.After(time.Now()) {
			t.Errorf("%s: datehour %s is not a projected partition (%v)", key, m[1], err)
		}
		hours[m[1]] = true
		for _, ln := range readLines(t, key, objects[key]) {
			lines++
			var row map[string]any
			dec := json.NewDecoder(bytes.NewReader(ln))
			dec.UseNumber()
			if err := dec.Decode(&row); err != nil || row == nil {
				t.Errorf("%s: line %q is not a JSON object: %v", key, ln, err)
				continue
			}
			c.checkRow(tbl.columns, row)
			id, _ := row["messageId"].(string)
			if at, ok := arrival[id]; !ok || !at.UTC().Truncate(time.Hour).Equal(hour) {
				t.Errorf("%s: event %s arrived at %v, outside the partition's hour", key, id, at)
			}
		}
	}
	for _, p := range c.problems {
		t.Error(p)
	}
	if want := len(arrival); lines < want {
		t.Errorf("%d lines, want at least %d", lines, want)
	}
	if len(hours) != 2 {
		t.Errorf("partitions %v, want the two hours the records arrived in", slices.Sorted(maps.Keys(hours)))
	}
	// Every declared column and field was filled by some sample: a
	// misspelt name would read as NULL forever.
	for _, p := range paths("", tbl.columns) {
		if !c.seen[p] {
			t.Errorf("no sample event fills %s: misspelt, or a sample is missing", p)
		}
	}
}

// readLines returns the lines of a gzip NDJSON object.
func readLines(t *testing.T, key string, body []byte) [][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 2<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

// samples are requests as the supported clients (testdata/clients) send them, with
// their shape and the path's type.
var samples = []struct {
	name  string
	shape event.Shape
	typ   event.Type
	lib   string // legacy X-Netlify-Client
	body  string
}{
	{"netlify-cli", event.Single, event.Track, "", `{"event":"cli:sites_create","userId":"1234abcd","anonymousId":"2b6c0f3a-cli","duration":123,"status":"success","properties":{"nodejsVersion":"v20.18.1","cliVersion":"17.38.1"}}`},
	{"analytics-node", event.Batch, "", "", `{"batch":[` +
		`{"type":"track","event":"Signed Up","userId":"u-42","messageId":"node-track-1","timestamp":"2026-11-27T11:57:59.000Z","properties":{"plan":"pro"}},` +
		`{"type":"identify","userId":"u-42","messageId":"node-identify-1","traits":{"email":"a@example.com","plan":"pro"}}],` +
		`"sentAt":"2026-11-27T11:58:00.000Z","context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"},"ip":"198.51.100.7"}}`},
	{"analytics.js", event.Single, event.Page, "", `{"anonymousId":"ajs-anon-1","name":"Home","messageId":"ajs-page-1","sentAt":"2026-11-27T11:58:00.100Z","timestamp":"2026-11-27T11:58:00.000Z",` +
		`"properties":{"path":"/","url":"https://example.com/","title":"Home"},` +
		`"context":{"page":{"path":"/","referrer":"https://google.com/","search":"?q=1","title":"Home","url":"https://example.com/?q=1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)",` +
		`"userAgentData":{"brands":[{"brand":"Chromium","version":"130"}],"mobile":false,"platform":"Linux"},"locale":"en-US","timezone":"Europe/Berlin",` +
		`"library":{"name":"analytics.js","version":"next-1.84.3"}},"writeKey":"wk"}`},
	{"legacy", event.Legacy, event.Track, "NETLIFY_CI", `{"type":"track","event":"netlifyCI:buildComplete","options":{},"userId":null,"anonymousId":"6c1f6f0e-legacy",` +
		`"meta":{"rid":"r1","ts":1764244678000,"timestamp":1764244678000},` +
		`"properties":{"steps":4,"duration":1234,"pluginCount":1,"plugins":["netlify-plugin-cache"],"siteId":"s-1","isCI":true,"isNetlifyCI":true,` +
		`"buildVersion":"4.2.0","nodeVersion":"12.18.0","osPlatform":"Linux","osName":"Ubuntu"}}`},
}

// sampleRecords returns n records arriving step apart from at, each
// holding a few Netlify Build corpus events and one of the samples,
// normalised as the gateway does with the record's arrival time as
// receivedAt.
func sampleRecords(t *testing.T, at time.Time, n int, step time.Duration) []processor.Record {
	t.Helper()
	g := corpus.NewNetlify(5)
	norm := &event.Normalizer{}
	var out []processor.Record
	for i := 0; i < n; i++ {
		arrival := at.Add(time.Duration(i) * step)
		r := processor.Record{SequenceNumber: fmt.Sprintf("4959033827149025660855969253836157109592157598913%07d", i+1), ArrivalTime: arrival}
		var evs []*event.Event
		for j := 0; j < 3; j++ {
			req, err := event.DecodeRequest(g.NextJSON(), event.Single, event.Track, 0)
			if err != nil {
				t.Fatal(err)
			}
			e, err := norm.Normalize(req, event.Meta{Source: "netlify-build", ReceivedAt: arrival})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e...)
		}
		sm := samples[i%len(samples)]
		req, err := event.DecodeRequest([]byte(sm.body), sm.shape, sm.typ, 0)
		if err != nil {
			t.Fatalf("sample %s: %v", sm.name, err)
		}
		e, err := norm.Normalize(req, event.Meta{Source: sm.name, ReceivedAt: arrival, LibraryName: sm.lib})
		if err != nil {
			t.Fatalf("sample %s: %v", sm.name, err)
		}
		evs = append(evs, e...)
		for _, e := range evs {
			// Samples repeat: give each copy its own messageId, as
			// separate requests would have.
			id := e.MessageID + "-" + r.SequenceNumber[len(r.SequenceNumber)-2:]
			if err := e.Set(event.FieldMessageID, id); err != nil {
				t.Fatal(err)
			}
			raw := e.AppendJSON(nil)
			pe, err := event.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			r.Events = append(r.Events, pe)
			r.Raw = append(r.Raw, raw)
		}
		out = append(out, r)
	}
	return out
}

// telemetry_errors projects exactly the reasons the pipeline files error
// lines under, at the keys the S3 sink writes them to, with the columns
// of its error lines.
func TestErrorsTable(t *testing.T) {
	ddl := athena.ErrorsDDL("my-bucket", "tel-errors")
	if !strings.Contains(ddl, "LOCATION 's3://my-bucket/tel-errors/'") || !strings.Contains(ddl, "'s3://my-bucket/tel-errors/${reason}/${datehour}/'") {
		t.Errorf("ErrorsDDL did not place the bucket and prefix:\n%s", ddl)
	}
	// A client that is never called: ErrorKey does no I/O.
	s, err := s3sink.New(awss3.New(awss3.Options{Region: "us-east-1"}), s3sink.Config{Bucket: "my-bucket", ErrorPrefix: "tel-errors"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 13, 5, 0, 0, time.UTC)
	for _, reason := range []string{event.RejectedInvalid, event.RejectedTooLarge, s3sink.ReasonInvalidJSON, s3sink.ReasonTooLarge} {
		if !strings.Contains(ddl, reason) {
			t.Errorf("reason %s is not projected", reason)
		}
		key := s.ErrorKey(reason, "st", "sh", "1", "2", at)
		if want := "tel-errors/" + reason + "/2026/11/27/13/"; !strings.HasPrefix(key, want) {
			t.Errorf("ErrorKey %s does not start with the template's %s", key, want)
		}
	}
	for _, col := range []string{"errorcode", "errormessage", "arrivaltimestamp", "stream", "shardid", "sequencenumber", "eventindex", "rawdata"} {
		if !strings.Contains(ddl, "  "+col+" ") {
			t.Errorf("column %s missing", col)
		}
	}
}
