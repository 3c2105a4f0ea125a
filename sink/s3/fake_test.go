package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// fakeS3 is an S3API whose behaviour each test sets. An unset function
// panics.
type fakeS3 struct {
	putObject               func(ctx context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error)
	createMultipartUpload   func(ctx context.Context, in *awss3.CreateMultipartUploadInput) (*awss3.CreateMultipartUploadOutput, error)
	uploadPart              func(ctx context.Context, in *awss3.UploadPartInput) (*awss3.UploadPartOutput, error)
	completeMultipartUpload func(ctx context.Context, in *awss3.CompleteMultipartUploadInput) (*awss3.CompleteMultipartUploadOutput, error)
	abortMultipartUpload    func(ctx context.Context, in *awss3.AbortMultipartUploadInput) (*awss3.AbortMultipartUploadOutput, error)
}

var _ S3API = (*fakeS3)(nil)

func (f *fakeS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, _ ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	return f.putObject(ctx, in)
}

func (f *fakeS3) CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, _ ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
	return f.createMultipartUpload(ctx, in)
}

func (f *fakeS3) UploadPart(ctx context.Context, in *awss3.UploadPartInput, _ ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	return f.uploadPart(ctx, in)
}

func (f *fakeS3) CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, _ ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
	return f.completeMultipartUpload(ctx, in)
}

func (f *fakeS3) AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, _ ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
	return f.abortMultipartUpload(ctx, in)
}

// memS3 is a fakeS3 backed by a map of one bucket's objects, with S3's
// semantics for what the sink uses: overwrites, multipart uploads
// assembled in part-number order, S3's minimum part size, and bodies that
// must be seekable (as the SDK needs them over plain http).
type memS3 struct {
	fakeS3
	mu      sync.Mutex
	objects map[string][]byte
	meta    map[string]string // key -> Content-Type
	uploads map[string]map[int32][]byte
	nextID  int
}

func newMemS3() *memS3 {
	m := &memS3{objects: map[string][]byte{}, meta: map[string]string{}, uploads: map[string]map[int32][]byte{}}
	read := func(body io.Reader) ([]byte, error) {
		if _, ok := body.(io.Seeker); !ok {
			return nil, errors.New("fake s3: body is not seekable")
		}
		return io.ReadAll(body)
	}
	m.putObject = func(_ context.Context, in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
		b, err := read(in.Body)
		if err != nil {
			return nil, err
		}
		if in.ContentLength == nil || *in.ContentLength != int64(len(b)) {
			return nil, fmt.Errorf("fake s3: content length %v, body %d bytes", in.ContentLength, len(b))
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.objects[*in.Key] = b
		m.meta[*in.Key] = aws.ToString(in.ContentType)
		return &awss3.PutObjectOutput{}, nil
	}
	m.createMultipartUpload = func(_ context.Context, in *awss3.CreateMultipartUploadInput) (*awss3.CreateMultipartUploadOutput, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.nextID++
		id := strconv.Itoa(m.nextID) + "\x00" + *in.Key
		m.uploads[id] = map[int32][]byte{}
		m.meta[*in.Key] = aws.ToString(in.ContentType)
		return &awss3.CreateMultipartUploadOutput{UploadId: aws.String(id)}, nil
	}
	m.uploadPart = func(_ context.Context, in *awss3.UploadPartInput) (*awss3.UploadPartOutput, error) {
		b, err := read(in.Body)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		parts, ok := m.uploads[*in.UploadId]
		if !ok {
			return nil, errors.New("fake s3: NoSuchUpload")
		}
		parts[*in.PartNumber] = b
		return &awss3.UploadPartOutput{ETag: aws.String(fmt.Sprintf(`"%d"`, *in.PartNumber))}, nil
	}
	m.completeMultipartUpload = func(_ context.Context, in *awss3.CompleteMultipartUploadInput) (*awss3.CompleteMultipartUploadOutput, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		parts, ok := m.uploads[*in.UploadId]
		if !ok {
			return nil, errors.New("fake s3: NoSuchUpload")
		}
		var body []byte
		for i, p := range in.MultipartUpload.Parts {
			b, ok := parts[*p.PartNumber]
			if !ok || *p.PartNumber != int32(i+1) {
				return nil, fmt.Errorf("fake s3: InvalidPart %d", *p.PartNumber)
			}
			if i < len(in.MultipartUpload.Parts)-1 && len(b) < minPartSize {
				return nil, fmt.Errorf("fake s3: EntityTooSmall: part %d is %d bytes", *p.PartNumber, len(b))
			}
			body = append(body, b...)
		}
		delete(m.uploads, *in.UploadId)
		m.objects[*in.Key] = body
		return &awss3.CompleteMultipartUploadOutput{}, nil
	}
	m.abortMultipartUpload = func(_ context.Context, in *awss3.AbortMultipartUploadInput) (*awss3.AbortMultipartUploadOutput, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.uploads, *in.UploadId)
		return &awss3.AbortMultipartUploadOutput{}, nil
	}
	return m
}

