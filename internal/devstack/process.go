package devstack

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
)

// EnvNodeDir overrides where Start looks for emulators.js and node_modules.
const EnvNodeDir = "DEVSTACK_NODE_DIR"

// nodeSubdir is the node directory relative to the module root.
const nodeSubdir = "internal/devstack/node"

// stderrTailBytes is how much of node's stderr start and stop errors quote.
const stderrTailBytes = 4 << 10

// Start runs the emulators in a child node process and returns once all three listen.
// ctx bounds only the start-up; the process lives until Close. If the Go process dies
// without calling Close, the emulators still exit: they watch their stdin, a pipe
// whose write end only this process holds.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	dir, err := findNodeDir(cfg.NodeDir)
	if err != nil {
		return nil, err
	}
	node := cfg.Node
	if node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			return nil, fmt.Errorf("devstack: find node binary: %w (install Node.js >= 20)", err)
		}
	}
	startTimeout := cfg.StartTimeout
	if startTimeout <= 0 {
		startTimeout = DefaultStartTimeout
	}
	stopTimeout := cfg.StopTimeout
	if stopTimeout <= 0 {
		stopTimeout = DefaultStopTimeout
	}
	dataDir := cfg.DataDir
	if dataDir != "" {
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return nil, fmt.Errorf("devstack: resolve data dir: %w", err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}

	// Not exec.CommandContext: ctx only bounds the start, the stack outlives it.
	cmd := exec.Command(node, "emulators.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"NODE_OPTIONS="+nodeOptions(os.Getenv("NODE_OPTIONS")),
		"KINESIS_PORT="+strconv.Itoa(cfg.KinesisPort),
		"DYNAMODB_PORT="+strconv.Itoa(cfg.DynamoDBPort),
		"S3_PORT="+strconv.Itoa(cfg.S3Port),
		"DATA_DIR="+dataDir, // explicitly empty so an inherited DATA_DIR cannot leak in
		"WATCH_STDIN=1",
	)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = stopTimeout

	p := &process{
		cmd:         cmd,
		done:        make(chan struct{}),
		stopTimeout: stopTimeout,
		tail:        &tailBuffer{max: stderrTailBytes},
	}
	ready := &lineWriter{line: make(chan []byte, 1), rest: ignoreErrors{log}}
	cmd.Stdout = ready
	cmd.Stderr = io.MultiWriter(p.tail, ignoreErrors{log})
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("devstack: create stdin pipe: %w", err)
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("devstack: start node: %w", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var line []byte
	select {
	case line = <-ready.line:
	case <-p.done:
		return nil, fmt.Errorf("devstack: start emulators: node exited: %v%s", p.waitErr, p.tail.quote())
	case <-ctx.Done():
		_ = p.close()
		return nil, fmt.Errorf("devstack: start emulators: %w%s", ctx.Err(), p.tail.quote())
	case <-timer.C:
		_ = p.close()
		return nil, fmt.Errorf("devstack: start emulators: no endpoints after %s%s", startTimeout, p.tail.quote())
	}

	var e struct{ Kinesis, DynamoDB, S3 string }
	if err := json.Unmarshal(line, &e); err != nil {
		_ = p.close()
		return nil, fmt.Errorf("devstack: parse endpoints line %q: %w", line, err)
	}
	if e.Kinesis == "" || e.DynamoDB == "" || e.S3 == "" {
		_ = p.close()
		return nil, fmt.Errorf("devstack: parse endpoints line %q: missing endpoint", line)
	}
	fmt.Fprintf(ignoreErrors{log}, "devstack: emulators ready in %s: kinesis %s dynamodb %s s3 %s\n",
		time.Since(began).Round(time.Millisecond), e.Kinesis, e.DynamoDB, e.S3)
	mode := cfg.Limits
	mode = cmp.Or(mode, os.Getenv(EnvLimits))
	var lp *limits.Proxy
	switch mode {
	case "", LimitsAWS:
		if lp, err = limits.Start(e.Kinesis, e.DynamoDB, limits.AWS()); err != nil {
			_ = p.close()
			return nil, fmt.Errorf("devstack: %w", err)
		}
		fmt.Fprintf(ignoreErrors{log}, "devstack: AWS limits in front: kinesis %s dynamodb %s\n", lp.KinesisURL, lp.DynamoDBURL)
		e.Kinesis, e.DynamoDB = lp.KinesisURL, lp.DynamoDBURL
	case LimitsOff:
	default:
		_ = p.close()
		return nil, fmt.Errorf("devstack: %s=%q: want %s or %s", EnvLimits, mode, LimitsAWS, LimitsOff)
	}
	s := Attach(Endpoints{Kinesis: e.Kinesis, DynamoDB: e.DynamoDB, S3: e.S3})
	s.proc = p
	s.limits = lp
	return s, nil
}

// findNodeDir resolves Config.NodeDir (see there) and checks that npm ci has run.
func findNodeDir(dir string) (string, error) {
	dir = cmp.Or(dir, os.Getenv(EnvNodeDir))
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, filepath.FromSlash(nodeSubdir))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("devstack: resolve node dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "emulators.js")); err != nil {
		return "", fmt.Errorf("devstack: find emulators.js: %w", err)
	}
	for _, pkg := range []string{"kinesalite", "dynalite", "s3rver"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			return "", fmt.Errorf("devstack: node dependencies missing in %s (no node_modules/%s): run `make deps` or `npm ci --prefix %s`", dir, pkg, nodeSubdir)
		}
	}
	return dir, nil
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("devstack: get working directory: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("devstack: find module root: no go.mod above %s (set Config.NodeDir or %s)", wd, EnvNodeDir)
		}
		dir = parent
	}
}

