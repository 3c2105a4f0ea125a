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
	"text/template"
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
	workers     int
}

// parseRunFlags reads `devstack run`'s flags.
func parseRunFlags(args []string, stderr io.Writer) (runConfig, error) {
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
	fs.IntVar(&c.workers, "workers", 2, "workers sharing the stream's shards (worker-N: health on port 8080+N, metrics on 9090+N)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.shards < 1 || c.workers < 1 || c.workers > 9 {
		return c, fmt.Errorf("%w: -shards %d and -workers %d: want at least one shard and 1 to 9 workers", errUsage, c.shards, c.workers)
	}
	return c, nil
}

// runRun implements `devstack run`, the body of `make run`: the emulators,
// the stream and bucket, the gateway and the workers as child processes,
// and instructions. It runs until SIGINT/SIGTERM, then stops the children
// gracefully; it stops too, saying why, when any of them exits.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
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

	children, err := c.startChildren(ctx, env, stderr)
	for _, ch := range children {
		defer ch.stop(stderr)
	}
	if err != nil {
		return err
	}
	if err := c.printBanner(stdout, s, envFile); err != nil {
		return err
	}
	exited := make(chan *child, len(children))
	for _, ch := range children {
		go func() {
			<-ch.done
			exited <- ch
		}()
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "devstack: stopping")
		return nil
	case ch := <-exited:
		return fmt.Errorf("%s exited: %v (see %s)", ch.name, ch.err, ch.logPath)
	case <-s.Done():
		return fmt.Errorf("emulators exited (see %s)", emuLog.Name())
	}
}

// startChildren starts the gateway, then c.workers workers, each once the
// one before is ready, and returns those it started, in that order, for
// the caller to stop.
func (c runConfig) startChildren(ctx context.Context, env []string, stderr io.Writer) ([]*child, error) {
	gw, err := startChild("gateway", filepath.Join(c.binDir, "gateway"), filepath.Join(c.runDir, "gateway.log"), append(env,
		"GATEWAY_ADDR="+c.gatewayAddr,
		"GATEWAY_METRICS_ADDR="+c.metricsAddr,
		"GATEWAY_WRITE_KEYS="+c.devKey+"=local",
		"GATEWAY_LEGACY_SOURCE=legacy-local",
		"GATEWAY_DRAIN_DELAY=0s",
	))
	if err != nil {
		return nil, err
	}
	children := []*child{gw}
	if err := waitHTTP(ctx, "http://"+c.gatewayAddr+"/readyz", 30*time.Second, gw); err != nil {
		return children, fmt.Errorf("gateway did not become ready (see %s): %w", gw.logPath, err)
	}
	// The workers share the stream's shards. The file sink shows every
	// delivered event locally; sinks that need credentials are passed
	// through from the caller's environment and are off without them.
	for i := 1; i <= c.workers; i++ {
		wenv := append(append([]string(nil), env...),
			fmt.Sprintf("WORKER_ID=worker-%d", i),
			fmt.Sprintf("WORKER_HEALTH_ADDR=127.0.0.1:%d", 8080+i),
			fmt.Sprintf("WORKER_METRICS_ADDR=127.0.0.1:%d", 9090+i),
			"WORKER_APP=telemetry-worker",
			"DEADLETTER_BUCKET="+c.bucket,
			"SINK_FILE_PATH="+c.eventsFile(),
			// Small buffers so that objects show up within seconds.
			"S3_BUFFER_INTERVAL=5s",
			"S3_BUFFER_BYTES=1048576",
		)
		wenv = append(wenv, passThrough(os.Environ())...)
		name := fmt.Sprintf("worker-%d", i)
		w, err := startChild(name, filepath.Join(c.binDir, "worker"), filepath.Join(c.runDir, name+".log"), wenv, "run")
		if err != nil {
			return children, err
		}
		children = append(children, w)
	}
	for i, w := range children[1:] {
		if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", 8081+i), 30*time.Second, w); err != nil {
			return children, fmt.Errorf("%s did not become ready (see %s): %w", w.name, w.logPath, err)
		}
	}
	return children, nil
}

func (c runConfig) eventsFile() string { return filepath.Join(c.runDir, "events.ndjson") }

// banner is what `make run` prints once the stack is up.
var banner = template.Must(template.New("banner").Parse(`
Local stack is up (Ctrl-C stops it).
  Kinesis   {{.Kinesis}}   stream "{{.Stream}}", {{.Shards}} shards
  DynamoDB  {{.DynamoDB}}   lease table "telemetry-worker"
  S3        {{.S3}}   bucket "{{.Bucket}}" (dead letters under deadletter/)
  gateway   http://{{.GatewayAddr}}  (metrics http://{{.MetricsAddr}}/metrics)
  workers   {{.Workers}}
  logs      {{.RunDir}}/*.log

Send an event (write key "{{.DevKey}}"):
  curl -sS -u {{.DevKey}}: -H 'Content-Type: application/json' http://{{.GatewayAddr}}/v1/track \
    -d '{"userId":"buildbot_user","event":"build:ci_build_process_completed","timestamp":{{.NowMillis}},"properties":{"buildVersion":"29.50.1","nodeVersion":"v20.14.0","status":"success"}}'

See what arrived:
  tail -f {{.EventsFile}}                          # every event the workers delivered (file sink)
  source {{.EnvFile}} && {{.BinDir}}/worker tail       # the raw stream, decoded
  source {{.EnvFile}} && {{.BinDir}}/devstack s3       # S3 objects (gzip NDJSON, Athena layout); -cat prints them
  source {{.EnvFile}} && {{.BinDir}}/worker counts     # build-version adoption from DynamoDB (or: make counts)

Fill it with a month of realistic builds and draw the adoption charts:
  source {{.EnvFile}} && {{.BinDir}}/devstack send -n 20000 -days 30
  make report                               # writes .run/report.html (open it in a browser)

Sinks:
{{.Sinks}}
Limits: {{.Limits}}
`))

// printBanner prints the banner for the running stack.
func (c runConfig) printBanner(w io.Writer, s *devstack.Stack, envFile string) error {
	var workers []string
	for i := 1; i <= c.workers; i++ {
		workers = append(workers, fmt.Sprintf("worker-%d (health :%d, metrics :%d)", i, 8080+i, 9090+i))
	}
	return banner.Execute(w, bannerData{
		Stream: c.stream, Shards: c.shards, Bucket: c.bucket, GatewayAddr: c.gatewayAddr, MetricsAddr: c.metricsAddr,
		RunDir: c.runDir, DevKey: c.devKey, BinDir: c.binDir, EventsFile: c.eventsFile(), EnvFile: envFile,
		Kinesis: s.Endpoints().Kinesis, DynamoDB: s.Endpoints().DynamoDB, S3: s.Endpoints().S3,
		Workers: strings.Join(workers, ", "), NowMillis: time.Now().UnixMilli(), Sinks: sinkStatus(os.Getenv), Limits: limitsStatus(s),
	})
}

// bannerData is what the banner shows.
type bannerData struct {
	Stream, Bucket, GatewayAddr, MetricsAddr, RunDir, DevKey, BinDir, EventsFile, EnvFile string
	Kinesis, DynamoDB, S3, Workers, Sinks, Limits                                         string
	Shards                                                                                int
	NowMillis                                                                             int64
}

// child is a process started by devstack run.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

func startChild(name, path, logPath string, env []string, args ...string) (*child, error) {
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
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
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