// snapshot returns a copy of every object, by key.
func (m *memS3) snapshot() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.objects))
	for k, v := range m.objects {
		out[k] = bytes.Clone(v)
	}
	return out
}

// openUploads returns the number of multipart uploads neither completed
// nor aborted.
func (m *memS3) openUploads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.uploads)
}

// hookS3 wraps an S3API: before, when set, runs before every call and
// fails it with a non-nil error; every call is logged as "Op key".
type hookS3 struct {
	api S3API

	mu     sync.Mutex
	before func(op, key string) error
	calls  []string
}

var _ S3API = (*hookS3)(nil)

func (h *hookS3) hook(op, key string) error {
	h.mu.Lock()
	h.calls = append(h.calls, op+" "+key)
	before := h.before
	h.mu.Unlock()
	if before != nil {
		return before(op, key)
	}
	return nil
}

// setBefore replaces the hook.
func (h *hookS3) setBefore(f func(op, key string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.before = f
}

// ops returns the operations called so far, in order.
func (h *hookS3) ops() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func (h *hookS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, o ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	if err := h.hook("PutObject", *in.Key); err != nil {
		return nil, err
	}
	return h.api.PutObject(ctx, in, o...)
}

func (h *hookS3) CreateMultipartUpload(ctx context.Context, in *awss3.CreateMultipartUploadInput, o ...func(*awss3.Options)) (*awss3.CreateMultipartUploadOutput, error) {
	if err := h.hook("CreateMultipartUpload", *in.Key); err != nil {
		return nil, err
	}
	return h.api.CreateMultipartUpload(ctx, in, o...)
}

func (h *hookS3) UploadPart(ctx context.Context, in *awss3.UploadPartInput, o ...func(*awss3.Options)) (*awss3.UploadPartOutput, error) {
	if err := h.hook("UploadPart", *in.Key); err != nil {
		return nil, err
	}
	return h.api.UploadPart(ctx, in, o...)
}

func (h *hookS3) CompleteMultipartUpload(ctx context.Context, in *awss3.CompleteMultipartUploadInput, o ...func(*awss3.Options)) (*awss3.CompleteMultipartUploadOutput, error) {
	if err := h.hook("CompleteMultipartUpload", *in.Key); err != nil {
		return nil, err
	}
	return h.api.CompleteMultipartUpload(ctx, in, o...)
}

func (h *hookS3) AbortMultipartUpload(ctx context.Context, in *awss3.AbortMultipartUploadInput, o ...func(*awss3.Options)) (*awss3.AbortMultipartUploadOutput, error) {
	if err := h.hook("AbortMultipartUpload", *in.Key); err != nil {
		return nil, err
	}
	return h.api.AbortMultipartUpload(ctx, in, o...)
}

// errTransient is what failing hooks return: a plain error, which the
// sink does not mark permanent.
var errTransient = errors.New("injected: connection reset")

// apiError is a smithy API error with an HTTP status, as the SDK returns.
type apiError struct {
	status int
	code   string
}

func (e *apiError) Error() string                 { return fmt.Sprintf("api error %s (%d)", e.code, e.status) }
func (e *apiError) ErrorCode() string             { return e.code }
func (e *apiError) ErrorMessage() string          { return e.code }
func (e *apiError) ErrorFault() smithy.ErrorFault { return smithy.FaultClient }
func (e *apiError) HTTPStatusCode() int           { return e.status }
