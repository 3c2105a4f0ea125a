package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	kclcfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kclworker "github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/checkpoint"
	"github.com/buildtelemetry/pipeline/deadletter"
	"github.com/buildtelemetry/pipeline/internal/buildinfo"
	"github.com/buildtelemetry/pipeline/internal/kcladapter"
	"github.com/buildtelemetry/pipeline/internal/memlimit"
	"github.com/buildtelemetry/pipeline/internal/zaplog"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
	"github.com/buildtelemetry/pipeline/sink/file"
	"github.com/buildtelemetry/pipeline/sink/ga4"
	s3sink "github.com/buildtelemetry/pipeline/sink/s3"
	"github.com/buildtelemetry/pipeline/sink/segment"
)

// awsClients are the AWS clients of the worker, built once from the
// default chain (IRSA in Kubernetes, AWS_ENDPOINT_URL_* locally).
type awsClients struct {
	cfg     aws.Config
	kinesis *kinesis.Client
	ddb     *dynamodb.Client
	s3      *s3.Client
}

func newAWSClients(ctx context.Context, region string, getenv func(string) string) (*awsClients, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	// Emulators (and MinIO-likes) behind an endpoint override do not
	// serve virtual-hosted bucket names.
	pathStyle := getenv("AWS_ENDPOINT_URL_S3") != ""
	return &awsClients{
		cfg:     cfg,
		kinesis: kinesis.NewFromConfig(cfg),
		ddb:     dynamodb.NewFromConfig(cfg),
		s3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.UsePathStyle = pathStyle
			o.DisableLogOutputChecksumValidationSkipped = true
		}),
	}, nil
}

