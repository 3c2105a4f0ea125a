// Package mems3 is one S3 bucket in memory, for the unit tests of the
// packages that write to S3 (the S3 sink, the dead-letter store, the
// Athena tables). It has S3's semantics for what those use: overwrites,
// NoSuchKey, idempotent deletes, sorted and paged listings with
// LastModified, multipart uploads assembled in part-number order with
// S3's minimum part size, and bodies that must be seekable, as the SDK
// needs them over plain http. The integration tests use s3rver instead.
package mems3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultMinPartSize is S3's least size of a part but the last.
const DefaultMinPartSize = 5 << 20

// Bucket is one bucket's objects. It is safe for concurrent use; set
// MinPartSize before the first call.
type Bucket struct {
	// MinPartSize is the least size of a part but the last
	// (DefaultMinPartSize); tests that lower their sink's lower it too.
	MinPartSize int
	// RequireContentLength refuses a PutObject without ContentLength,
	// which the SDK cannot compute for a body it cannot seek over plain
	// http.
	RequireContentLength bool

	mu      sync.Mutex
	objects map[string]object
	uploads map[string]map[int32][]byte
	nextID  int
}

type object struct {
	body        []byte
	contentType string
	written     time.Time
}

// New returns an empty bucket.
func New() *Bucket {
	return &Bucket{objects: map[string]object{}, uploads: map[string]map[int32][]byte{}}
}

func read(body io.Reader) ([]byte, error) {
	if _, ok := body.(io.Seeker); !ok {
		return nil, errors.New("mems3: body is not seekable")
	}
	return io.ReadAll(body)
}

// PutObject stores the body; a ContentLength, when set, must match it.
func (b *Bucket) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, err := read(in.Body)
	if err != nil {
		return nil, err
	}
	if (in.ContentLength == nil && b.RequireContentLength) || (in.ContentLength != nil && *in.ContentLength != int64(len(body))) {
		return nil, fmt.Errorf("mems3: content length %v, body %d bytes", in.ContentLength, len(body))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[aws.ToString(in.Key)] = object{body: body, contentType: aws.ToString(in.ContentType), written: time.Now()}
	return &s3.PutObjectOutput{}, nil
}

// GetObject returns the object, or a *types.NoSuchKey.
func (b *Bucket) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, &types.NoSuchKey{Message: aws.String("no such key")}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(o.body)), ContentType: aws.String(o.contentType)}, nil
}

// ListObjectsV2 lists the keys under Prefix in order, MaxKeys at a time.
func (b *Bucket) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) && k > aws.ToString(in.ContinuationToken) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := &s3.ListObjectsV2Output{}
	if n := int(aws.ToInt32(in.MaxKeys)); n > 0 && len(keys) > n {
		keys = keys[:n]
		out.IsTruncated = aws.Bool(true)
		out.NextContinuationToken = aws.String(keys[n-1])
	}
	for _, k := range keys {
		out.Contents = append(out.Contents, types.Object{Key: aws.String(k), LastModified: aws.Time(b.objects[k].written)})
	}
	return out, nil
}

// DeleteObject deletes the object; deleting a missing one succeeds.
func (b *Bucket) DeleteObject(_ context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.objects, aws.ToString(in.Key))
	return &s3.DeleteObjectOutput{}, nil
}

// CreateMultipartUpload starts an upload; its content type is the
// object's.
func (b *Bucket) CreateMultipartUpload(_ context.Context, in *s3.CreateMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	id := strconv.Itoa(b.nextID) + "\x00" + aws.ToString(in.Key) + "\x00" + aws.ToString(in.ContentType)
	b.uploads[id] = map[int32][]byte{}
	return &s3.CreateMultipartUploadOutput{UploadId: aws.String(id)}, nil
}

// UploadPart stores one part of an open upload.
func (b *Bucket) UploadPart(_ context.Context, in *s3.UploadPartInput, _ ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	body, err := read(in.Body)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	parts, ok := b.uploads[aws.ToString(in.UploadId)]
	if !ok {
		return nil, errors.New("mems3: NoSuchUpload")
	}
	parts[*in.PartNumber] = body
	return &s3.UploadPartOutput{ETag: aws.String(fmt.Sprintf(`"%d"`, *in.PartNumber))}, nil
}

// CompleteMultipartUpload assembles the parts listed, which must be
// numbered from 1 and, but the last, at least MinPartSize.
func (b *Bucket) CompleteMultipartUpload(_ context.Context, in *s3.CompleteMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := aws.ToString(in.UploadId)
	parts, ok := b.uploads[id]
	if !ok {
		return nil, errors.New("mems3: NoSuchUpload")
	}
	minPart := b.MinPartSize
	minPart = cmp.Or(minPart, DefaultMinPartSize)
	var body []byte
	for i, p := range in.MultipartUpload.Parts {
		part, ok := parts[*p.PartNumber]
		if !ok || *p.PartNumber != int32(i+1) {
			return nil, fmt.Errorf("mems3: InvalidPart %d", *p.PartNumber)
		}
		if i < len(in.MultipartUpload.Parts)-1 && len(part) < minPart {
			return nil, fmt.Errorf("mems3: EntityTooSmall: part %d is %d bytes", *p.PartNumber, len(part))
		}
		body = append(body, part...)
	}
	delete(b.uploads, id)
	contentType := id[strings.LastIndexByte(id, 0)+1:]
	b.objects[aws.ToString(in.Key)] = object{body: body, contentType: contentType, written: time.Now()}
	return &s3.CompleteMultipartUploadOutput{}, nil
}

// AbortMultipartUpload drops an upload and its parts.
func (b *Bucket) AbortMultipartUpload(_ context.Context, in *s3.AbortMultipartUploadInput, _ ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.uploads, aws.ToString(in.UploadId))
	return &s3.AbortMultipartUploadOutput{}, nil
}

// Objects returns a copy of every object's body, by key.
func (b *Bucket) Objects() map[string][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]byte, len(b.objects))
	for k, o := range b.objects {
		out[k] = bytes.Clone(o.body)
	}
	return out
}

// ContentTypes returns every object's Content-Type, by key.
func (b *Bucket) ContentTypes() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.objects))
	for k, o := range b.objects {
		out[k] = o.contentType
	}
	return out
}

// OpenUploads returns the number of multipart uploads neither completed
// nor aborted.
func (b *Bucket) OpenUploads() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.uploads)
}
