package kcladapter

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/buildtelemetry/pipeline/event"
)

// HideAggregates returns the kinesis.Options function that makes every
// KPL aggregate in a GetRecords answer opaque to the KCL library
// (event.WrapKPL), so that the library passes it through whole and the
// worker's own decoder de-aggregates it. The library's de-aggregator drops
// the whole batch when one aggregate does not decode, panics on a
// partition key index outside the table, and gives every user record the
// aggregate's sequence number, which made the S3 sink keep one of them.
func HideAggregates() func(*kinesis.Options) {
	return func(o *kinesis.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(middleware.InitializeMiddlewareFunc("HideAggregates", hideAggregates), middleware.After)
		})
	}
}

func hideAggregates(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleInitialize(ctx, in)
	if res, ok := out.Result.(*kinesis.GetRecordsOutput); ok && err == nil {
		HideRecords(res.Records)
	}
	return out, md, err
}

// HideRecords makes each KPL aggregate among recs opaque to the library,
// in place: what the middleware does to every GetRecords answer.
func HideRecords(recs []types.Record) {
	for i := range recs {
		recs[i].Data = event.WrapKPL(recs[i].Data)
	}
}
