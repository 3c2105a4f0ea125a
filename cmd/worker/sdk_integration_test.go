//go:build integration

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// analyticsNodeScript sends a batch with the real @segment/analytics-node
// (from the repo's npm lockfile): 19 valid tracks and one whose messageId
// is over the gateway's limit, which the SDK does not check. Event 3 turns
// GA4 off in its integrations, event 5 everything but Segment, as consent
// managers do. It prints the callbacks' outcome as JSON.
const analyticsNodeScript = `
const { Analytics } = require('@segment/analytics-node');
const [host, writeKey, prefix] = process.argv.slice(2);
const a = new Analytics({ writeKey, host, path: '/v1/batch', flushAt: 20, flushInterval: 60000, maxRetries: 0 });
let ok = 0, failed = [];
a.on('error', (e) => failed.push(String(e && (e.reason || e.message) || e)));
const done = (err) => { if (err) failed.push(String(err)); else ok++; };
for (let i = 0; i < 20; i++) {
  const messageId = i === 7 ? prefix + '-' + 'x'.repeat(120) : prefix + '-' + i;
  const integrations = i === 3 ? { 'Google Analytics 4': false } : i === 5 ? { All: false, 'Segment.io': true } : undefined;
  a.track({ userId: 'user-' + i, event: 'build:ci_build_process_completed', messageId, integrations,
            properties: { buildVersion: '29.' + (i % 3) + '.0' } }, done);
}
a.closeAndFlush({ timeout: 20000 }).then(() => { console.log(JSON.stringify({ ok, failed })); });
`

// ga4Server counts the events GA4 Measurement Protocol requests carry.
type ga4Server struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events int
}

func newGA4Server(t *testing.T) *ga4Server {
	g := &ga4Server{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []json.RawMessage `json:"events"`
		}
		if r.URL.Path != "/mp/collect" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.events += len(body.Events)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *ga4Server) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.events
}

// TestAnalyticsNodeBatchWithInvalidEvent: the real analytics-node SDK
// sends a batch holding one event the gateway refuses. The gateway
// answers 200 (the SDK would drop a batch answered 400 without retrying,
// losing the 19 good events); the valid events reach every sink (file,
// S3, the counts, Segment, GA4); the invalid one reaches none of them and
// lands under the S3 error prefix, errors/invalid-event/, with why. And
// each sink honours integrations: GA4 misses events 3 and 5, the counts
// event 5, Segment none; the archive keeps every valid one.
func TestAnalyticsNodeBatchWithInvalidEvent(t *testing.T) {
	nodeModules, err := filepath.Abs("../../internal/devstack/node/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(nodeModules, "@segment", "analytics-node")); err != nil {
		t.Fatalf("@segment/analytics-node is not installed (make deps installs it from the lockfile): %v", err)
	}
	e := newEnv(t, 2)
	seg := newSegmentServer(t, "seg-key")
	ga := newGA4Server(t)
	counts := devstack.UniqueName(t, "counts")
	w := e.startWorker("sdk", "S3_BUCKET="+e.bucket, "S3_BUFFER_INTERVAL=1s", "DYNAMODB_COUNTS_TABLE="+counts, "DYNAMODB_COUNT_FLUSH_INTERVAL=200ms",
		"SEGMENT_WRITE_KEY=seg-key", "SEGMENT_ENDPOINT="+seg.srv.URL,
		"GA4_MEASUREMENT_ID=G-TEST", "GA4_API_SECRET=secret", "GA4_ENDPOINT="+ga.srv.URL)

	addr, _ := startGateway(t, e, "sdk-key=sdk")

	script := filepath.Join(t.TempDir(), "send.js")
	if err := os.WriteFile(script, []byte(analyticsNodeScript), 0o600); err != nil {
		t.Fatal(err)
	}
	node := exec.Command("node", script, "http://"+addr, "sdk-key", "sdk")
	node.Env = append(os.Environ(), "NODE_PATH="+nodeModules)
	out, err := node.CombinedOutput()
	if err != nil {
		t.Fatalf("analytics-node: %v\n%s", err, out)
	}
	var res struct {
		OK     int      `json:"ok"`
		Failed []string `json:"failed"`
	}
	if err := json.Unmarshal([]byte(lastLine(string(out))), &res); err != nil {
		t.Fatalf("analytics-node output: %s", out)
	}
	if res.OK != 20 || len(res.Failed) != 0 {
		t.Fatalf("analytics-node: %d delivered, failures %v; want all 20 acknowledged (the gateway answers 200)", res.OK, res.Failed)
	}
	var valid []string
	for i := 0; i < 20; i++ {
		if i != 7 {
			valid = append(valid, fmt.Sprintf("sdk-%d", i))
		}
	}
	waitFor(t, "the valid events in the file sink", time.Minute, allDelivered(t, valid, w))
	waitFor(t, "the valid events in S3", time.Minute, func() bool {
		got := s3Events(t, e)
		for _, id := range valid {
			if got[id] != 1 {
				return false
			}
		}
		return len(got) == len(valid)
	})
	waitFor(t, "the valid events counted but event 5 (All: false)", time.Minute, func() bool { return countedBuilds(t, e, counts) == len(valid)-1 })
	waitFor(t, "the valid events in Segment", time.Minute, func() bool {
		got := seg.received()
		for _, id := range valid {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	waitFor(t, "the valid events in GA4 but events 3 and 5", time.Minute, func() bool { return ga.count() == len(valid)-2 })
	waitFor(t, "the refused event under errors/invalid-event/", time.Minute, func() bool {
		lines := s3ErrorLines(t, e, "errors/invalid-event/")
		return len(lines) == 1 && strings.Contains(lines[0], "sdk-xxxx") && strings.Contains(lines[0], "over the limit of 99")
	})
	if got := seg.received(); len(got) != len(valid) {
		t.Errorf("Segment got %d distinct events, want the %d valid ones only", len(got), len(valid))
	}
	if got, _ := delivered(t, w); len(got) != len(valid) {
		t.Errorf("the file sink got %d distinct events, want the %d valid ones only", len(got), len(valid))
	}
	if c := ga.count(); c != len(valid)-2 {
		t.Errorf("GA4 got %d events, want %d", c, len(valid)-2)
	}
	if n := countedBuilds(t, e, counts); n != len(valid)-1 {
		t.Errorf("counted %d builds, want %d", n, len(valid)-1)
	}
}

// s3ErrorLines returns the error lines under prefix, each with its
// rawData decoded, as text.
func s3ErrorLines(t *testing.T, e *env, prefix string) []string {
	t.Helper()
	var lines []string
	s3Lines(t, e, prefix, func(line []byte) {
		var l struct {
			ErrorCode    string `json:"errorCode"`
			ErrorMessage string `json:"errorMessage"`
			RawData      []byte `json:"rawData"`
		}
		if json.Unmarshal(line, &l) == nil {
			lines = append(lines, l.ErrorCode+" "+l.ErrorMessage+" "+string(l.RawData))
		}
	})
	return lines
}
