// Package s3 is the Firehose-compatible S3 sink: it writes each shard's
// events as gzip NDJSON objects, one event per line, under
//
//	<Prefix><YYYY>/<MM>/<DD>/<HH>/<stream>-<shard>-<first>-<last>.gz
//
// in UTC, by the Kinesis arrival time of the oldest record in the object
// (Firehose's rule), for the Athena table in athena/. Each shard's writer
// buffers by size and age, like Firehose's buffering hints, and reports a
// record durable only after the object holding it was uploaded.
//
// # Replay-stable objects
//
// An object's key is derived from its stream, shard and first and last
// sequence numbers only, so writing the same records again overwrites the
// object instead of adding a second copy. That only helps if a replay cuts
// the same objects, and an age-based or shutdown flush depends on the wall
// clock. So before uploading an object the writer saves its range in the
// lease row (Shard.Saver, the idea of KCL's prepareCheckpoint). A writer
// opened with that state (after a crash, by whichever worker takes the
// lease) skips the replayed records before the range, which earlier
// objects already hold, rebuilds exactly that object from the replayed
// records, uploads it under the same key, and then goes on normally. The
// cuts it makes by size and by hour are a function of the records alone,
// whatever the batch sizes, so they repeat on a replay too.
//
// # Errors
//
// An event that can never be a line of the table (its JSON is not a valid
// object, or it is longer than MaxEventBytes) is written, Firehose-style,
// to an error object under <ErrorPrefix><reason>/<YYYY>/<MM>/<DD>/<HH>/
// with its bytes in base64, and counts as delivered.
package s3

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/processor"
)

// Defaults of Config.
const (
	// DefaultName is the sink's name, the key of its watermark, state and
	// dead letters.
	DefaultName = "s3"
	// DefaultPrefix starts every event object's key; the Athena table's
	// LOCATION is s3://<bucket>/<prefix>.
	DefaultPrefix = "events/"
	// DefaultErrorPrefix starts every error object's key. It must lie
	// outside Prefix, or Athena would read error lines as events.
	DefaultErrorPrefix = "errors/"
	// DefaultBufferBytes is Firehose's default buffer size, 5 MiB. Like
	// Firehose's, it counts bytes before compression.
	DefaultBufferBytes = 5 << 20
	// DefaultBufferInterval is Firehose's default buffer interval.
	DefaultBufferInterval = 300 * time.Second
	// DefaultMultipartThreshold is the compressed object size above which
	// an object is uploaded in parts; the AWS CLI's threshold.
	DefaultMultipartThreshold = 8 << 20
	// DefaultPartSize is the size of each part but the last; the AWS CLI's
	// chunk size.
	DefaultPartSize = 8 << 20
	// DefaultMaxEventBytes is the longest event line written to the table:
	// Firehose's record limit, 1,000 KiB.
	DefaultMaxEventBytes = 1000 << 10
)

// Object format.
const (
	// Ext ends every object key. Athena and Firehose tell gzip objects by
	// it.
	Ext = ".gz"
	// ContentType is the Content-Type of every object. No Content-Encoding
	// is set: the object is a gzip file, not a gzip-encoded NDJSON
	// resource, and with "Content-Encoding: gzip" browsers, curl
	// --compressed and most HTTP libraries would unpack the body on
	// download and save plain text under a .gz name. Firehose does not set
	// it either, and Athena reads .gz objects by their extension.
	ContentType = "application/gzip"
	// HourLayout is the time layout of the hour path segments, the Go
	// spelling of the Athena projection format yyyy/MM/dd/HH.
	HourLayout = "2006/01/02/15"
	// MaxNameBytes bounds the last segment of a key. Stores that map keys
	// to files (s3rver, which adds "._S3rver_metadata.json", and `aws s3
	// sync` to a disk) cannot hold a segment over 255 bytes.
	MaxNameBytes = 200
)

// Reasons of the error output, the <reason> segment of error keys.
const (
	// ReasonInvalidJSON: the event's JSON is not a valid JSON object.
	ReasonInvalidJSON = "invalid-json"
	// ReasonTooLarge: the event is longer than MaxEventBytes.
	ReasonTooLarge = "too-large"
)

// minPartSize is S3's least size of a part but the last; tests lower it.
var minPartSize = 5 << 20

