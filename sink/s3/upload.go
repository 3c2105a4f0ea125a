package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/buildtelemetry/pipeline/processor"
)

// maxParts is S3's limit on the parts of one upload.
const maxParts = 10000

// abortTimeout bounds the abort of a failed multipart upload, which runs
// even when the upload failed because ctx ended.
const abortTimeout = 10 * time.Second

// put uploads one object: with PutObject up to MultipartThreshold, in
// parts above it. Bodies are bytes.Readers: the SDK needs a seekable body
// to sign and retry the request over plain http.
func (s *Sink) put(ctx context.Context, key string, body []byte) error {
	if len(body) > s.cfg.MultipartThreshold {
		return s.putMultipart(ctx, key, body)
	}
	_, err := s.api.PutObject(ctx, &awss3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String(ContentType),
	})
	if err != nil {
		return classify(fmt.Errorf("s3: put object %s: %w", key, err))
	}
	return nil
}

// putMultipart uploads body in parts of PartSize (more when the body would
// need over 10,000 parts). A failed upload is aborted so that its parts
// are not billed; an abort that fails too is left to the bucket's
// AbortIncompleteMultipartUpload lifecycle rule, which every bucket taking
// multipart uploads should have.
func (s *Sink) putMultipart(ctx context.Context, key string, body []byte) (err error) {
	created, err := s.api.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(key),
		ContentType:       aws.String(ContentType),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return classify(fmt.Errorf("s3: create multipart upload %s: %w", key, err))
	}
	id := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		// The upload's own error is the one to report; s3rver, for one,
		// does not implement the abort at all.
		_, _ = s.api.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{
			Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key), UploadId: id,
		})
	}()
	partSize := max(s.cfg.PartSize, (len(body)+maxParts-1)/maxParts)
	var parts []types.CompletedPart
	for n, off := int32(1), 0; off < len(body); n, off = n+1, off+partSize {
		chunk := body[off:min(off+partSize, len(body))]
		out, err := s.api.UploadPart(ctx, &awss3.UploadPartInput{
			Bucket:            aws.String(s.cfg.Bucket),
			Key:               aws.String(key),
			UploadId:          id,
			PartNumber:        aws.Int32(n),
			Body:              bytes.NewReader(chunk),
			ContentLength:     aws.Int64(int64(len(chunk))),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		})
		if err != nil {
			return classify(fmt.Errorf("s3: upload part %d of %s: %w", n, key, err))
		}
		// With a checksum algorithm on the upload, S3 wants each part's
		// checksum back in the completion.
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumCRC32: out.ChecksumCRC32})
	}
	_, err = s.api.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.cfg.Bucket),
		Key:             aws.String(key),
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return classify(fmt.Errorf("s3: complete multipart upload %s: %w", key, err))
	}
	return nil
}

// transientCodes are S3 error codes of 4xx responses that a retry can fix.
var transientCodes = map[string]bool{
	"RequestTimeout":       true,
	"RequestTimeTooSkewed": true,
	"SlowDown":             true,
	"ExpiredToken":         true,
	"TokenRefreshRequired": true,
	"OperationAborted":     true,
}

// classify marks err permanent when S3 refused the request for good: a 4xx
// other than a timeout, throttling or an expired token (no such bucket,
// access denied, bad request). The SDK has already retried what it
// retries; the processor parks the records of a permanent failure at once
// and retries the rest within its budget.
func classify(err error) error {
	var resp interface{ HTTPStatusCode() int }
	if !errors.As(err, &resp) {
		return err
	}
	code := resp.HTTPStatusCode()
	if code < 400 || code >= 500 || code == 408 || code == 429 {
		return err
	}
	var api smithy.APIError
	if errors.As(err, &api) && transientCodes[api.ErrorCode()] {
		return err
	}
	return processor.Permanent(err)
}