// runWorker is `worker run`: lease shards and deliver their events to
// every configured sink until SIGTERM.
func runWorker(args []string, getenv func(string) string) error {
	cfg, err := loadRunConfig(args, getenv)
	if err != nil {
		return err
	}
	if cfg.PrintEnv {
		for _, v := range cfg.EnvVars {
			fmt.Println(v)
		}
		return nil
	}
	log, err := zaplog.New(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	log = log.With(zap.String("worker", cfg.WorkerID))
	ctx := context.Background()

	clients, err := newAWSClients(ctx, cfg.Region, getenv)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	build := buildinfo.Read()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), build.Collector("worker"))
	log.Info("worker starting", zap.String("version", build.Version), zap.String("revision", build.Revision))

	// Health and metrics listen before the tables are created: that can
	// take a while on first install (CreateTable), and /healthz must
	// answer meanwhile or liveness kills the pod; /readyz says not yet.
	var ready atomic.Bool
	health, err := serveHealth(cfg.HealthAddr, &ready)
	if err != nil {
		return err
	}
	defer health.Close()
	metrics, err := serveMetrics(cfg.MetricsAddr, reg)
	if err != nil {
		return err
	}
	defer metrics.Close()

	cp, err := checkpoint.New(clients.ddb, clients.kinesis, checkpoint.Config{
		Table: cfg.LeaseTable, Stream: cfg.Stream, WorkerID: cfg.WorkerID, LeaseDuration: cfg.LeaseDuration,
		BalanceInterval: cfg.BalanceInterval, MaxLeases: cfg.MaxLeases, Registerer: reg,
	}, log.Named("checkpoint"))
	if err != nil {
		return err
	}
	// Create the lease table before the library starts: two workers
	// starting at once would otherwise race on CreateTable.
	if err := cp.EnsureTable(ctx); err != nil {
		return err
	}
	dlq, err := deadletter.New(clients.s3, deadletter.Config{Bucket: cfg.DeadLetterBkt, Prefix: cfg.DeadLetterPfx})
	if err != nil {
		return err
	}
	sinks, closeSinks, err := buildSinks(ctx, cfg, clients, reg, log)
	if err != nil {
		return err
	}
	defer closeSinks()
	budget := memoryBudget(cfg, log)
	factory, err := kclproc.NewFactory(kclproc.Config{
		MemoryBudget: budget,
		Stream:       cfg.Stream, WorkerID: cfg.WorkerID,
		CallTimeout: cfg.SinkTimeout, RetryBudget: cfg.RetryBudget,
		Breaker:    kclproc.BreakerConfig{Failures: uint32(cfg.BreakerFailures), OpenTimeout: cfg.BreakerOpen},
		Registerer: reg,
	}, sinks, dlq, cp, log.Named("processor"))
	if err != nil {
		return err
	}
	kclMetrics, err := kcladapter.NewMetrics(reg, "worker")
	if err != nil {
		return err
	}
	kcladapter.RouteLogrus(log.Named("kcl"))
	kcfg := kclConfig(cfg, log, kclMetrics)
	// The library's GetRecords batches are held undecoded until the
	// processor returns: their bytes get a budget of their own, the same
	// size as the decoded one.
	readLimit := &kcladapter.ReadLimit{Budget: budget, Shards: func() int { return len(factory.Shards()) }, MinInterval: cfg.ReadInterval}
	kclKinesis := kinesis.NewFromConfig(clients.cfg, readLimit.Option(), kcladapter.HideAggregates())
	w := kclworker.NewWorker(factory, kcfg).WithKinesis(kclKinesis).WithCheckpointer(cp)

	// One balance pass before the library's first tick, so that its
	// first acquisitions already respect this worker's share.
	if err := cp.Balance(ctx); err != nil {
		log.Warn("first balance pass", zap.Error(err))
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start KCL worker: %w", err)
	}
	bg := &background{}
	defer bg.stop()
	if cfg.RedriveInterval > 0 {
		rd := &deadletter.Redriver{Store: dlq, Sinks: sinks, Stream: cfg.Stream, Healthy: factory.SinkHealthy,
			Shards: factory.Shards, Owns: cp.Holds, Interval: cfg.RedriveInterval, Log: log.Named("redrive")}
		if err := rd.Register(reg); err != nil {
			return err
		}
		bg.start(ctx, func(ctx context.Context) { _ = rd.Run(ctx) })
	}
	// The retention watch and the balance stop first on shutdown.
	if err := watchRetention(bg.start(ctx, func(ctx context.Context) { _ = cp.Run(ctx) }), clients.kinesis, cfg.Stream, reg, log); err != nil {
		return err
	}
	ready.Store(true)
	log.Info("worker started", zap.String("stream", cfg.Stream), zap.String("lease_table", cfg.LeaseTable),
		zap.Int("sinks", len(sinks)), zap.String("health_addr", health.Addr), zap.String("metrics_addr", metrics.Addr))

	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	sig := <-sigc
	log.Info("shutting down", zap.String("signal", sig.String()))
	ready.Store(false)
	go func() {
		<-sigc
		log.Warn("second signal, exiting without a graceful shutdown")
		os.Exit(1)
	}()
	// Leave the balance first: no more claims or acquisitions, and the
	// other workers count this one out at once, so they take its shards
	// as the library releases them below.
	bg.stop()
	if err := cp.Deregister(context.WithoutCancel(ctx)); err != nil {
		log.Warn("deregister; the others count this worker out when its heartbeat expires", zap.Error(err))
	}
	releaseLeases(w, cfg.ShutdownTimeout, log)
	factory.Close()
	return nil
}

// background runs the worker's loops beside the library's (re-drive,
// balance, retention watch) and stops them together.
type background struct {
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

// start runs f in a goroutine under a context of its own, which it
// returns, cancelled by stop.
func (b *background) start(ctx context.Context, f func(context.Context)) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	b.cancels = append(b.cancels, cancel)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(ctx)
	}()
	return ctx
}

// stop cancels every loop and waits until each returned; it may be
// called again.
func (b *background) stop() {
	for _, cancel := range b.cancels {
		cancel()
	}
	b.wg.Wait()
}

// releaseLeases shuts the library down, bounded by timeout because its
// Shutdown has none: each shard finishes its batch, flushes its sinks,
// checkpoints and releases its lease.
func releaseLeases(w *kclworker.Worker, timeout time.Duration, log *zap.Logger) {
	done := make(chan struct{})
	go func() {
		w.Shutdown()
		close(done)
	}()
	select {
	case <-done:
		log.Info("worker stopped: leases released")
	case <-time.After(timeout):
		log.Error("shutdown timed out; leases will expire instead", zap.Duration("timeout", timeout))
	}
}