// S3API is the part of the S3 client the sink uses. The SDK's *s3.Client
// implements it.
type S3API interface {
	PutObject(ctx context.Context, in *awss3.PutObjectInput, optFns ...func(*awss3.Options)) (*awss3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, optFns ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *awss3.UploadPartInput, optFns ...func(*awss3.Options)) (*awss3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, optFns ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, optFns ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error)
}

var (
	_ S3API            = (*awss3.Client)(nil)
	_ processor.Sink   = (*Sink)(nil)
	_ processor.Writer = (*writer)(nil)
)

// Config configures a Sink. Zero values mean the documented defaults.
type Config struct {
	// Bucket receives the objects. Required.
	Bucket string
	// Prefix starts every event object's key (DefaultPrefix). A "/" is
	// added when it does not end with one.
	Prefix string
	// ErrorPrefix starts every error object's key (DefaultErrorPrefix). A
	// "/" is added when it does not end with one. Neither prefix may
	// start with the other.
	ErrorPrefix string
	// BufferBytes is the uncompressed size at which a shard's buffer is
	// written as an object (DefaultBufferBytes). The object holds the
	// record that reached it.
	BufferBytes int
	// BufferInterval is the age at which a shard's buffer is written as
	// an object (DefaultBufferInterval), counted from when its first
	// record was buffered and checked on every Write, including the
	// processor's empty ticks.
	BufferInterval time.Duration
	// MultipartThreshold is the compressed size above which an object is
	// uploaded with a multipart upload (DefaultMultipartThreshold).
	MultipartThreshold int
	// PartSize is the size of each part but the last of a multipart
	// upload (DefaultPartSize); S3's minimum is 5 MiB.
	PartSize int
	// MaxEventBytes is the longest event line (DefaultMaxEventBytes);
	// longer events go to the error output.
	MaxEventBytes int
	// Name is the sink's name (DefaultName). Never change it for a lease
	// table in use: the sink's progress and state would start over.
	Name string
	// Now returns the current time, for the buffer age (time.Now). Object
	// hours come from the records' arrival times, never from Now.
	Now func() time.Time
	// HonorIntegrations makes the archive skip events whose integrations
	// object turns IntegrationName off. By default it keeps every event,
	// integrations object included in the line: an archive is the record
	// of what was sent, whatever it asked of the destinations.
	HonorIntegrations bool
}

// IntegrationName is the S3 sink's key in an integrations object,
// Segment's catalogue name for it.
const IntegrationName = "Amazon S3"

// Sink writes events to S3. It keeps no state besides its configuration
// and is safe for concurrent use by several shards; each shard's buffer is
// in the Writer that Open returns.
type Sink struct {
	api S3API
	cfg Config
}

