package deadletter

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/internal/testkit/mems3"
	"github.com/buildtelemetry/pipeline/processor"
)

// TestStoreMemory runs the store's behaviour tests over an in-memory S3.
func TestStoreMemory(t *testing.T) {
	testStore(t, func(t *testing.T, cfg Config) *Store {
		cfg.Bucket = "dl"
		s, err := New(mems3.New(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestNew(t *testing.T) {
	api := &fakeS3{}
	for _, c := range []struct {
		name       string
		api        S3API
		cfg        Config
		wantPrefix string
		wantErr    string
	}{
		{"Defaults", api, Config{Bucket: "b"}, DefaultPrefix, ""},
		{"PrefixGetsSlash", api, Config{Bucket: "b", Prefix: "dl"}, "dl/", ""},
		{"NestedPrefix", api, Config{Bucket: "b", Prefix: "env/prod/dl/"}, "env/prod/dl/", ""},
		{"NoBucket", api, Config{}, "", "Bucket"},
		{"NoClient", nil, Config{Bucket: "b"}, "", "client"},
		{"NegativePageSize", api, Config{Bucket: "b", ListPageSize: -1}, "", "ListPageSize"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.api, c.cfg)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("New error = %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if s.prefix != c.wantPrefix {
				t.Errorf("prefix = %q, want %q", s.prefix, c.wantPrefix)
			}
		})
	}
}

func TestKey(t *testing.T) {
	pad := processor.PadSeq
	base := processor.Letter{
		Sink: "segment", Reason: processor.ReasonBreakerOpen, Stream: "builds", Shard: "shardId-000000000003",
		FirstSeq: seq1, LastSeq: seq3, ParkedAt: time.Date(2024, 5, 1, 23, 59, 0, 0, time.UTC),
	}
	with := func(f func(*processor.Letter)) processor.Letter {
		l := base
		f(&l)
		return l
	}
	for _, c := range []struct {
		name    string
		prefix  string
		letter  processor.Letter
		want    string
		wantErr bool
	}{
		{
			name: "Layout", letter: base,
			want: "deadletter/segment/breaker-open/builds/shardId-000000000003/" + pad(seq1) + "/" + pad(seq3) + ".ndjson.gz",
		},
		{
			name: "Prefix", prefix: "prod/dl", letter: base,
			want: "prod/dl/segment/breaker-open/builds/shardId-000000000003/" + pad(seq1) + "/" + pad(seq3) + ".ndjson.gz",
		},
		{
			name: "ParkedAtIsNotIdentity", letter: with(func(l *processor.Letter) { l.ParkedAt = l.ParkedAt.Add(25 * time.Hour); l.Error = "other" }),
			want: "deadletter/segment/breaker-open/builds/shardId-000000000003/" + pad(seq1) + "/" + pad(seq3) + ".ndjson.gz",
		},
		{
			name: "RangeFromEntries",
			letter: with(func(l *processor.Letter) {
				l.FirstSeq, l.LastSeq = "", ""
				l.Entries = []processor.LetterEntry{{SequenceNumber: "20"}, {SequenceNumber: "3"}, {SequenceNumber: "100"}}
			}),
			want: "deadletter/segment/breaker-open/builds/shardId-000000000003/" + pad("3") + "/" + pad("100") + ".ndjson.gz",
		},
		{
			name: "DecodeSink", letter: with(func(l *processor.Letter) { l.Sink, l.Reason = processor.DecodeSink, processor.ReasonDecode }),
			want: "deadletter/_decode/decode/builds/shardId-000000000003/" + pad(seq1) + "/" + pad(seq3) + ".ndjson.gz",
		},
		{name: "SlashInSink", letter: with(func(l *processor.Letter) { l.Sink = "a/b" }), wantErr: true},
		{name: "EmptyReason", letter: with(func(l *processor.Letter) { l.Reason = "" }), wantErr: true},
		{name: "DotDotShard", letter: with(func(l *processor.Letter) { l.Shard = ".." }), wantErr: true},
		{name: "NoRange", letter: with(func(l *processor.Letter) { l.FirstSeq, l.LastSeq = "", "" }), wantErr: true},
		{name: "NotASeq", letter: with(func(l *processor.Letter) { l.FirstSeq = "12a" }), wantErr: true},
		{name: "Reversed", letter: with(func(l *processor.Letter) { l.FirstSeq, l.LastSeq = seq3, seq1 }), wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(&fakeS3{}, Config{Bucket: "b", Prefix: c.prefix})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Key(c.letter)
			if c.wantErr {
				if !errors.Is(err, ErrInvalidLetter) {
					t.Fatalf("Key = %q, %v; want ErrInvalidLetter", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Key: %v", err)
			}
			if got != c.want {
				t.Errorf("Key =\n %s\nwant\n %s", got, c.want)
			}
			for _, seg := range strings.Split(got, "/") {
				// s3rver stores an object as a file named after the last
				// segment plus "._S3rver_metadata.json".
				if len(seg)+len("._S3rver_metadata.json") > 255 {
					t.Errorf("segment %q is too long for a file name", seg)
				}
			}
			id, ok := s.parseKey(got)
			l := withRange(c.letter)
			if want := (letterID{l.Sink, l.Reason, l.Stream, l.Shard, l.FirstSeq, l.LastSeq}); !ok || id != want {
				t.Errorf("parseKey = %+v, %v; want %+v", id, ok, want)
			}
		})
	}
}

// TestParkObject checks the object Park writes: where, with which headers,
// and its lines.
func TestParkObject(t *testing.T) {
	var got *s3.PutObjectInput
	var body []byte
	api := &fakeS3{putObject: func(_ context.Context, in *s3.PutObjectInput) (*s3.PutObjectOutput, error) {
		if _, ok := in.Body.(io.Seeker); !ok {
			t.Errorf("body %T is not seekable", in.Body)
		}
		got = in
		var err error
		body, err = io.ReadAll(in.Body)
		return &s3.PutObjectOutput{}, err
	}}
	s, err := New(api, Config{Bucket: "telemetry-dl"})
	if err != nil {
		t.Fatal(err)
	}
	l := letter("segment", processor.ReasonPermanent, "shardId-000000000000", "m1", "m2")
	l.Entries[1].Error = "too large"
	l.Entries = append(l.Entries, processor.LetterEntry{SequenceNumber: seq2, Event: []byte("{\n  \"messageId\": \"pretty\",\n  \"type\": \"track\"\n}")})
	l.LastSeq = seq2
	if err := s.Park(context.Background(), l); err != nil {
		t.Fatalf("Park: %v", err)
	}
	wantKey, _ := s.Key(l)
	for _, c := range []struct{ name, got, want string }{
		{"Bucket", aws.ToString(got.Bucket), "telemetry-dl"},
		{"Key", aws.ToString(got.Key), wantKey},
		{"ContentType", aws.ToString(got.ContentType), "application/x-ndjson"},
		{"ContentEncoding", aws.ToString(got.ContentEncoding), "gzip"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if n := aws.ToInt64(got.ContentLength); n != int64(len(body)) {
		t.Errorf("ContentLength = %d, want %d", n, len(body))
	}

	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	sc := bufio.NewScanner(zr)
	var lines []map[string]json.RawMessage
	var texts []string
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, m)
		texts = append(texts, sc.Text())
	}
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3", len(lines))
	}
	str := func(m map[string]json.RawMessage, k string) string {
		var v string
		_ = json.Unmarshal(m[k], &v)
		return v
	}
	for i, m := range lines {
		for k, want := range map[string]string{
			"sink": "segment", "reason": "permanent", "error": l.Error, "stream": "builds",
			"shard": "shardId-000000000000", "sequenceNumber": l.Entries[i].SequenceNumber,
			"parkedAt": "2024-05-01T10:00:01.123456789Z", "entryError": l.Entries[i].Error,
		} {
			if got := str(m, k); got != want {
				t.Errorf("line %d: %s = %q, want %q", i, k, got, want)
			}
		}
	}
	// Events are spliced in verbatim (no HTML escaping of <a&b>), except
	// that a multi-line one is compacted.
	if want := `,"event":` + string(ev("m1")) + `}`; !strings.HasSuffix(texts[0], want) {
		t.Errorf("line 0 = %s\nwant it to end with %s", texts[0], want)
	}
	if want := `,"event":{"messageId":"pretty","type":"track"}}`; !strings.HasSuffix(texts[2], want) {
		t.Errorf("line 2 = %s\nwant it to end with %s", texts[2], want)
	}
}

func TestParkRejects(t *testing.T) {
	s, err := New(&fakeS3{}, Config{Bucket: "b"}) // any S3 call panics
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := letter("segment", processor.ReasonPermanent, "shardId-000000000000", "m1")
	t.Run("NoEntries", func(t *testing.T) {
		empty := l
		empty.Entries = nil
		if err := s.Park(ctx, empty); err != nil {
			t.Errorf("Park(no entries) = %v, want nil and no write", err)
		}
	})
	t.Run("InvalidEventJSON", func(t *testing.T) {
		bad := l
		bad.Entries = []processor.LetterEntry{{SequenceNumber: seq1, Event: []byte(`{"a":`)}}
		if err := s.Park(ctx, bad); !errors.Is(err, ErrInvalidLetter) {
			t.Errorf("Park = %v, want ErrInvalidLetter", err)
		}
	})
	t.Run("InvalidIdentity", func(t *testing.T) {
		bad := l
		bad.Stream = ""
		if err := s.Park(ctx, bad); !errors.Is(err, ErrInvalidLetter) {
			t.Errorf("Park = %v, want ErrInvalidLetter", err)
		}
	})
}

func TestListSkipsForeignObjects(t *testing.T) {
	api := mems3.New()
	s, err := New(api, Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := mustPark(t, s, letter("s3", processor.ReasonPermanent, "shardId-000000000000", "x"))
	for _, k := range []string{"deadletter/s3/README.txt", "deadletter/s3/permanent/builds/x.ndjson.gz", "deadletter/s3x/permanent/a/b/1/2.ndjson.gz"} {
		if _, err := api.PutObject(ctx, &s3.PutObjectInput{Key: aws.String(k), Body: bytes.NewReader(nil)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustList(t, s, "s3", ""); len(got) != 1 || got[0] != key {
		t.Errorf("List = %q, want only %s", got, key)
	}
	if _, err := s.Read(ctx, "deadletter/s3/README.txt"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Read(foreign key) = %v, want ErrInvalidKey", err)
	}
	if _, err := s.List(ctx, "a/b", ""); err == nil {
		t.Error("List(sink with slash) succeeded, want an error")
	}
}
