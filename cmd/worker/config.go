package main

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/buildtelemetry/pipeline/checkpoint"
	"github.com/buildtelemetry/pipeline/deadletter"
	"github.com/buildtelemetry/pipeline/internal/envflag"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
	"github.com/buildtelemetry/pipeline/sink/ga4"
	s3sink "github.com/buildtelemetry/pipeline/sink/s3"
	"github.com/buildtelemetry/pipeline/sink/segment"
)

// runConfig is every setting of `worker run`. Each is a flag whose default
// comes from the environment variable named in its usage, so that the Helm
// chart configures the binary through env alone. The README lists them all.
type runConfig struct {
	Stream          string
	Region          string
	App             string
	LeaseTable      string
	WorkerID        string
	HealthAddr      string
	MetricsAddr     string
	ShardSync       time.Duration
	LeaseDuration   time.Duration
	LeaseRefresh    time.Duration
	BalanceInterval time.Duration
	MaxLeases       int
	ReadInterval    time.Duration
	RedriveInterval time.Duration
	MemoryLimit     string
	MemoryBudget    string
	MaxRecords      int
	IdleTime        time.Duration
	SinkTimeout     time.Duration
	RetryBudget     time.Duration
	BreakerFailures int
	BreakerOpen     time.Duration
	ShutdownTimeout time.Duration
	DeadLetterBkt   string
	DeadLetterPfx   string
	FileSinkPath    string
	LogLevel        string

	SegmentWriteKey     string
	SegmentWriteKeyFile string
	SegmentEndpoint     string
	SegmentTimeout      time.Duration
	GA4MeasurementID    string
	GA4APISecret        string
	GA4APISecretFile    string
	GA4Endpoint         string
	GA4Validate         bool
	GA4SharedUserIDs    string
	GA4Concurrency      int
	GA4Timeout          time.Duration

	S3Bucket             string
	S3Prefix             string
	S3ErrorPrefix        string
	S3BufferBytes        int
	S3BufferInterval     time.Duration
	S3MultipartThreshold int
	S3MaxEventBytes      int
	S3HonorIntegrations  bool

	CountsTable      string
	CountDimensions  string
	CountEvents      string
	CountParallelism int
	CountFlushEvents int
	CountFlushAge    time.Duration

	// EnvVars lists every environment variable read, for the chart tests.
	EnvVars []string
	// PrintEnv asks for EnvVars to be printed instead of running.
	PrintEnv bool
}

// Defaults chosen for failover speed: the library takes one lease per
// shard-sync tick per worker, so the tick is short;
// the lease outlives three renewals.
const (
	defaultShardSync     = 500 * time.Millisecond
	defaultLeaseDuration = 8 * time.Second
	defaultLeaseRefresh  = 2500 * time.Millisecond
)

