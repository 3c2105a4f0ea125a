// Command gateway is the pipeline's HTTP front: the Segment Tracking API
// and the legacy telemetry paths, writing events to Kinesis.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/gateway"
	"github.com/buildtelemetry/pipeline/internal/zaplog"
)

func main() {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if err == nil && cfg.PrintEnv {
		for _, v := range cfg.EnvVars {
			fmt.Println(v)
		}
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	log, err := zaplog.New(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	if err := run(cfg, log); err != nil {
		log.Error("gateway stopped", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
	_ = log.Sync()
}

func run(cfg config, log *zap.Logger) error {
	ctx := context.Background()
	keys, err := cfg.writeKeys()
	if err != nil {
		return err
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.Region))
	if err != nil {
		return fmt.Errorf("load AWS config: %w", err)
	}
	kc := kinesis.NewFromConfig(awsCfg)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	enc, err := event.NewRecordEncoder()
	if err != nil {
		return err
	}
	producer, err := gateway.NewProducer(kc, enc, gateway.ProducerConfig{
		StreamName:     cfg.Stream,
		Linger:         cfg.Linger,
		MaxRecordBytes: cfg.MaxRecordBytes,
		MaxBufferBytes: cfg.MaxBufferBytes,
		MaxInFlight:    cfg.MaxInFlight,
		RetryTimeout:   cfg.RetryTimeout,
		Registerer:     reg,
	}, log.Named("producer"))
	if err != nil {
		return fmt.Errorf("create producer: %w", err)
	}

	var draining atomic.Bool
	ready := newReadiness(kc, cfg.Stream, &draining)
	handler, err := gateway.NewHandler(producer, gateway.Config{
		WriteKeys:       keys,
		LegacySource:    cfg.LegacySource,
		MaxEventBytes:   cfg.MaxEventBytes,
		MaxRequestBytes: cfg.MaxRequestBytes,
		AckTimeout:      cfg.AckTimeout,
		Ready:           ready.check,
		Registerer:      reg,
	}, log.Named("http"))
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.MetricsAddr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	msrv := &http.Server{Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- msrv.Serve(mln) }()
	log.Info("gateway listening",
		zap.String("addr", ln.Addr().String()), zap.String("metrics_addr", mln.Addr().String()),
		zap.String("stream", cfg.Stream), zap.Int("write_keys", len(keys)), zap.Bool("legacy_without_key", cfg.LegacySource != ""))

	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigc:
		log.Info("shutting down", zap.String("signal", sig.String()))
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	// A second signal aborts the graceful shutdown.
	go func() {
		<-sigc
		log.Warn("second signal, exiting without draining")
		os.Exit(1)
	}()

	draining.Store(true)
	time.Sleep(cfg.DrainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Shutdown waits for every in-flight request, and each of those waits
	// for its events to reach Kinesis; then the producer flushes the rest.
	var errs []error
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down HTTP server: %w", err))
	}
	if err := producer.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("close producer: %w", err))
	}
	_ = msrv.Shutdown(sctx)
	log.Info("gateway stopped")
	return errors.Join(errs...)
}

// readiness answers /readyz: not while draining, and only when Kinesis
// answered DescribeStreamSummary recently. The result is cached so that
// probes do not turn into a Kinesis control-plane load (5 calls/s limit).
type readiness struct {
	kc       *kinesis.Client
	stream   string
	draining *atomic.Bool

	mu      sync.Mutex
	checked time.Time
	err     error
}

func newReadiness(kc *kinesis.Client, stream string, draining *atomic.Bool) *readiness {
	return &readiness{kc: kc, stream: stream, draining: draining}
}

func (r *readiness) check(ctx context.Context) error {
	if r.draining.Load() {
		return errors.New("draining")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < 5*time.Second {
		return r.err
	}
	_, err := r.kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(r.stream)})
	if err != nil {
		err = fmt.Errorf("describe stream %s: %w", r.stream, err)
	}
	r.checked, r.err = time.Now(), err
	return err
}
