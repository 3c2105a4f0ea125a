// Package deadletter is the dead-letter store over S3: it implements
// processor.DeadLetters, lists and reads parked letters back for an
// operator, and re-drives them into their sink (Replay).
//
// Each letter is one gzip NDJSON object whose key is derived only from the
// letter's identity (sink, reason, stream, shard and sequence range), so
// that parking the same records again overwrites the object instead of
// adding a second copy.
package deadletter

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/buildtelemetry/pipeline/processor"
)

// Errors returned by Store.
var (
	// ErrNotFound is returned (wrapped) by Read when no object has the key.
	ErrNotFound = errors.New("letter not found")
	// ErrInvalidLetter is returned (wrapped) by Park and Key when a letter's
	// identity cannot make a key: an empty or slash-containing sink, reason,
	// stream or shard, or a sequence number that is not one. Retrying
	// cannot help.
	ErrInvalidLetter = errors.New("invalid letter")
	// ErrCorruptLetter is returned by Read for an object that does not
	// decode: an upload cut off by a killed worker, on an S3
	// implementation that keeps partial bodies (s3rver does; S3 never
	// stores a partial PutObject). Its records were never acknowledged as
	// parked, so the worker that took over parked them again: nothing in
	// it is lost, and Replay skips it.
	ErrCorruptLetter = errors.New("corrupt letter")
	// ErrInvalidKey is returned (wrapped) by Read for a key that is not a
	// letter key of this store.
	ErrInvalidKey = errors.New("invalid letter key")
)

// Defaults of Config.
const (
	// DefaultPrefix is the key prefix of every letter.
	DefaultPrefix = "deadletter/"
	// DefaultListPageSize is the number of keys List asks for per
	// ListObjectsV2 call: S3's maximum.
	DefaultListPageSize = 1000
)

// Object format.
const (
	// Ext ends every letter key.
	Ext = ".ndjson.gz"
	// ContentType is the Content-Type of every letter object.
	ContentType = "application/x-ndjson"
	// ContentEncoding is the Content-Encoding of every letter object.
	ContentEncoding = "gzip"
)

// S3API is the part of the S3 client the store uses. The SDK's *s3.Client
// implements it.
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

var (
	_ S3API                     = (*s3.Client)(nil)
	_ processor.DeadLetters     = (*Store)(nil)
	_ s3.ListObjectsV2APIClient = S3API(nil)
)

// Config configures a Store. Zero values mean the documented defaults.
type Config struct {
	// Bucket holds the letters. Required.
	Bucket string
	// Prefix starts every key (DefaultPrefix). A "/" is added when it
	// does not end with one, so that a prefix never merges with a sink
	// name.
	Prefix string
	// ListPageSize is the MaxKeys of each ListObjectsV2 call
	// (DefaultListPageSize).
	ListPageSize int32
}

// Store is the dead-letter store. It keeps no state besides its
// configuration and is safe for concurrent use.
type Store struct {
	api      S3API
	bucket   string
	prefix   string
	pageSize int32
	now      func() time.Time
}