func loadRunConfig(args []string, getenv func(string) string) (runConfig, error) {
	var c runConfig
	fs := envflag.New("worker run", getenv)
	var errs []error
	host, _ := os.Hostname()
	fs.String(&c.Stream, "stream", "KINESIS_STREAM", "", "Kinesis stream name (required)")
	fs.String(&c.Region, "region", "AWS_REGION", "us-east-1", "AWS region")
	fs.String(&c.App, "app", "WORKER_APP", "telemetry-worker", "application name: workers with the same name share the stream's shards")
	fs.String(&c.LeaseTable, "lease-table", "WORKER_LEASE_TABLE", "", "DynamoDB lease table (default: the application name), created if missing")
	fs.String(&c.WorkerID, "worker-id", "WORKER_ID", "", "lease owner ID (default: hostname and a random suffix)")
	fs.String(&c.HealthAddr, "health-addr", "WORKER_HEALTH_ADDR", ":8081", "address of /healthz and /readyz")
	fs.String(&c.MetricsAddr, "metrics-addr", "WORKER_METRICS_ADDR", ":9091", "address of /metrics")
	fs.Duration(&c.ShardSync, "shard-sync", "WORKER_SHARD_SYNC_INTERVAL", defaultShardSync, "how often the worker lists shards and takes a free lease (one per tick)")
	fs.Duration(&c.LeaseDuration, "lease-duration", "WORKER_LEASE_DURATION", defaultLeaseDuration, "lease lifetime: a dead worker's shards are taken over after it")
	fs.Duration(&c.LeaseRefresh, "lease-refresh", "WORKER_LEASE_REFRESH", defaultLeaseRefresh, "how often held leases are renewed")
	fs.Duration(&c.BalanceInterval, "balance-interval", "WORKER_BALANCE_INTERVAL", checkpoint.DefaultBalanceInterval, "how often the worker heartbeats and rebalances leases with the other workers")
	fs.Int(&c.MaxLeases, "max-leases", "WORKER_MAX_LEASES", 0, "most leases this worker holds (0: no cap beyond its fair share)")
	fs.Duration(&c.ReadInterval, "read-interval", "WORKER_READ_INTERVAL", 250*time.Millisecond, "least time between two GetRecords calls of one shard: a shard serves 5 a second to all its readers, and 4 leave one for others (worker tail)")
	fs.Duration(&c.RedriveInterval, "redrive-interval", "WORKER_REDRIVE_INTERVAL", deadletter.DefaultRedriveInterval, "how often transient dead letters of the shards held are re-driven into sinks whose breaker closed again (0: never; worker replay still can)")
	fs.String(&c.MemoryLimit, "memory-limit", "WORKER_MEMORY_LIMIT", "", "the container's memory limit in bytes (Ki, Mi, Gi suffixes allowed): sets GOMEMLIMIT to 90% of it unless GOMEMLIMIT is set, and the memory budget to a quarter of it")
	fs.String(&c.MemoryBudget, "memory-budget", "WORKER_MEMORY_BUDGET", "", "bytes of decoded records all shards hold at once (default: a quarter of the memory limit, or 64Mi without one)")
	fs.Int(&c.MaxRecords, "max-records", "WORKER_MAX_RECORDS", 250, "records per GetRecords call; each of ours packs many events, so this bounds a batch's memory")
	fs.Duration(&c.IdleTime, "idle-time", "WORKER_IDLE_TIME", time.Second, "wait between polls of an idle shard")
	fs.Duration(&c.SinkTimeout, "sink-timeout", "WORKER_SINK_TIMEOUT", kclproc.DefaultCallTimeout, "timeout of one sink call")
	fs.Duration(&c.RetryBudget, "retry-budget", "WORKER_RETRY_BUDGET", kclproc.DefaultRetryBudget, "retry time per batch and sink before its records are parked")
	fs.Int(&c.BreakerFailures, "breaker-failures", "WORKER_BREAKER_FAILURES", kclproc.DefaultBreakerFailures, "consecutive transient failures that open a sink's breaker")
	fs.Duration(&c.BreakerOpen, "breaker-open", "WORKER_BREAKER_OPEN_TIMEOUT", kclproc.DefaultBreakerOpenTimeout, "how long an open breaker waits before a probe")
	fs.Duration(&c.ShutdownTimeout, "shutdown-timeout", "WORKER_SHUTDOWN_TIMEOUT", 25*time.Second, "on SIGTERM, time to flush sinks, checkpoint and release leases")
	fs.String(&c.DeadLetterBkt, "dead-letter-bucket", "DEADLETTER_BUCKET", "", "S3 bucket of the dead-letter store (required)")
	fs.String(&c.DeadLetterPfx, "dead-letter-prefix", "DEADLETTER_PREFIX", deadletter.DefaultPrefix, "key prefix of the dead-letter store")
	fs.String(&c.FileSinkPath, "file-sink", "SINK_FILE_PATH", "", "append every event as NDJSON to this file (- for stdout); empty: off")
	fs.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	fs.String(&c.SegmentWriteKey, "segment-write-key", "SEGMENT_WRITE_KEY", "", "Segment source write key; empty (and no file): the Segment sink is off")
	fs.String(&c.SegmentWriteKeyFile, "segment-write-key-file", "SEGMENT_WRITE_KEY_FILE", "", "file holding the Segment write key (a mounted secret)")
	fs.String(&c.SegmentEndpoint, "segment-endpoint", "SEGMENT_ENDPOINT", segment.DefaultEndpoint, "Segment API origin (EU: https://events.eu1.segmentapis.com)")
	fs.Duration(&c.SegmentTimeout, "segment-timeout", "SEGMENT_TIMEOUT", segment.DefaultTimeout, "timeout of one Segment request")
	fs.String(&c.GA4MeasurementID, "ga4-measurement-id", "GA4_MEASUREMENT_ID", "", "GA4 measurement ID (G-...); with the API secret it turns the GA4 sink on")
	fs.String(&c.GA4APISecret, "ga4-api-secret", "GA4_API_SECRET", "", "GA4 Measurement Protocol API secret")
	fs.String(&c.GA4APISecretFile, "ga4-api-secret-file", "GA4_API_SECRET_FILE", "", "file holding the GA4 API secret (a mounted secret)")
	fs.String(&c.GA4Endpoint, "ga4-endpoint", "GA4_ENDPOINT", ga4.DefaultEndpoint, "GA4 Measurement Protocol origin")
	fs.Bool(&c.GA4Validate, "ga4-validate", "GA4_VALIDATE", false, "send to /debug/mp/collect and log validation messages instead of collecting")
	fs.String(&c.GA4SharedUserIDs, "ga4-shared-user-ids", "GA4_SHARED_USER_IDS", "buildbot_user", "userIds shared by many users, never sent as user_id (comma-separated)")
	fs.Int(&c.GA4Concurrency, "ga4-concurrency", "GA4_CONCURRENCY", ga4.DefaultConcurrency, "concurrent GA4 requests per shard")
	fs.Duration(&c.GA4Timeout, "ga4-timeout", "GA4_TIMEOUT", ga4.DefaultTimeout, "timeout of one GA4 request")
	fs.String(&c.S3Bucket, "s3-bucket", "S3_BUCKET", "", "bucket of the Firehose-style event objects; empty: the S3 sink is off")
	fs.String(&c.S3Prefix, "s3-prefix", "S3_PREFIX", s3sink.DefaultPrefix, "key prefix of event objects (the Athena table's location)")
	fs.String(&c.S3ErrorPrefix, "s3-error-prefix", "S3_ERROR_PREFIX", s3sink.DefaultErrorPrefix, "key prefix of records that cannot be written")
	fs.Int(&c.S3BufferBytes, "s3-buffer-bytes", "S3_BUFFER_BYTES", s3sink.DefaultBufferBytes, "uncompressed bytes buffered per shard before an object is written")
	fs.Duration(&c.S3BufferInterval, "s3-buffer-interval", "S3_BUFFER_INTERVAL", s3sink.DefaultBufferInterval, "oldest buffered event's age that writes an object")
	fs.Int(&c.S3MultipartThreshold, "s3-multipart-threshold", "S3_MULTIPART_THRESHOLD", s3sink.DefaultMultipartThreshold, "compressed object size from which multipart upload is used")
	fs.Int(&c.S3MaxEventBytes, "s3-max-event-bytes", "S3_MAX_EVENT_BYTES", s3sink.DefaultMaxEventBytes, "larger events go to the error prefix")
	fs.Bool(&c.S3HonorIntegrations, "s3-honor-integrations", "S3_HONOR_INTEGRATIONS", false, "skip events whose integrations object turns \"Amazon S3\" off; default: the archive keeps every event")
	fs.String(&c.CountsTable, "counts-table", "DYNAMODB_COUNTS_TABLE", "", "DynamoDB table of build-version counts, created if missing; empty: the DynamoDB sink is off")
	fs.String(&c.CountDimensions, "count-dimensions", "DYNAMODB_COUNT_DIMENSIONS", "", "counted dimensions as name=property.path,... (empty: buildVersion, nodeVersion, osPlatform, framework, status, plugin)")
	fs.String(&c.CountEvents, "count-events", "DYNAMODB_COUNT_EVENTS", "", "track events counted, comma-separated, * for all (empty: Netlify Build's build events)")
	fs.Int(&c.CountParallelism, "count-parallelism", "DYNAMODB_COUNT_PARALLELISM", ddbsink.DefaultParallelism, "concurrent counter updates per shard")
	fs.Int(&c.CountFlushEvents, "count-flush-events", "DYNAMODB_COUNT_FLUSH_EVENTS", ddbsink.DefaultFlushEvents, "events a shard's counting window holds before it is written (a window costs about one write unit per counter item it touches)")
	fs.Duration(&c.CountFlushAge, "count-flush-interval", "DYNAMODB_COUNT_FLUSH_INTERVAL", ddbsink.DefaultFlushInterval, "longest a shard's counting window waits before it is written")
	fs.BoolVar(&c.PrintEnv, "print-env", false, "print the environment variables the worker reads, one per line, and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.EnvVars = fs.Vars()
	if err := fs.Err(); err != nil {
		errs = append(errs, err)
	}
	if c.PrintEnv {
		return c, nil
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("KINESIS_STREAM (-stream) is required"))
	}
	if c.DeadLetterBkt == "" {
		errs = append(errs, errors.New("DEADLETTER_BUCKET (-dead-letter-bucket) is required: parked records need a home"))
	}
	c.LeaseTable = cmp.Or(c.LeaseTable, c.App)
	c.WorkerID = cmp.Or(c.WorkerID, fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano()%100000))
	if _, err := parseBytes(c.MemoryLimit); err != nil {
		errs = append(errs, fmt.Errorf("WORKER_MEMORY_LIMIT: %w", err))
	}
	if _, err := parseBytes(c.MemoryBudget); err != nil {
		errs = append(errs, fmt.Errorf("WORKER_MEMORY_BUDGET: %w", err))
	}
	if err := fs.Negative(); err != nil {
		errs = append(errs, err)
	}
	if c.BreakerFailures < 1 {
		errs = append(errs, fmt.Errorf("WORKER_BREAKER_FAILURES must be at least 1, got %d", c.BreakerFailures))
	}
	if c.BalanceInterval <= 0 {
		errs = append(errs, errors.New("WORKER_BALANCE_INTERVAL must be positive"))
	}
	if c.LeaseRefresh >= c.LeaseDuration {
		errs = append(errs, errors.New("WORKER_LEASE_REFRESH must be shorter than WORKER_LEASE_DURATION"))
	}
	errs = append(errs, c.checkRanges()...)
	return c, errors.Join(errs...)
}

