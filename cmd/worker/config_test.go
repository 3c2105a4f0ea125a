package main

import (
	"strings"
	"testing"
	"time"
)

func getenvOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadRunConfig(t *testing.T) {
	base := map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b"}
	c, err := loadRunConfig(nil, getenvOf(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.LeaseTable != "telemetry-worker" || c.LeaseDuration != 8*time.Second || c.ShardSync != 500*time.Millisecond || c.WorkerID == "" {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"DEADLETTER_BUCKET": "b"}, "KINESIS_STREAM"},
		{map[string]string{"KINESIS_STREAM": "s"}, "DEADLETTER_BUCKET"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_LEASE_REFRESH": "9s"}, "WORKER_LEASE_REFRESH"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_MAX_RECORDS": "lots"}, "WORKER_MAX_RECORDS"},
		// Negative settings are refused, whichever they are: -1 breaker
		// failures once became 4,294,967,295, a breaker that never opens.
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_BREAKER_FAILURES": "-1"}, "WORKER_BREAKER_FAILURES"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_BREAKER_FAILURES": "0"}, "at least 1"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_RETRY_BUDGET": "-1s"}, "WORKER_RETRY_BUDGET) must not be negative"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "DYNAMODB_COUNT_FLUSH_EVENTS": "-5"}, "DYNAMODB_COUNT_FLUSH_EVENTS"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_MAX_LEASES": "-2"}, "WORKER_MAX_LEASES"},
		// Values that are not negative and still cannot work.
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_SINK_TIMEOUT": "0s"}, "WORKER_SINK_TIMEOUT must be positive"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "WORKER_MAX_RECORDS": "20000"}, "WORKER_MAX_RECORDS must be in 1..10000"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "S3_MULTIPART_THRESHOLD": "1024"}, "S3_MULTIPART_THRESHOLD"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "GA4_CONCURRENCY": "0"}, "GA4_CONCURRENCY"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "SEGMENT_ENDPOINT": "api.segment.io"}, "SEGMENT_ENDPOINT must be an http or https URL"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
		{map[string]string{"KINESIS_STREAM": "s", "DEADLETTER_BUCKET": "b", "DYNAMODB_COUNT_FLUSH_INTERVAL": "0s"}, "DYNAMODB_COUNT_FLUSH_INTERVAL"},
	} {
		if _, err := loadRunConfig(nil, getenvOf(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}
