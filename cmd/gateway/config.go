package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/buildtelemetry/pipeline/gateway"

	"github.com/buildtelemetry/pipeline/internal/envflag"
)

// config is every setting of the gateway. Each is a flag whose default
// comes from the environment variable named in its usage, so that the Helm
// chart configures the binary through env alone. The README lists them all.
type config struct {
	Addr            string
	MetricsAddr     string
	Stream          string
	Region          string
	WriteKeys       string
	WriteKeysFile   string
	LegacySource    string
	MaxEventBytes   int
	MaxRequestBytes int
	AckTimeout      time.Duration
	Linger          time.Duration
	MaxRecordBytes  int
	MaxBufferBytes  int64
	MaxInFlight     int
	RetryTimeout    time.Duration
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	LogLevel        string

	ReadHeaderTimeout time.Duration
	BodyTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	CORSOrigins       string
	TrustedProxies    int
	TruncateIP        bool
	KeyRate           float64
	KeyBurst          int
	KeysReload        time.Duration
	MemoryLimit       int

	// EnvVars lists every environment variable the gateway reads; the
	// chart tests compare it with what the chart sets.
	EnvVars []string
	// PrintEnv asks main to print EnvVars and exit (-print-env).
	PrintEnv bool
	// PrintVersion asks main to print the build and exit (-version).
	PrintVersion bool
	// Probe asks main to GET this URL and exit 0 on a 2xx (-probe).
	Probe string
}

func loadConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := envflag.New("gateway", getenv)
	var errs []error
	var maxBuffer int
	fs.String(&c.Addr, "addr", "GATEWAY_ADDR", ":8080", "address of the ingest API")
	fs.String(&c.MetricsAddr, "metrics-addr", "GATEWAY_METRICS_ADDR", ":9090", "address of /metrics")
	fs.String(&c.Stream, "stream", "KINESIS_STREAM", "", "Kinesis stream name (required)")
	fs.String(&c.Region, "region", "AWS_REGION", "us-east-1", "AWS region")
	fs.String(&c.WriteKeys, "write-keys", "GATEWAY_WRITE_KEYS", "", "accepted write keys as key=source,key2=source2")
	fs.String(&c.WriteKeysFile, "write-keys-file", "GATEWAY_WRITE_KEYS_FILE", "", "file holding write keys, one key=source per line (a mounted secret)")
	fs.String(&c.LegacySource, "legacy-source", "GATEWAY_LEGACY_SOURCE", "", "source of /collect and /identify requests without a write key; empty: they need one")
	fs.Int(&c.MaxEventBytes, "max-event-bytes", "GATEWAY_MAX_EVENT_BYTES", gateway.DefaultMaxEventBytes, "largest event accepted")
	fs.Int(&c.MaxRequestBytes, "max-request-bytes", "GATEWAY_MAX_REQUEST_BYTES", gateway.DefaultMaxRequestBytes, "largest request body accepted, after gzip decompression")
	fs.Duration(&c.AckTimeout, "ack-timeout", "GATEWAY_ACK_TIMEOUT", gateway.DefaultAckTimeout, "longest wait for Kinesis before answering 503")
	fs.Duration(&c.Linger, "linger", "GATEWAY_LINGER", gateway.DefaultLinger, "how long a group commit waits for more events")
	fs.Int(&c.MaxRecordBytes, "max-record-bytes", "GATEWAY_MAX_RECORD_BYTES", gateway.DefaultMaxRecordBytes, "uncompressed event bytes packed into one Kinesis record")
	fs.Int(&maxBuffer, "max-buffer-bytes", "GATEWAY_MAX_BUFFER_BYTES", int(gateway.DefaultMaxBufferBytes), "event bytes buffered before answering 429")
	fs.Int(&c.MaxInFlight, "max-in-flight", "GATEWAY_MAX_IN_FLIGHT", gateway.DefaultMaxInFlight, "concurrent PutRecords calls")
	fs.Duration(&c.RetryTimeout, "retry-timeout", "GATEWAY_RETRY_TIMEOUT", gateway.DefaultRetryTimeout, "how long failed Kinesis entries are retried before answering 503")
	fs.Duration(&c.DrainDelay, "drain-delay", "GATEWAY_DRAIN_DELAY", 0, "on SIGTERM, how long /readyz fails before the listener closes (let the load balancer notice)")
	fs.Duration(&c.ShutdownTimeout, "shutdown-timeout", "GATEWAY_SHUTDOWN_TIMEOUT", 20*time.Second, "on SIGTERM, how long in-flight requests and buffered events get to finish")
	fs.String(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	fs.Duration(&c.ReadHeaderTimeout, "read-header-timeout", "GATEWAY_READ_HEADER_TIMEOUT", 10*time.Second, "longest a client may take to send a request's headers")
	fs.Duration(&c.BodyTimeout, "body-timeout", "GATEWAY_BODY_TIMEOUT", gateway.DefaultBodyTimeout, "longest a client may take to send a request's body; then the connection is cut")
	fs.Duration(&c.IdleTimeout, "idle-timeout", "GATEWAY_IDLE_TIMEOUT", 120*time.Second, "how long an idle keep-alive connection stays open")
	fs.Int(&c.MaxHeaderBytes, "max-header-bytes", "GATEWAY_MAX_HEADER_BYTES", 32<<10, "largest request headers accepted")
	fs.String(&c.CORSOrigins, "cors-origins", "GATEWAY_CORS_ORIGINS", "*", "origins browsers may post from, comma-separated; * for any")
	fs.Int(&c.TrustedProxies, "trusted-proxies", "GATEWAY_TRUSTED_PROXIES", 0, "proxies in front that append to X-Forwarded-For (a load balancer: 1); 0: context.ip is the connection's address")
	fs.Bool(&c.TruncateIP, "truncate-ip", "GATEWAY_TRUNCATE_IP", false, "keep only the network of context.ip (IPv4 /24, IPv6 /48)")
	fs.Float64(&c.KeyRate, "key-rate", "GATEWAY_KEY_RATE", 0, "events per second each write key's source may send on average; 0: unlimited")
	fs.Int(&c.KeyBurst, "key-burst", "GATEWAY_KEY_BURST", 2000, "events a write key's source may send at once above its rate (at least the largest request)")
	fs.Duration(&c.KeysReload, "write-keys-reload", "GATEWAY_WRITE_KEYS_RELOAD", 10*time.Second, "how often GATEWAY_WRITE_KEYS_FILE is read again for rotated keys; 0: never")
	fs.Int(&c.MemoryLimit, "memory-limit", "GATEWAY_MEMORY_LIMIT", 0, "the container's memory limit in bytes; GOMEMLIMIT is set to 90% of it unless GOMEMLIMIT is set; 0: none")
	fs.BoolVar(&c.PrintEnv, "print-env", false, "print the environment variables the gateway reads, one per line, and exit")
	fs.BoolVar(&c.PrintVersion, "version", false, "print the build's version, revision and Go version, and exit")
	fs.StringVar(&c.Probe, "probe", "", "GET this URL, exit 0 if it answers 2xx (the chart's helm test)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.EnvVars = fs.Vars()
	if err := fs.Err(); err != nil {
		errs = append(errs, err)
	}
	c.MaxBufferBytes = int64(maxBuffer)
	if c.PrintEnv || c.PrintVersion || c.Probe != "" {
		return c, nil
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("KINESIS_STREAM (-stream) is required"))
	}
	if err := fs.Negative(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"GATEWAY_READ_HEADER_TIMEOUT", c.ReadHeaderTimeout}, {"GATEWAY_BODY_TIMEOUT", c.BodyTimeout}, {"GATEWAY_IDLE_TIMEOUT", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	if c.MaxHeaderBytes < 1024 {
		errs = append(errs, fmt.Errorf("GATEWAY_MAX_HEADER_BYTES must be at least 1024, got %d", c.MaxHeaderBytes))
	}
	if c.TrustedProxies < 0 || c.KeyRate < 0 || c.KeyBurst < 1 || c.KeysReload < 0 {
		errs = append(errs, fmt.Errorf("GATEWAY_TRUSTED_PROXIES %d and GATEWAY_KEY_RATE %g must not be negative, GATEWAY_KEY_BURST %d must be positive, GATEWAY_WRITE_KEYS_RELOAD %s must not be negative",
			c.TrustedProxies, c.KeyRate, c.KeyBurst, c.KeysReload))
	}
	return c, errors.Join(errs...)
}

// writeKeys merges the keys from the flag and from the file.
func (c config) writeKeys() (map[string]string, error) {
	keys, err := gateway.ParseWriteKeys(c.WriteKeys)
	if err != nil {
		return nil, fmt.Errorf("parse GATEWAY_WRITE_KEYS: %w", err)
	}
	if c.WriteKeysFile != "" {
		b, err := os.ReadFile(c.WriteKeysFile)
		if err != nil {
			return nil, fmt.Errorf("read GATEWAY_WRITE_KEYS_FILE: %w", err)
		}
		more, err := gateway.ParseWriteKeys(strings.ReplaceAll(string(b), "\n", ","))
		if err != nil {
			return nil, fmt.Errorf("parse GATEWAY_WRITE_KEYS_FILE: %w", err)
		}
		for k, v := range more {
			keys[k] = v
		}
	}
	return keys, nil
}
