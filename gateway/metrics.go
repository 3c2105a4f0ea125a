package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// handlerMetrics are the HTTP side's metrics, prefixed gateway_http_.
type handlerMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	events    *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	bodyBytes prometheus.Histogram
	// rateLimited counts the events refused by a write key's rate limit,
	// by source.
	rateLimited *prometheus.CounterVec
	// rejectedEvents counts the events of 200 answers that were refused
	// and filed for the archive's error output, by reason.
	rejectedEvents *prometheus.CounterVec
}

func newHandlerMetrics(reg prometheus.Registerer) *handlerMetrics {
	m := &handlerMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_requests_total", Help: "Ingest requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gateway_http_request_duration_seconds", Help: "Ingest request latency, including the wait for Kinesis.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_events_accepted_total", Help: "Events acknowledged with 200, by route.",
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_rejected_total", Help: "Requests answered with an error, by route and status code.",
		}, []string{"route", "code"}),
		bodyBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gateway_http_body_bytes", Help: "Decompressed request body sizes.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 8),
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_rate_limited_events_total", Help: "Events answered 429 because their write key's source was over its rate limit, by source.",
		}, []string{"source"}),
		rejectedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_rejected_events_total", Help: "Events refused inside accepted requests (answered in the body's rejected list, filed under the S3 error prefix), by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.events, m.rejected, m.bodyBytes, m.rateLimited, m.rejectedEvents)
	}
	return m
}

func (m *handlerMetrics) observe(route string, code int, start time.Time) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
}