// New returns a store over api.
func New(api S3API, cfg Config) (*Store, error) {
	if api == nil {
		return nil, errors.New("deadletter: new store: nil S3 client")
	}
	if cfg.Bucket == "" {
		return nil, errors.New("deadletter: new store: Bucket is required")
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.ListPageSize < 0 {
		return nil, fmt.Errorf("deadletter: new store: ListPageSize %d is negative", cfg.ListPageSize)
	}
	cfg.ListPageSize = cmp.Or(cfg.ListPageSize, DefaultListPageSize)
	return &Store{api: api, bucket: cfg.Bucket, prefix: cfg.Prefix, pageSize: cfg.ListPageSize, now: time.Now}, nil
}

// Key returns the object key of a letter:
//
//	<prefix><sink>/<reason>/<stream>/<shard>/<PadSeq(first)>/<PadSeq(last)>.ndjson.gz
//
// The key holds only the letter's identity, never a time: ParkedAt differs
// between two attempts to park the same records (after a crash, or on the
// next retry), and a date in the key would turn the second attempt into a
// second copy instead of an overwrite. Correct idempotency is worth more
// than date partitioning here; ParkedAt is in every line of the body.
//
// The two sequence numbers are separate path segments rather than one
// "<first>-<last>" name because padded they are 129 digits each, and a
// 268-byte segment is more than a file name may hold (255 bytes) on the
// stores that map keys to files: s3rver, and `aws s3 sync` to a disk.
// Padding keeps the keys of one shard in sequence order in a listing.
//
// When FirstSeq or LastSeq is empty, the lowest or highest sequence
// number of the entries is used.
func (s *Store) Key(l processor.Letter) (string, error) {
	l = withRange(l)
	for _, f := range []struct{ name, v string }{
		{"Sink", l.Sink}, {"Reason", l.Reason}, {"Stream", l.Stream}, {"Shard", l.Shard},
	} {
		if f.v == "" || f.v == "." || f.v == ".." || strings.ContainsAny(f.v, "/\x00") {
			return "", fmt.Errorf("deadletter: %w: %s %q cannot be a key segment", ErrInvalidLetter, f.name, f.v)
		}
	}
	for _, f := range []struct{ name, v string }{{"FirstSeq", l.FirstSeq}, {"LastSeq", l.LastSeq}} {
		if !processor.ValidSeq(f.v) {
			return "", fmt.Errorf("deadletter: %w: %s %q is not a sequence number", ErrInvalidLetter, f.name, f.v)
		}
	}
	if processor.CompareSeq(l.FirstSeq, l.LastSeq) > 0 {
		return "", fmt.Errorf("deadletter: %w: FirstSeq %s is after LastSeq %s", ErrInvalidLetter, l.FirstSeq, l.LastSeq)
	}
	return s.prefix + strings.Join([]string{
		l.Sink, l.Reason, l.Stream, l.Shard, processor.PadSeq(l.FirstSeq), processor.PadSeq(l.LastSeq) + Ext,
	}, "/"), nil
}

// withRange fills an empty FirstSeq or LastSeq from the entries.
func withRange(l processor.Letter) processor.Letter {
	if l.FirstSeq != "" && l.LastSeq != "" {
		return l
	}
	first, last := "", ""
	for _, e := range l.Entries {
		if e.SequenceNumber == "" {
			continue
		}
		if first == "" || processor.CompareSeq(e.SequenceNumber, first) < 0 {
			first = e.SequenceNumber
		}
		if last == "" || processor.CompareSeq(e.SequenceNumber, last) > 0 {
			last = e.SequenceNumber
		}
	}
	l.FirstSeq = cmp.Or(l.FirstSeq, first)
	l.LastSeq = cmp.Or(l.LastSeq, last)
	return l
}

// letterID is what a key says about its letter.
type letterID struct {
	sink, reason, stream, shard, first, last string
}

// parseKey is the inverse of Key.
func (s *Store) parseKey(key string) (letterID, bool) {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return letterID{}, false
	}
	rest, ok = strings.CutSuffix(rest, Ext)
	if !ok {
		return letterID{}, false
	}
	p := strings.Split(rest, "/")
	if len(p) != 6 {
		return letterID{}, false
	}
	for _, v := range p {
		if v == "" {
			return letterID{}, false
		}
	}
	if !processor.ValidSeq(p[4]) || !processor.ValidSeq(p[5]) {
		return letterID{}, false
	}
	return letterID{p[0], p[1], p[2], p[3], processor.UnpadSeq(p[4]), processor.UnpadSeq(p[5])}, true
}