// kclConfig is the library's configuration. Its own credentials are
// unused: we hand it our clients.
func kclConfig(cfg runConfig, log *zap.Logger, m *kcladapter.Metrics) *kclcfg.KinesisClientLibConfiguration {
	kcfg := kclcfg.NewKinesisClientLibConfigWithCredential(cfg.App, cfg.Stream, cfg.Region, cfg.WorkerID,
		credentials.NewStaticCredentialsProvider("unused", "unused", "")).
		WithTableName(cfg.LeaseTable).
		// TRIM_HORIZON everywhere: the library also uses this for child
		// shards, which must start at their beginning.
		WithInitialPositionInStream(kclcfg.TRIM_HORIZON).
		WithShardSyncIntervalMillis(int(cfg.ShardSync.Milliseconds())).
		WithFailoverTimeMillis(int(cfg.LeaseDuration.Milliseconds())).
		WithLeaseRefreshWaitTime(int(cfg.LeaseRefresh.Milliseconds())).
		WithMaxRecords(cfg.MaxRecords).
		WithIdleTimeBetweenReadsInMillis(int(cfg.IdleTime.Milliseconds())).
		// Empty batches are the tick that lets buffering sinks flush by age.
		WithCallProcessRecordsEvenForEmptyRecordList(true).
		// The checkpointer balances leases itself (cp.Run): the
		// library's stealing cannot reach a fair share and drops the
		// shard without a final checkpoint.
		WithLeaseStealing(false).
		WithLogger(kcladapter.NewLogger(log.Named("kcl"))).
		WithMonitoringService(m)
	if cfg.MaxLeases > 0 {
		kcfg = kcfg.WithMaxLeasesForWorker(cfg.MaxLeases)
	}
	return kcfg
}

// buildSinks creates every configured sink. Sinks without configuration
// are off, and the log says so.
func buildSinks(ctx context.Context, cfg runConfig, clients *awsClients, reg prometheus.Registerer, log *zap.Logger) ([]processor.Sink, func(), error) {
	var sinks []processor.Sink
	var closers []func() error
	if cfg.FileSinkPath != "" {
		fs, err := file.New(file.Config{Path: cfg.FileSinkPath})
		if err != nil {
			return nil, nil, err
		}
		sinks = append(sinks, fs)
		closers = append(closers, fs.Close)
		log.Info("sink on", zap.String("sink", fs.Name()), zap.String("path", cfg.FileSinkPath))
	} else {
		log.Info("sink off: SINK_FILE_PATH not set", zap.String("sink", "file"))
	}
	segKey, err := secret(cfg.SegmentWriteKey, cfg.SegmentWriteKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("segment: %w", err)
	}
	if segKey != "" {
		s, err := segment.New(segment.Config{Endpoint: cfg.SegmentEndpoint, WriteKey: segKey, Timeout: cfg.SegmentTimeout, Registerer: reg}, log.Named("segment"))
		if err != nil {
			return nil, nil, err
		}
		sinks = append(sinks, s)
		log.Info("sink on", zap.String("sink", s.Name()), zap.String("endpoint", cfg.SegmentEndpoint))
	} else {
		log.Info("sink off: no credentials (SEGMENT_WRITE_KEY or SEGMENT_WRITE_KEY_FILE)", zap.String("sink", "segment"))
	}
	gaSecret, err := secret(cfg.GA4APISecret, cfg.GA4APISecretFile)
	if err != nil {
		return nil, nil, fmt.Errorf("ga4: %w", err)
	}
	if cfg.GA4MeasurementID != "" && gaSecret != "" {
		var shared []string
		for _, id := range strings.Split(cfg.GA4SharedUserIDs, ",") {
			if id = strings.TrimSpace(id); id != "" {
				shared = append(shared, id)
			}
		}
		s, err := ga4.New(ga4.Config{Endpoint: cfg.GA4Endpoint, MeasurementID: cfg.GA4MeasurementID, APISecret: gaSecret,
			Validate: cfg.GA4Validate, SharedUserIDs: shared, Concurrency: cfg.GA4Concurrency, Timeout: cfg.GA4Timeout, Registerer: reg}, log.Named("ga4"))
		if err != nil {
			return nil, nil, err
		}
		sinks = append(sinks, s)
		log.Info("sink on", zap.String("sink", s.Name()), zap.String("endpoint", cfg.GA4Endpoint), zap.Bool("validate", cfg.GA4Validate))
	} else {
		log.Info("sink off: no credentials (GA4_MEASUREMENT_ID and GA4_API_SECRET or GA4_API_SECRET_FILE)", zap.String("sink", "ga4"))
	}
	if cfg.S3Bucket != "" {
		s, err := s3sink.New(clients.s3, s3sink.Config{Bucket: cfg.S3Bucket, Prefix: cfg.S3Prefix, ErrorPrefix: cfg.S3ErrorPrefix,
			BufferBytes: cfg.S3BufferBytes, BufferInterval: cfg.S3BufferInterval, MultipartThreshold: cfg.S3MultipartThreshold, MaxEventBytes: cfg.S3MaxEventBytes,
			HonorIntegrations: cfg.S3HonorIntegrations})
		if err != nil {
			return nil, nil, err
		}
		sinks = append(sinks, s)
		log.Info("sink on", zap.String("sink", s.Name()), zap.String("bucket", cfg.S3Bucket), zap.String("prefix", cfg.S3Prefix))
	} else {
		log.Info("sink off: S3_BUCKET not set", zap.String("sink", "s3"))
	}
	if cfg.CountsTable != "" {
		s, err := countsSink(cfg, clients, log)
		if err != nil {
			return nil, nil, err
		}
		// A counters table that cannot be reached now must not keep the
		// worker, and so every other sink, from starting: the sink makes
		// sure of the table again when it opens a writer, and what it
		// cannot count meanwhile is parked and noted, as in any outage.
		if err := s.EnsureTable(ctx); err != nil {
			log.Error("counters table not ready; counting starts once DynamoDB answers", zap.String("sink", s.Name()), zap.Error(err))
		}
		sinks = append(sinks, s)
		log.Info("sink on", zap.String("sink", s.Name()), zap.String("table", cfg.CountsTable))
	} else {
		log.Info("sink off: DYNAMODB_COUNTS_TABLE not set", zap.String("sink", "dynamodb"))
	}
	if len(sinks) == 0 {
		log.Warn("no sink configured: events are read and checkpointed but go nowhere")
	}
	return sinks, func() {
		for _, c := range closers {
			_ = c()
		}
	}, nil
}

