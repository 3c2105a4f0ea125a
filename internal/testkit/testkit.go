// Package testkit holds the helpers the tests of several packages share:
// a buffer a child process and the test can use at once, polling for a
// condition, and reading an adoption page back. The sink contract suite is its sinktest package.
package testkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer safe for a writer (a child process's output)
// and a reader (the test) at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor polls cond until it holds, failing the test after timeout, and
// returns how long it took. It polls every 10 ms at first, then slower, so
// that fast conditions return fast and slow ones do not spin.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for delay := 10 * time.Millisecond; !cond(); delay = min(2*delay, 100*time.Millisecond) {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(delay)
	}
	return time.Since(start)
}

var (
	dailyTableRE = regexp.MustCompile(`(?s)<table class="daily" data-dimension="([^"]+)">(.*?)</table>`)
	tableRowRE   = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	tableCellRE  = regexp.MustCompile(`<t[hd]>([^<]*)</t[hd]>`)
)

// DailyTables reads the daily-count tables of an adoption page (`worker
// counts -html`) back: dimension -> rows of cells, the header first.
func DailyTables(page string) map[string][][]string {
	out := map[string][][]string{}
	for _, m := range dailyTableRE.FindAllStringSubmatch(page, -1) {
		for _, row := range tableRowRE.FindAllStringSubmatch(m[2], -1) {
			var cells []string
			for _, c := range tableCellRE.FindAllStringSubmatch(row[1], -1) {
				cells = append(cells, c[1])
			}
			out[m[1]] = append(out[m[1]], cells)
		}
	}
	return out
}

// LoggedField waits until a child process's zap JSON output in logs has a
// line whose msg is msg and returns that line's field, failing the test
// after timeout. Tests start binaries on port 0 and read the address the
// binary logs, rather than guess a free port that another process could
// take before the child listens.
func LoggedField(t testing.TB, logs fmt.Stringer, msg, field string, timeout time.Duration) string {
	t.Helper()
	var v string
	WaitFor(t, fmt.Sprintf("log line %q with %s", msg, field), timeout, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if !strings.Contains(line, msg) || json.Unmarshal([]byte(line), &m) != nil || m["msg"] != msg {
				continue
			}
			if s, ok := m[field].(string); ok {
				v = s
				return true
			}
		}
		return false
	})
	return v
}
