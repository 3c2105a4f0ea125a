//go:build integration

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// externalMetrics are the series the chart's alerts and dashboard use that
// our binaries do not export: Prometheus's own up, and kube-state-metrics.
var externalMetrics = []string{"up", "kube_pod_container_status_restarts_total", "kube_pod_container_status_last_terminated_reason"}

// metricRE finds metric names in the rules and the dashboard: ours and
// the process collector's by prefix, kube-state-metrics', and up by its
// selector. Descriptions name metrics too, which must then exist as well.
var metricRE = regexp.MustCompile(`\b(?:gateway|worker|process|kube)_[a-z0-9_]*[a-z0-9]|\bup\{`)

// metricNames are the metric families the chart's alert rules and
// dashboard name, histogram suffixes removed.
func metricNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, f := range []string{"../../charts/telemetry/files/alerts.yaml", "../../charts/telemetry/files/dashboard.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricRE.FindAllString(string(b), -1) {
			m = strings.TrimSuffix(m, "{")
			for _, suf := range []string{"_bucket", "_count", "_sum"} {
				m = strings.TrimSuffix(m, suf)
			}
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
	}
	slices.Sort(names)
	return names
}

// scrape returns the metric family names served at http://addr/metrics.
func scrape(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse metrics of %s: %v", addr, err)
	}
	out := map[string]bool{}
	for name, f := range fams {
		if len(f.Metric) > 0 {
			out[name] = true
		}
	}
	return out
}

// logged finds `"key":"value"` in a zap JSON log.
func logged(logs, key string) string {
	m := regexp.MustCompile(`"` + key + `":"([^"]+)"`).FindStringSubmatch(logs)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestAlertAndDashboardMetricsExported runs the gateway and a worker with
// every sink, sends events through them, and scrapes both: each metric the
// chart's alert rules and dashboard name must be served (with at least one
// series), or be one of the few that Prometheus or kube-state-metrics
// provide. A renamed metric fails here instead of silently emptying a
// panel or disarming an alert.
func TestAlertAndDashboardMetricsExported(t *testing.T) {
	e := newEnv(t, 2)
	seg := newSegmentServer(t, "seg-key")
	ga := newGA4Server(t)
	w := e.startWorker("obs", "S3_BUCKET="+e.bucket, "S3_BUFFER_INTERVAL=1s", "DYNAMODB_COUNTS_TABLE="+e.app+"-counts",
		"DYNAMODB_COUNT_FLUSH_INTERVAL=200ms", "SEGMENT_WRITE_KEY=seg-key", "SEGMENT_ENDPOINT="+seg.srv.URL,
		"GA4_MEASUREMENT_ID=G-TEST", "GA4_API_SECRET=secret", "GA4_ENDPOINT="+ga.srv.URL)
	addr, gwLogs := startGateway(t, e, "obs-key=obs")

	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("obs-%d", i)
		ids = append(ids, id)
		body := fmt.Sprintf(`{"userId":"u","event":"Build Finished","messageId":%q,"properties":{"buildVersion":"1.2.3"}}`, id)
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/track", strings.NewReader(body))
		req.SetBasicAuth("obs-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /v1/track: %d", resp.StatusCode)
		}
	}
	waitFor(t, "the events in the file sink", time.Minute, allDelivered(t, ids, w))
	waitFor(t, "the events in Segment", time.Minute, func() bool { return len(seg.received()) == len(ids) })

	gwMetrics := logged(gwLogs.String(), "metrics_addr")
	var wkMetrics string
	waitFor(t, "the worker to log its metrics address", 30*time.Second, func() bool {
		wkMetrics = logged(w.logs.String(), "metrics_addr")
		return wkMetrics != ""
	})
	if gwMetrics == "" {
		t.Fatal("the gateway did not log its metrics address")
	}
	names := metricNames(t)
	if len(names) < 20 {
		t.Fatalf("found only %d metric names in the rules and dashboard: %v", len(names), names)
	}
	// Gauges set by periodic passes (retention, open shards, letters)
	// appear within a pass or two.
	var missing []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		served := scrape(t, gwMetrics)
		for n := range scrape(t, wkMetrics) {
			served[n] = true
		}
		missing = missing[:0]
		for _, n := range names {
			if !served[n] && !slices.Contains(externalMetrics, n) {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("named by the chart's alerts or dashboard, served by neither binary: %v", missing)
	}
	t.Logf("%d metrics named by the alerts and dashboard, all served (or external: %v)", len(names), externalMetrics)
}