func serveHealth(addr string, ready *atomic.Bool) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n")) // the prober went away: nothing to do
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return listenAndServe(addr, mux)
}

func serveMetrics(addr string, reg *prometheus.Registry) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// Profiles on the metrics port, which is not exposed outside the
	// cluster: how an operator finds what holds memory or CPU.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return listenAndServe(addr, mux)
}

func listenAndServe(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	// Addr is the bound address, which differs from addr for port 0.
	srv := &http.Server{Addr: ln.Addr().String(), Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "worker: serve:", err)
		}
	}()
	return srv, nil
}

func countsSink(cfg runConfig, clients *awsClients, log *zap.Logger) (*ddbsink.Sink, error) {
	dc := ddbsink.Config{Table: cfg.CountsTable, Parallelism: cfg.CountParallelism, FlushEvents: cfg.CountFlushEvents, FlushInterval: cfg.CountFlushAge}
	if cfg.CountDimensions != "" {
		dims, err := ddbsink.ParseDimensions(cfg.CountDimensions)
		if err != nil {
			return nil, fmt.Errorf("parse DYNAMODB_COUNT_DIMENSIONS: %w", err)
		}
		dc.Dimensions = dims
	}
	for _, e := range strings.Split(cfg.CountEvents, ",") {
		if e = strings.TrimSpace(e); e != "" {
			dc.Events = append(dc.Events, e)
		}
	}
	return ddbsink.New(clients.ddb, dc, log.Named("dynamodb"))
}

// memoryBudget applies the memory limit and returns the budget of decoded
// records: WORKER_MEMORY_BUDGET, else a quarter of the limit (the rest is
// the runtime, the library's undecoded GetRecords batches, HTTP and gzip
// buffers, and the garbage collector's headroom), else the default.
func memoryBudget(cfg runConfig, log *zap.Logger) int64 {
	limit, _ := parseBytes(cfg.MemoryLimit) // validated by loadRunConfig
	budget, _ := parseBytes(cfg.MemoryBudget)
	soft := memlimit.Apply(limit)
	if limit == 0 && soft != math.MaxInt64 {
		limit = soft // GOMEMLIMIT alone
	}
	if budget == 0 && limit > 0 {
		budget = limit / 4
	}
	budget = cmp.Or(budget, kclproc.DefaultMemoryBudget)
	log.Info("memory", zap.Int64("limit_bytes", limit), zap.Int64("gomemlimit_bytes", soft), zap.Int64("budget_bytes", budget))
	return budget
}
