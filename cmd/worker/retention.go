package main

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// streamDescriber is the one Kinesis call the retention gauge needs.
type streamDescriber interface {
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

// retentionInterval is how often the stream's retention is read again. It
// changes only when someone changes the stream, and DescribeStreamSummary
// is limited to 20 calls a second per account, shared by every worker.
const retentionInterval = 10 * time.Minute

// watchRetention exports worker_stream_retention_seconds, the stream's
// retention period, so that an alert can compare how far behind the
// workers are with how long Kinesis keeps the records they have not read:
// past it, records expire unread. It returns when ctx is done.
func watchRetention(ctx context.Context, kc streamDescriber, stream string, reg prometheus.Registerer, log *zap.Logger) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_stream_retention_seconds",
		Help: "The stream's retention period: records older than this expire, read or not."})
	if err := reg.Register(g); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(retentionInterval)
		defer t.Stop()
		for {
			out, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
			if err == nil && out.StreamDescriptionSummary != nil && out.StreamDescriptionSummary.RetentionPeriodHours != nil {
				g.Set(float64(*out.StreamDescriptionSummary.RetentionPeriodHours) * 3600)
			} else if err != nil && ctx.Err() == nil {
				log.Warn("read stream retention", zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}
