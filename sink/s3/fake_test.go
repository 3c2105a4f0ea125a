package s3

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/buildtelemetry/pipeline/internal/testkit/mems3"
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

// newMemS3 returns a bucket in memory with S3's rules for what the sink
// uses, the least part size the sink's own (which tests lower).
func newMemS3() *mems3.Bucket {
	b := mems3.New()
	b.MinPartSize, b.RequireContentLength = minPartSize, true
	return b
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