// checkRanges names every setting whose value cannot work: a zero where
// zero would stall or spin, a count outside what the service takes, an
// endpoint that is not an absolute URL. Negative numbers are refused
// before, by name, for every setting.
func (c runConfig) checkRanges() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"WORKER_SHARD_SYNC_INTERVAL", c.ShardSync}, {"WORKER_LEASE_DURATION", c.LeaseDuration},
		{"WORKER_LEASE_REFRESH", c.LeaseRefresh}, {"WORKER_SINK_TIMEOUT", c.SinkTimeout},
		{"WORKER_RETRY_BUDGET", c.RetryBudget}, {"WORKER_BREAKER_OPEN_TIMEOUT", c.BreakerOpen},
		{"WORKER_SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"SEGMENT_TIMEOUT", c.SegmentTimeout},
		{"GA4_TIMEOUT", c.GA4Timeout}, {"S3_BUFFER_INTERVAL", c.S3BufferInterval},
		{"DYNAMODB_COUNT_FLUSH_INTERVAL", c.CountFlushAge},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name    string
		v, l, h int
	}{
		// GetRecords takes at most 10,000 records.
		{"WORKER_MAX_RECORDS", c.MaxRecords, 1, 10000},
		{"GA4_CONCURRENCY", c.GA4Concurrency, 1, 256},
		{"S3_BUFFER_BYTES", c.S3BufferBytes, 1, math.MaxInt},
		// S3 refuses multipart parts under 5 MiB (but the last).
		{"S3_MULTIPART_THRESHOLD", c.S3MultipartThreshold, 5 << 20, math.MaxInt},
		{"S3_MAX_EVENT_BYTES", c.S3MaxEventBytes, 1, math.MaxInt},
		{"DYNAMODB_COUNT_PARALLELISM", c.CountParallelism, 1, 256},
		{"DYNAMODB_COUNT_FLUSH_EVENTS", c.CountFlushEvents, 1, math.MaxInt},
	} {
		if n.v < n.l || n.v > n.h {
			errs = append(errs, fmt.Errorf("%s must be in %d..%d, got %d", n.name, n.l, n.h, n.v))
		}
	}
	for _, u := range []struct{ name, v string }{{"SEGMENT_ENDPOINT", c.SegmentEndpoint}, {"GA4_ENDPOINT", c.GA4Endpoint}} {
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an http or https URL, got %q", u.name, u.v))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errs
}

// secret returns value, or the trimmed content of file when value is empty:
// credentials come from the environment or from a mounted Secret.
func secret(value, file string) (string, error) {
	if value != "" || file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// parseBytes parses a byte count: a plain integer, or one with a K, M, G
// (decimal) or Ki, Mi, Gi (binary) suffix, optionally followed by B, as
// Kubernetes quantities and GOMEMLIMIT write them. "" is 0.
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num := strings.TrimRight(s, "KMGiB")
	unit := strings.TrimSuffix(s[len(num):], "B")
	mult, ok := map[string]int64{"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a byte count like 512Mi or 536870912", s)
	}
	return n * mult, nil
}
