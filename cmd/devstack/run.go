package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// runConfig is what `devstack run` starts.
type runConfig struct {
	binDir      string
	runDir      string
	stream      string
	shards      int
	bucket      string
	gatewayAddr string
	metricsAddr string
	devKey      string
}

// runRun implements `devstack run`, the body of `make run`: the emulators,
// the stream and bucket, the gateway as a child process, and instructions.
// It runs until SIGINT/SIGTERM, then stops the children gracefully.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devstack run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c runConfig
	fs.StringVar(&c.binDir, "bin", "bin", "directory holding the built gateway and worker binaries")
	fs.StringVar(&c.runDir, "dir", ".run", "directory for logs and the env file")
	fs.StringVar(&c.stream, "stream", "telemetry-events", "Kinesis stream to create")
	fs.IntVar(&c.shards, "shards", 4, "shards of the stream")
	fs.StringVar(&c.bucket, "bucket", "telemetry-events", "S3 bucket to create")
	fs.StringVar(&c.gatewayAddr, "gateway-addr", "127.0.0.1:8080", "gateway listen address")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9090", "gateway metrics address")
	fs.StringVar(&c.devKey, "dev-key", "dev-write-key", "write key the local gateway accepts (source \"local\")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, addr := range []string{c.gatewayAddr, c.metricsAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("address %s is taken (another make run?): %w", addr, err)
		}
		ln.Close()
	}
	if err := os.MkdirAll(c.runDir, 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	emuLog, err := os.Create(filepath.Join(c.runDir, "emulators.log"))
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	defer emuLog.Close()

	s, err := devstack.Start(ctx, devstack.Config{Log: emuLog})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.CreateStream(ctx, c.stream, int32(c.shards)); err != nil {
		return err
	}
	if err := s.CreateBucket(ctx, c.bucket); err != nil {
		return err
	}
	env := append(s.Endpoints().ChildEnv(),
		"KINESIS_STREAM="+c.stream,
		"S3_BUCKET="+c.bucket,
		"DYNAMODB_COUNTS_TABLE=telemetry-counts",
	)
	envFile := filepath.Join(c.runDir, "stack.env")
	// The gateway's address and key too, for `devstack send`.
	fileEnv := append(append([]string(nil), env...), "DEVSTACK_GATEWAY=http://"+c.gatewayAddr, "DEVSTACK_WRITE_KEY="+c.devKey)
	if err := writeEnvFile(envFile, fileEnv); err != nil {
		return err
	}
	defer os.Remove(envFile)

	gw, err := startChild(filepath.Join(c.binDir, "gateway"), filepath.Join(c.runDir, "gateway.log"), append(env,
		"GATEWAY_ADDR="+c.gatewayAddr,
		"GATEWAY_METRICS_ADDR="+c.metricsAddr,
		"GATEWAY_WRITE_KEYS="+c.devKey+"=local",
		"GATEWAY_LEGACY_SOURCE=legacy-local",
		"GATEWAY_DRAIN_DELAY=0s",
	))
	if err != nil {
		return err
	}
	defer gw.stop(stderr)
	if err := waitHTTP(ctx, "http://"+c.gatewayAddr+"/readyz", 30*time.Second, gw); err != nil {
		return fmt.Errorf("gateway did not become ready (see %s): %w", filepath.Join(c.runDir, "gateway.log"), err)
	}

	// Two workers share the stream's shards. The file sink shows every
	// delivered event locally; sinks that need credentials are passed
	// through from the caller's environment and are off without them.
	eventsFile := filepath.Join(c.runDir, "events.ndjson")
	var workers []*child
	for i := 1; i <= 2; i++ {
		wenv := append(append([]string(nil), env...),
			fmt.Sprintf("WORKER_ID=worker-%d", i),
			fmt.Sprintf("WORKER_HEALTH_ADDR=127.0.0.1:%d", 8080+i),
			fmt.Sprintf("WORKER_METRICS_ADDR=127.0.0.1:%d", 9090+i),
			"WORKER_APP=telemetry-worker",
			"DEADLETTER_BUCKET="+c.bucket,
			"SINK_FILE_PATH="+eventsFile,
			// Small buffers so that objects show up within seconds.
			"S3_BUFFER_INTERVAL=5s",
			"S3_BUFFER_BYTES=1048576",
		)
		wenv = append(wenv, passThrough(os.Environ())...)
		w, err := startChild(filepath.Join(c.binDir, "worker"), filepath.Join(c.runDir, fmt.Sprintf("worker-%d.log", i)), wenv, "run")
		if err != nil {
			return err
		}
		defer w.stop(stderr)
		workers = append(workers, w)
	}
	for i, w := range workers {
		if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", 8081+i), 30*time.Second, w); err != nil {
			return fmt.Errorf("worker-%d did not become ready (see %s): %w", i+1, filepath.Join(c.runDir, fmt.Sprintf("worker-%d.log", i+1)), err)
		}
	}

	fmt.Fprintf(stdout, `
Local stack is up (Ctrl-C stops it).
  Kinesis   %s   stream %q, %d shards
  DynamoDB  %s   lease table "telemetry-worker"
  S3        %s   bucket %q (dead letters under deadletter/)
  gateway   http://%s  (metrics http://%s/metrics)
  workers   worker-1 (health :8081, metrics :9091), worker-2 (health :8082, metrics :9092)
  logs      %s/*.log

Send an event (write key %q):
  curl -sS -u %s: -H 'Content-Type: application/json' http://%s/v1/track \
    -d '{"userId":"buildbot_user","event":"build:ci_build_process_completed","timestamp":%d,"properties":{"buildVersion":"29.50.1","nodeVersion":"v20.14.0","status":"success"}}'

See what arrived:
  tail -f %[14]s                          # every event the workers delivered (file sink)
  source %[15]s && %[16]s/worker tail       # the raw stream, decoded
  source %[15]s && %[16]s/devstack s3       # S3 objects (gzip NDJSON, Athena layout); -cat prints them
  source %[15]s && %[16]s/worker counts     # build-version adoption from DynamoDB (or: make counts)

Fill it with a month of realistic builds and draw the adoption charts:
  source %[15]s && %[16]s/devstack send -n 20000 -days 30
  make report                               # writes .run/report.html (open it in a browser)

Sinks:
%[17]s
Limits: %[18]s
`, s.Endpoints().Kinesis, c.stream, c.shards, s.Endpoints().DynamoDB, s.Endpoints().S3, c.bucket,
		c.gatewayAddr, c.metricsAddr, c.runDir, c.devKey, c.devKey, c.gatewayAddr, time.Now().UnixMilli(),
		eventsFile, envFile, c.binDir, sinkStatus(os.Getenv), limitsStatus(s))

	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "devstack: stopping")
		return nil
	case <-gw.done:
		return fmt.Errorf("gateway exited: %v (see %s)", gw.err, filepath.Join(c.runDir, "gateway.log"))
	case <-workers[0].done:
		return fmt.Errorf("worker-1 exited: %v (see %s)", workers[0].err, filepath.Join(c.runDir, "worker-1.log"))
	case <-workers[1].done:
		return fmt.Errorf("worker-2 exited: %v (see %s)", workers[1].err, filepath.Join(c.runDir, "worker-2.log"))
	case <-s.Done():
		return fmt.Errorf("emulators exited (see %s)", emuLog.Name())
	}
}