// nodeOptions adds --openssl-legacy-provider to NODE_OPTIONS: s3rver encrypts
// ListObjectsV2 continuation tokens with DES, which OpenSSL 3 disables, so paged
// listings fail with HTTP 500 without it.
func nodeOptions(existing string) string {
	const flag = "--openssl-legacy-provider"
	for _, f := range strings.Fields(existing) {
		if f == flag {
			return existing
		}
	}
	return strings.TrimSpace(existing + " " + flag)
}

// process is the node child process.
type process struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	stopTimeout time.Duration
	tail        *tailBuffer

	done    chan struct{} // closed after waitErr is set
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// close stops the process once; later calls return the first result.
func (p *process) close() error {
	p.closeOnce.Do(func() { p.closeErr = p.stop() })
	return p.closeErr
}

func (p *process) stop() error {
	defer p.stdin.Close()
	select {
	case <-p.done:
		return fmt.Errorf("devstack: stop emulators: already exited: %v%s", p.waitErr, p.tail.quote())
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		// Only possible where SIGTERM is unsupported, or in a race with exit.
		_ = p.cmd.Process.Kill()
	}
	timer := time.NewTimer(p.stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("devstack: stop emulators: killed after %s%s", p.stopTimeout, p.tail.quote())
	}
	if p.waitErr != nil {
		return fmt.Errorf("devstack: stop emulators: %w%s", p.waitErr, p.tail.quote())
	}
	return nil
}

// lineWriter sends the first line written to it on line and passes everything after
// it to rest.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	line chan []byte // buffered, receives exactly one line
	rest io.Writer
}

// Write implements io.Writer.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return w.rest.Write(p)
	}
	w.buf = append(w.buf, p...)
	i := bytes.IndexByte(w.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	w.line <- bytes.TrimSpace(w.buf[:i])
	w.sent = true
	if len(w.buf) > i+1 {
		_, _ = w.rest.Write(w.buf[i+1:])
	}
	w.buf = nil
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// quote returns the tail formatted for the end of an error message, or "".
func (t *tailBuffer) quote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return ""
	}
	return "; node stderr:\n" + s
}

// ignoreErrors keeps a failing Config.Log from stalling or breaking the output copy.
type ignoreErrors struct{ w io.Writer }

// Write implements io.Writer.
func (w ignoreErrors) Write(p []byte) (int, error) {
	_, _ = w.w.Write(p)
	return len(p), nil
}
