//go:build integration

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/testkit"
)

// buildBinaries builds the gateway and the worker, without -race (the
// load and the emulators need the CPU more than the binaries need the
// race detector, which their own tests run).
func buildBinaries(t *testing.T) (gateway, worker string) {
	t.Helper()
	start := time.Now()
	gateway, worker = testkit.Binary(t, "../cmd/gateway", false), testkit.Binary(t, "../cmd/worker", false)
	t.Logf("built gateway and worker in %v", time.Since(start).Round(100*time.Millisecond))
	return gateway, worker
}

// proc is one child process (a gateway or worker incarnation). Its output
// goes to a log file of its own.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error       // exit status, set before done closes
	stopped atomic.Bool // the harness signalled it: an exit is expected
}

func startProc(name, logPath, bin string, env []string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig, marking the coming exit as expected.
func (p *proc) signal(sig syscall.Signal) {
	p.stopped.Store(true)
	_ = p.cmd.Process.Signal(sig)
}

// wait waits for the process to exit, up to timeout.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", p.name, timeout)
	}
}

// kill stops the process for good (test cleanup).
func (p *proc) kill() {
	p.stopped.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stableListen listens on a free loopback port below the kernel's
// ephemeral range. A server that is taken down and must come back on the
// same port (the gateway, the Segment server) cannot use a port from that
// range: while it is down, any outgoing connection on the machine may be
// given the port as its local port, and the listen would fail.
func stableListen() (net.Listener, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const base = 10000
	if lo <= base+1000 {
		return net.Listen("tcp", "127.0.0.1:0") // odd kernel settings: best effort
	}
	var err error
	for range 200 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+rand.IntN(lo-base))); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free port below %d: %w", lo, err)
}

// stableAddr returns a free address from stableListen for a child process
// to listen on.
func stableAddr() (string, error) {
	ln, err := stableListen()
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(ctx context.Context, timeout, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(every)
	}
}

func httpOK(url string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// timeline records what the harness did and when, relative to the start
// of the load.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

func (tl *timeline) addf(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	at := "setup    "
	if !tl.start.IsZero() {
		at = fmt.Sprintf("t+%6.1fs", time.Since(tl.start).Seconds())
	}
	tl.lines = append(tl.lines, at+"  "+fmt.Sprintf(format, args...))
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.lines, "\n")
}