// child is a process started by devstack run.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startChild(path, logPath string, env []string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: the terminal's Ctrl-C reaches only devstack, which
	// then stops children in order, gracefully.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM and waits for a graceful exit, killing after 30 s.
func (c *child) stop(stderr io.Writer) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		fmt.Fprintf(stderr, "devstack: %s did not stop in 30 s, killing\n", c.cmd.Path)
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration, c *child) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("exited: %v", c.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("timed out")
}

// passThrough returns the caller's sink credentials and settings, so that
// `SEGMENT_WRITE_KEY=... make run` turns the Segment sink on.
func passThrough(environ []string) []string {
	var out []string
	for _, kv := range environ {
		for _, p := range []string{"SEGMENT_", "GA4_"} {
			if strings.HasPrefix(kv, p) {
				out = append(out, kv)
			}
		}
	}
	return out
}

// limitsStatus says whether the stack enforces AWS's throughput limits.
func limitsStatus(s *devstack.Stack) string {
	if s.Limits() == nil {
		return "off (" + devstack.EnvLimits + "=off): the emulators take any rate"
	}
	return "Kinesis 1 MiB/s and 1,000 records/s written, 5 reads and 2 MiB/s read per shard; DynamoDB 1,000 write units/s per item (" + devstack.EnvLimits + "=off turns them off)"
}

// sinkStatus says which sinks the local workers run, and why others are off.
func sinkStatus(getenv func(string) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  file      on  -> .run/events.ndjson\n")
	fmt.Fprintf(&b, "  s3        on  -> bucket telemetry-events, events/YYYY/MM/DD/HH/ (objects every 5 s)\n")
	fmt.Fprintf(&b, "  dynamodb  on  -> table telemetry-counts\n")
	if getenv("SEGMENT_WRITE_KEY") != "" {
		fmt.Fprintf(&b, "  segment   on  (SEGMENT_WRITE_KEY is set)\n")
	} else {
		fmt.Fprintf(&b, "  segment   off: no credentials (set SEGMENT_WRITE_KEY)\n")
	}
	if getenv("GA4_MEASUREMENT_ID") != "" && getenv("GA4_API_SECRET") != "" {
		fmt.Fprintf(&b, "  ga4       on  (GA4_MEASUREMENT_ID and GA4_API_SECRET are set)\n")
	} else {
		fmt.Fprintf(&b, "  ga4       off: no credentials (set GA4_MEASUREMENT_ID and GA4_API_SECRET)\n")
	}
	return b.String()
}
