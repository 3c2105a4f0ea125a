package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/processor"
)

// TestSinkMem runs the behaviour tests against the in-memory fake.
func TestSinkMem(t *testing.T) {
	runSuite(t, memTarget)
}

func TestNewDefaults(t *testing.T) {
	s, err := New(newMemS3(), Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config()
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"Name", c.Name, DefaultName},
		{"Prefix", c.Prefix, DefaultPrefix},
		{"ErrorPrefix", c.ErrorPrefix, DefaultErrorPrefix},
		{"BufferBytes", c.BufferBytes, DefaultBufferBytes},
		{"BufferInterval", c.BufferInterval, DefaultBufferInterval},
		{"MultipartThreshold", c.MultipartThreshold, DefaultMultipartThreshold},
		{"PartSize", c.PartSize, DefaultPartSize},
		{"MaxEventBytes", c.MaxEventBytes, DefaultMaxEventBytes},
	} {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if s.Name() != "s3" || c.Now == nil {
		t.Errorf("Name %q, Now set %v", s.Name(), c.Now != nil)
	}
	s, err = New(newMemS3(), Config{Bucket: "b", Prefix: "tel", ErrorPrefix: "tel-errors"})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Config(); c.Prefix != "tel/" || c.ErrorPrefix != "tel-errors/" {
		t.Errorf("prefixes %q, %q; want a slash added", c.Prefix, c.ErrorPrefix)
	}
}

func TestNewInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		api  S3API
		cfg  Config
		want string
	}{
		{"no client", nil, Config{Bucket: "b"}, "nil S3 client"},
		{"no bucket", newMemS3(), Config{}, "Bucket"},
		{"error prefix inside prefix", newMemS3(), Config{Bucket: "b", Prefix: "data/", ErrorPrefix: "data/errors/"}, "overlap"},
		{"prefix inside error prefix", newMemS3(), Config{Bucket: "b", Prefix: "errors/events/"}, "overlap"},
		{"negative size", newMemS3(), Config{Bucket: "b", BufferBytes: -1}, "BufferBytes"},
		{"negative interval", newMemS3(), Config{Bucket: "b", BufferInterval: -time.Second}, "BufferInterval"},
		{"small parts", newMemS3(), Config{Bucket: "b", PartSize: 1 << 20}, "PartSize"},
		{"long prefix", newMemS3(), Config{Bucket: "b", Prefix: strings.Repeat("p", 600)}, "512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.api, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestOpenInvalidShard(t *testing.T) {
	s, err := New(newMemS3(), Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range []processor.Shard{{Stream: "", ID: "s"}, {Stream: "a/b", ID: "s"}, {Stream: "a", ID: ""}} {
		if _, err := s.Open(context.Background(), sh); err == nil || !processor.IsPermanent(err) {
			t.Errorf("Open(%q, %q): %v, want a permanent error", sh.Stream, sh.ID, err)
		}
	}
}

func TestKeys(t *testing.T) {
	s, err := New(newMemS3(), Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 59, 59, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct{ name, got, want string }{
		{"Key", s.Key("st", "shardId-000000000007", "12", "345", at), "events/2026/01/02/02/st-shardId-000000000007-12-345.gz"},
		{"ErrorKey", s.ErrorKey(ReasonTooLarge, "st", "sh", "1", "2", at), "errors/too-large/2026/01/02/02/st-sh-1-2.gz"},
		{"Kinesis-sized", ObjectName(testStream, testShard, seq(1), seq(2)), testStream + "-" + testShard + "-" + seq(1) + "-" + seq(2) + ".gz"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, tc.got, tc.want)
		}
	}
	if n := len(ObjectName(testStream, testShard, seq(1), seq(2))); n > MaxNameBytes {
		t.Errorf("a usual name is %d bytes, over MaxNameBytes", n)
	}
	// Long names: bounded, and still unique and deterministic.
	long := strings.Repeat("x", 128)
	max129 := "1" + strings.Repeat("0", 128)
	a, b := ObjectName(long, testShard, max129, max129), ObjectName(long, testShard, max129, max129[:128]+"1")
	if len(a) > MaxNameBytes || len(b) > MaxNameBytes || a == b || a != ObjectName(long, testShard, max129, max129) || !strings.HasSuffix(a, Ext) {
		t.Errorf("long names %s (%d bytes) and %s (%d bytes): want distinct, deterministic, at most %d bytes", a, len(a), b, len(b), MaxNameBytes)
	}
}

func TestDecodeState(t *testing.T) {
	good := pendingState{V: stateVersion, First: "5", Last: "9", Hour: "2026/11/27/12"}
	if p := decodeState(good.encode()); p == nil || p.First != "5" || p.Last != "9" || !p.hour.Equal(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("decodeState(%s) = %+v", good.encode(), p)
	}
	for _, b := range []string{"", "{", `{"v":2,"first":"5","last":"9","hour":"2026/11/27/12"}`, `{"v":1,"first":"9","last":"5","hour":"2026/11/27/12"}`,
		`{"v":1,"first":"x","last":"9","hour":"2026/11/27/12"}`, `{"v":1,"first":"5","last":"9","hour":"today"}`} {
		if p := decodeState([]byte(b)); p != nil {
			t.Errorf("decodeState(%s) = %+v, want nil", b, p)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{errTransient, false},
		{&apiError{404, "NoSuchBucket"}, true},
		{&apiError{403, "AccessDenied"}, true},
		{&apiError{400, "RequestTimeout"}, false},
		{&apiError{400, "ExpiredToken"}, false},
		{&apiError{429, "TooManyRequests"}, false},
		{&apiError{503, "SlowDown"}, false},
		{&apiError{500, "InternalError"}, false},
	} {
		err := classify(fmt.Errorf("s3: put object k: %w", tc.err))
		if processor.IsPermanent(err) != tc.permanent || !errors.Is(err, tc.err) {
			t.Errorf("classify(%v): permanent %v, want %v", tc.err, processor.IsPermanent(err), tc.permanent)
		}
	}
}

// A missing bucket is permanent: the processor parks at once instead of
// retrying for its whole budget.
func TestPermanentUploadError(t *testing.T) {
	m := &hookS3{api: newMemS3(), before: func(op, _ string) error {
		if op == "PutObject" {
			return &apiError{404, "NoSuchBucket"}
		}
		return nil
	}}
	s, err := New(m, Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	w := open(t, s, nil, &stateRow{})
	mustWrite(t, w, records(t, "x", 1, 1, 1, t0, 0))
	if err := w.Flush(context.Background()); !processor.IsPermanent(err) {
		t.Errorf("Flush: %v, want a permanent error", err)
	}
}

// Stale or foreign state never holds a writer back.
func TestStaleState(t *testing.T) {
	tg := memTarget(t)
	s := newSink(t, tg, Config{})
	state := pendingState{V: stateVersion, First: seq(1), Last: seq(3), Hour: "2026/11/27/12"}.encode()
	for _, st := range [][]byte{state, []byte("not json")} {
		w := open(t, s, st, &stateRow{})
		recs := records(t, "s", 5, 3, 1, t0, time.Second)
		mustWrite(t, w, recs)
		mustFlush(t, w)
		if got, want := w.Durable(), seq(7); got != want {
			t.Errorf("state %s: Durable %s, want %s", st, got, want)
		}
		if _, ok := tg.objects(t)[s.Key(testStream, testShard, seq(5), seq(7), t0)]; !ok {
			t.Errorf("state %s: no object for 5..7 in %v", st, eventKeys(tg.objects(t)))
		}
	}
}

// While rebuilding the saved range, Flush uploads nothing: a part of the
// range would overwrite the whole object uploaded before the crash.
func TestFlushDuringRebuild(t *testing.T) {
	tg := memTarget(t)
	s := newSink(t, tg, Config{})
	recs := records(t, "q", 1, 6, 1, t0, time.Second)
	row := &stateRow{}
	w := open(t, s, nil, row)
	mustWrite(t, w, recs)
	mustFlush(t, w)
	before := tg.objects(t)

	w = open(t, s, row.get(), row)
	mustWrite(t, w, recs[:3])
	mustFlush(t, w)
	if d := w.Durable(); d != "" {
		t.Errorf("Durable during the rebuild = %s, want none", d)
	}
	if got := tg.objects(t); len(got) != len(before) {
		t.Errorf("Flush during the rebuild wrote objects: %v", eventKeys(got))
	}
	mustWrite(t, w, recs[3:])
	if got, want := w.Durable(), seq(6); got != want {
		t.Errorf("Durable after the rebuild = %s, want %s", got, want)
	}
	wantOnce(t, eventLines(t, tg.objects(t)), ids(recs))
}

func TestClosedWriter(t *testing.T) {
	tg := memTarget(t)
	w := open(t, newSink(t, tg, Config{}), nil, nil)
	mustWrite(t, w, records(t, "z", 1, 2, 1, t0, 0))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(context.Background(), nil); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := w.Flush(context.Background()); err == nil {
		t.Error("Flush after Close succeeded")
	}
	if n := len(tg.objects(t)); n != 0 {
		t.Errorf("Close uploaded %d objects", n)
	}
}

// The archive keeps every event unless told to honour integrations
// objects, and then answers to Segment's name for it.
func TestIntegrationName(t *testing.T) {
	for _, honor := range []bool{false, true} {
		s, err := New(&fakeS3{}, Config{Bucket: "b", HonorIntegrations: honor})
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if honor {
			want = "Amazon S3"
		}
		if got := s.IntegrationName(); got != want {
			t.Errorf("HonorIntegrations %v: IntegrationName %q, want %q", honor, got, want)
		}
	}
}