// New returns a sink over api. It does no I/O: a missing bucket shows as
// failed uploads, which the processor's breaker handles.
func New(api S3API, cfg Config) (*Sink, error) {
	if api == nil {
		return nil, errors.New("s3: new sink: nil S3 client")
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: new sink: Bucket is required")
	}
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	cfg.Prefix = dirPrefix(cfg.Prefix, DefaultPrefix)
	cfg.ErrorPrefix = dirPrefix(cfg.ErrorPrefix, DefaultErrorPrefix)
	if strings.HasPrefix(cfg.Prefix, cfg.ErrorPrefix) || strings.HasPrefix(cfg.ErrorPrefix, cfg.Prefix) {
		return nil, fmt.Errorf("s3: new sink: Prefix %q and ErrorPrefix %q overlap: Athena would read error objects as events", cfg.Prefix, cfg.ErrorPrefix)
	}
	// S3 keys are at most 1024 bytes: leave room for the reason, the hour
	// and the name.
	if len(cfg.Prefix) > 512 || len(cfg.ErrorPrefix) > 512 {
		return nil, errors.New("s3: new sink: Prefix and ErrorPrefix must be at most 512 bytes")
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"BufferBytes", &cfg.BufferBytes, DefaultBufferBytes},
		{"MultipartThreshold", &cfg.MultipartThreshold, DefaultMultipartThreshold},
		{"PartSize", &cfg.PartSize, DefaultPartSize},
		{"MaxEventBytes", &cfg.MaxEventBytes, DefaultMaxEventBytes},
	} {
		if *f.v < 0 {
			return nil, fmt.Errorf("s3: new sink: %s %d is negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("s3: new sink: PartSize %d is under S3's minimum part size of %d", cfg.PartSize, minPartSize)
	}
	if cfg.BufferInterval < 0 {
		return nil, fmt.Errorf("s3: new sink: BufferInterval %v is negative", cfg.BufferInterval)
	}
	cfg.BufferInterval = cmp.Or(cfg.BufferInterval, DefaultBufferInterval)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sink{api: api, cfg: cfg}, nil
}

// dirPrefix returns p, or def when empty, ending with "/".
func dirPrefix(p, def string) string {
	p = cmp.Or(p, def)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// Name returns the sink's name.
func (s *Sink) Name() string { return s.cfg.Name }

// TakesRejected reports that the sink files the envelopes of events the
// gateway refused: under ErrorPrefix/<reason>/, as error lines.
func (s *Sink) TakesRejected() bool { return true }

// IntegrationName returns IntegrationName when the sink honours
// integrations objects (Config.HonorIntegrations), else "": every event.
func (s *Sink) IntegrationName() string {
	if s.cfg.HonorIntegrations {
		return IntegrationName
	}
	return ""
}

// Config returns the sink's configuration with the defaults filled in.
func (s *Sink) Config() Config { return s.cfg }

// Open returns the writer of one shard. shard.State, when set, is the
// range of the object the shard's previous writer was uploading (see the
// package documentation); the writer rebuilds that object first. State it
// cannot read is ignored: at worst one object's lines are written twice,
// which the Athena queries' messageId deduplication removes.
func (s *Sink) Open(_ context.Context, shard processor.Shard) (processor.Writer, error) {
	for _, f := range []struct{ name, v string }{{"stream", shard.Stream}, {"shard", shard.ID}} {
		if f.v == "" || strings.ContainsAny(f.v, "/\x00") {
			return nil, processor.Permanent(fmt.Errorf("s3: open writer: %s %q cannot be part of a key", f.name, f.v))
		}
	}
	return newWriter(s, shard), nil
}

// Key returns the key of the event object holding records first..last of
// a shard, whose oldest record arrived at arrival:
//
//	<Prefix><YYYY>/<MM>/<DD>/<HH>/<name>
//
// with the hour in UTC and name as ObjectName.
func (s *Sink) Key(stream, shard, first, last string, arrival time.Time) string {
	return s.cfg.Prefix + HourPath(arrival) + "/" + ObjectName(stream, shard, first, last)
}

// ErrorKey returns the key of the error object of reason for the same
// records as Key:
//
//	<ErrorPrefix><reason>/<YYYY>/<MM>/<DD>/<HH>/<name>
func (s *Sink) ErrorKey(reason, stream, shard, first, last string, arrival time.Time) string {
	return s.cfg.ErrorPrefix + reason + "/" + HourPath(arrival) + "/" + ObjectName(stream, shard, first, last)
}

// HourPath returns the hour of t in UTC as YYYY/MM/DD/HH, the Athena
// table's datehour partition value.
func HourPath(t time.Time) string { return t.UTC().Format(HourLayout) }

// ObjectName returns the last key segment of the object holding records
// first..last of a shard:
//
//	<stream>-<shard>-<first>-<last>.gz
//
// with the sequence numbers in plain decimal, unpadded. They identify the
// records exactly, and with Kinesis' 56-digit numbers and its usual shard
// IDs the name is about 150 bytes. Padded to processor.SeqWidth (129
// digits) the two alone would pass the 255-byte file-name limit of stores
// that map keys to files, s3rver among them; and an order by name is not
// needed, since Athena reads a whole hour.
//
// A name that would be longer than MaxNameBytes (a very long stream name)
// is shortened to its first bytes, then "-" and 32 hex digits of the
// SHA-256 of stream, shard, first and last: still deterministic and
// unique.
func ObjectName(stream, shard, first, last string) string {
	name := stream + "-" + shard + "-" + first + "-" + last
	if len(name)+len(Ext) <= MaxNameBytes {
		return name + Ext
	}
	sum := sha256.Sum256([]byte(stream + "\x00" + shard + "\x00" + first + "\x00" + last))
	h := hex.EncodeToString(sum[:16])
	return name[:MaxNameBytes-len(Ext)-len(h)-1] + "-" + h + Ext
}
