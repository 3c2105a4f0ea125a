// Command gateway is the pipeline's HTTP front: the Segment Tracking API
// and the legacy telemetry paths, writing events to Kinesis.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
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
	"github.com/buildtelemetry/pipeline/internal/buildinfo"
	"github.com/buildtelemetry/pipeline/internal/memlimit"
	"github.com/buildtelemetry/pipeline/internal/zaplog"
)

func main() {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if err == nil && cfg.Probe != "" {
		if err := probe(cfg.Probe); err != nil {
			fmt.Fprintln(os.Stderr, "gateway:", err)
			os.Exit(1)
		}
		return
	}
	if err == nil && cfg.PrintVersion {
		fmt.Println("gateway", buildinfo.Read())
		return
	}
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
	// The buffer is bounded, but request bodies and the GC's slack are
	// not.
	memlimit.Apply(int64(cfg.MemoryLimit))
	build := buildinfo.Read()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), build.Collector("gateway"))

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

	// Readiness is this pod's: not while draining. Kinesis trouble is
	// every pod's at once; it shows as 503 + Retry-After from the handler
	// rather than as every pod leaving the load balancer together.
	var draining atomic.Bool
	ready := func(context.Context) error {
		if draining.Load() {
			return errors.New("draining")
		}
		return nil
	}
	go checkStream(ctx, kc, cfg.Stream, log) // a log line, not a reason to start later
	handler, err := gateway.NewHandler(producer, gateway.Config{
		WriteKeys:       keys,
		LegacySource:    cfg.LegacySource,
		MaxEventBytes:   cfg.MaxEventBytes,
		MaxRequestBytes: cfg.MaxRequestBytes,
		AckTimeout:      cfg.AckTimeout,
		BodyTimeout:     cfg.BodyTimeout,
		CORSOrigins:     strings.Split(cfg.CORSOrigins, ","),
		TrustedProxies:  cfg.TrustedProxies,
		TruncateIP:      cfg.TruncateIP,
		KeyRate:         cfg.KeyRate,
		KeyBurst:        cfg.KeyBurst,
		Ready:           ready,
		Registerer:      reg,
	}, log.Named("http"))
	if err != nil {
		return err
	}
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	if cfg.WriteKeysFile != "" && cfg.KeysReload > 0 {
		go reloadKeys(reloadCtx, cfg, handler, log)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.MetricsAddr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	msrv := &http.Server{Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- msrv.Serve(mln) }()
	log.Info("gateway listening",
		zap.String("addr", ln.Addr().String()), zap.String("metrics_addr", mln.Addr().String()),
		zap.String("stream", cfg.Stream), zap.Int("write_keys", len(keys)), zap.Bool("legacy_without_key", cfg.LegacySource != ""),
		zap.String("version", build.Version), zap.String("revision", build.Revision))

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

// checkStream says at start whether the stream answers, in the log: a
// wrong name or missing permission shows at once, without keeping the
// gateway from starting (requests get 503 until it answers).
func checkStream(ctx context.Context, kc *kinesis.Client, stream string, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)}); err != nil {
		log.Error("stream does not answer; requests get 503 until it does", zap.String("stream", stream), zap.Error(err))
	}
}

// reloadKeys reads GATEWAY_WRITE_KEYS_FILE again every KeysReload and
// swaps the handler's keys when the file changed: a rotated secret
// (mounted, so updated in place) takes effect without a restart. A file
// that does not parse keeps the keys in use, and says so.
func reloadKeys(ctx context.Context, cfg config, h *gateway.Handler, log *zap.Logger) {
	t := time.NewTicker(cfg.KeysReload)
	defer t.Stop()
	var last []byte
	if b, err := os.ReadFile(cfg.WriteKeysFile); err == nil {
		last = b
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(cfg.WriteKeysFile)
		if err != nil {
			log.Warn("read write keys file; keeping the keys in use", zap.Error(err))
			continue
		}
		if bytes.Equal(b, last) {
			continue
		}
		keys, err := cfg.writeKeys()
		if err == nil {
			err = h.SetWriteKeys(keys)
		}
		if err != nil {
			log.Error("reload write keys; keeping the keys in use", zap.Error(err))
			continue
		}
		last = b
		log.Info("write keys reloaded", zap.Int("write_keys", len(keys)))
	}
}

// probe is -probe URL: the chart's `helm test` runs it from the gateway's
// own image, which has no shell and no curl.
func probe(url string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("probe %s: answered %s", url, resp.Status)
	}
	fmt.Println("probe", url, resp.Status)
	return nil
}
