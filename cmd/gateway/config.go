package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/buildtelemetry/pipeline/gateway"
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

	// EnvVars lists every environment variable the gateway reads; the
	// chart tests compare it with what the chart sets.
	EnvVars []string
	// PrintEnv asks main to print EnvVars and exit (-print-env).
	PrintEnv bool
}

func loadConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var errs []error
	str := func(p *string, name, env, def, usage string) {
		c.EnvVars = append(c.EnvVars, env)
		v := getenv(env)
		if v == "" {
			v = def
		}
		fs.StringVar(p, name, v, usage+" ($"+env+")")
	}
	num := func(p *int, name, env string, def int, usage string) {
		c.EnvVars = append(c.EnvVars, env)
		v := def
		if s := getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("parse $%s: %w", env, err))
			}
			v = n
		}
		fs.IntVar(p, name, v, usage+" ($"+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		c.EnvVars = append(c.EnvVars, env)
		v := def
		if s := getenv(env); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("parse $%s: %w", env, err))
			}
			v = d
		}
		fs.DurationVar(p, name, v, usage+" ($"+env+")")
	}
	var maxBuffer int
	str(&c.Addr, "addr", "GATEWAY_ADDR", ":8080", "address of the ingest API")
	str(&c.MetricsAddr, "metrics-addr", "GATEWAY_METRICS_ADDR", ":9090", "address of /metrics")
	str(&c.Stream, "stream", "KINESIS_STREAM", "", "Kinesis stream name (required)")
	str(&c.Region, "region", "AWS_REGION", "us-east-1", "AWS region")
	str(&c.WriteKeys, "write-keys", "GATEWAY_WRITE_KEYS", "", "accepted write keys as key=source,key2=source2")
	str(&c.WriteKeysFile, "write-keys-file", "GATEWAY_WRITE_KEYS_FILE", "", "file holding write keys, one key=source per line (a mounted secret)")
	str(&c.LegacySource, "legacy-source", "GATEWAY_LEGACY_SOURCE", "", "source of /collect and /identify requests without a write key; empty: they need one")
	num(&c.MaxEventBytes, "max-event-bytes", "GATEWAY_MAX_EVENT_BYTES", gateway.DefaultMaxEventBytes, "largest event accepted")
	num(&c.MaxRequestBytes, "max-request-bytes", "GATEWAY_MAX_REQUEST_BYTES", gateway.DefaultMaxRequestBytes, "largest request body accepted, after gzip decompression")
	dur(&c.AckTimeout, "ack-timeout", "GATEWAY_ACK_TIMEOUT", gateway.DefaultAckTimeout, "longest wait for Kinesis before answering 503")
	dur(&c.Linger, "linger", "GATEWAY_LINGER", gateway.DefaultLinger, "how long a group commit waits for more events")
	num(&c.MaxRecordBytes, "max-record-bytes", "GATEWAY_MAX_RECORD_BYTES", gateway.DefaultMaxRecordBytes, "uncompressed event bytes packed into one Kinesis record")
	num(&maxBuffer, "max-buffer-bytes", "GATEWAY_MAX_BUFFER_BYTES", int(gateway.DefaultMaxBufferBytes), "event bytes buffered before answering 429")
	num(&c.MaxInFlight, "max-in-flight", "GATEWAY_MAX_IN_FLIGHT", gateway.DefaultMaxInFlight, "concurrent PutRecords calls")
	dur(&c.RetryTimeout, "retry-timeout", "GATEWAY_RETRY_TIMEOUT", gateway.DefaultRetryTimeout, "how long failed Kinesis entries are retried before answering 503")
	dur(&c.DrainDelay, "drain-delay", "GATEWAY_DRAIN_DELAY", 0, "on SIGTERM, how long /readyz fails before the listener closes (let the load balancer notice)")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "GATEWAY_SHUTDOWN_TIMEOUT", 20*time.Second, "on SIGTERM, how long in-flight requests and buffered events get to finish")
	str(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	fs.BoolVar(&c.PrintEnv, "print-env", false, "print the environment variables the gateway reads, one per line, and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.MaxBufferBytes = int64(maxBuffer)
	if c.PrintEnv {
		return c, nil
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("KINESIS_STREAM (-stream) is required"))
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