// Park writes the letter as one object, replacing any earlier object of
// the same identity: parking the same records twice leaves one object. A
// letter without entries has nothing to keep and writes nothing. A zero
// ParkedAt is set to the current time. Errors wrapping ErrInvalidLetter
// are permanent; others (S3's) are worth retrying.
func (s *Store) Park(ctx context.Context, l processor.Letter) error {
	if len(l.Entries) == 0 {
		return nil
	}
	l = withRange(l)
	if l.ParkedAt.IsZero() {
		l.ParkedAt = s.now()
	}
	key, err := s.Key(l)
	if err != nil {
		return err
	}
	body, err := encodeLetter(l)
	if err != nil {
		return fmt.Errorf("deadletter: encode letter %s: %w", key, err)
	}
	// A bytes.Reader, not a stream: over plain HTTP (the emulator) the SDK
	// must seek the body to compute its checksum and payload hash, and a
	// seekable body can be re-sent on retry.
	_, err = s.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(key),
		Body:            bytes.NewReader(body),
		ContentLength:   aws.Int64(int64(len(body))),
		ContentType:     aws.String(ContentType),
		ContentEncoding: aws.String(ContentEncoding),
	})
	if err != nil {
		return fmt.Errorf("deadletter: put object %s: %w", key, err)
	}
	return nil
}

// List returns the keys of the letters of a sink, in key order (by
// reason, stream, shard and sequence number). An empty reason lists every
// reason. Objects under the prefix that are not letter keys are left out.
func (s *Store) List(ctx context.Context, sink, reason string) ([]string, error) {
	listed, err := s.ListLetters(ctx, sink, reason)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(listed))
	for i, l := range listed {
		keys[i] = l.Key
	}
	return keys, nil
}

// Listed is a letter as a listing shows it.
type Listed struct {
	Key string
	// Modified is when the object was last written (parked, or rewritten
	// by a replay); zero if the store did not say.
	Modified time.Time
}

// ListLetters is List with each letter's time: what the re-drive's
// oldest-letter metric needs, in the same one listing.
func (s *Store) ListLetters(ctx context.Context, sink, reason string) ([]Listed, error) {
	if sink == "" || strings.Contains(sink, "/") {
		return nil, fmt.Errorf("deadletter: list letters: invalid sink %q", sink)
	}
	if strings.Contains(reason, "/") {
		return nil, fmt.Errorf("deadletter: list letters: invalid reason %q", reason)
	}
	prefix := s.prefix + sink + "/"
	if reason != "" {
		prefix += reason + "/"
	}
	var out []Listed
	p := s3.NewListObjectsV2Paginator(s.api, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(prefix),
		MaxKeys: aws.Int32(s.pageSize),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("deadletter: list objects %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); k != "" {
				if _, ok := s.parseKey(k); ok {
					out = append(out, Listed{Key: k, Modified: aws.ToTime(o.LastModified)})
				}
			}
		}
	}
	return out, nil
}

// Read returns the letter stored under key: its identity from the key,
// and its error, ParkedAt and entries from the body. Event bytes come back
// exactly as parked (see encodeLetter for the one exception). It fails
// with an error wrapping ErrNotFound when there is no such object.
func (s *Store) Read(ctx context.Context, key string) (processor.Letter, error) {
	id, ok := s.parseKey(key)
	if !ok {
		return processor.Letter{}, fmt.Errorf("deadletter: read letter %s: %w", key, ErrInvalidKey)
	}
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return processor.Letter{}, fmt.Errorf("deadletter: get object %s: %w: %w", key, ErrNotFound, err)
		}
		return processor.Letter{}, fmt.Errorf("deadletter: get object %s: %w", key, err)
	}
	defer out.Body.Close()
	l, err := decodeLetter(out.Body)
	if err != nil {
		return processor.Letter{}, fmt.Errorf("deadletter: decode letter %s: %w: %w", key, ErrCorruptLetter, err)
	}
	// Drain so that the connection can be reused.
	_, _ = io.Copy(io.Discard, out.Body)
	l.Sink, l.Reason, l.Stream, l.Shard = id.sink, id.reason, id.stream, id.shard
	l.FirstSeq, l.LastSeq = id.first, id.last
	return l, nil
}

// Delete removes the letter under key. Deleting a key that does not exist
// is not an error (S3 semantics), so Delete is idempotent.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("deadletter: delete object %s: %w", key, err)
	}
	return nil
}
