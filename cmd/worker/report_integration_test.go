//go:build integration

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/testkit"
)

// textTable reads `worker counts` output back: value -> the counts of its
// day columns (newest first), plus the days. Columns are right-aligned
// under their headers, so each cell ends where its header ends.
func textTable(t *testing.T, out string) (days []string, rows map[string][]int64) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var head int
	for head = range lines {
		if strings.HasPrefix(lines[head], "buildVersion ") {
			break
		}
	}
	header := lines[head]
	var ends []int
	for _, m := range regexp.MustCompile(`\S+`).FindAllStringIndex(header, -1) {
		ends = append(ends, m[1])
	}
	fields := strings.Fields(header)
	rows = map[string][]int64{}
	for _, line := range lines[head+1:] {
		var cells []string
		start := 0
		for i, end := range ends {
			cell := ""
			if start < len(line) {
				cell = line[start:min(end, len(line))]
			}
			if i == 0 {
				cell = strings.Fields(line)[0]
			}
			cells = append(cells, strings.TrimSpace(cell))
			start = end
		}
		var counts []int64
		for i := 3; i < len(cells); i += 2 { // value, total, share, then day and share pairs
			n, _ := strconv.ParseInt(strings.ReplaceAll(strings.TrimSuffix(cells[i], "-"), ",", ""), 10, 64)
			counts = append(counts, n)
		}
		rows[cells[0]] = counts
	}
	for i := 3; i < len(fields); i += 2 {
		days = append(days, fields[i])
	}
	return days, rows
}

// TestCountsPageMatchesTable: on the local stack, a month of corpus builds
// (devstack send) goes through a worker into the counters; the page of
// `worker counts -html` then charts exactly what `worker counts` prints:
// each shown value's daily counts, other as the sum of the rest, not set
// as the builds without a version, and the builds of each day.
func TestCountsPageMatchesTable(t *testing.T) {
	e := newEnv(t, 2)
	table := e.app + "-counts"
	e.startWorker("report", "DYNAMODB_COUNTS_TABLE="+table, "DYNAMODB_COUNT_FLUSH_INTERVAL=200ms")
	devstackBin := testkit.Binary(t, "../devstack", false)
	childEnv := append(e.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+e.stream, "DYNAMODB_COUNTS_TABLE="+table)
	send := exec.Command(devstackBin, "send", "-n", "3000", "-days", "10", "-seed", "7")
	send.Env = childEnv
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("devstack send: %v\n%s", err, out)
	}
	waitFor(t, "3000 builds counted", 2*time.Minute, func() bool { return countedBuilds(t, e, table) == 3000 })

	counts := func(args ...string) string {
		cmd := exec.Command(workerBin(t), append([]string{"counts", "-days", "10"}, args...)...)
		cmd.Env = childEnv
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("worker counts %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	days, text := textTable(t, counts())
	pagePath := filepath.Join(t.TempDir(), "report.html")
	counts("-html", pagePath, "-top", "4")
	b, err := os.ReadFile(pagePath)
	if err != nil {
		t.Fatal(err)
	}
	rows := testkit.DailyTables(string(b))["buildVersion"]
	if len(days) != 10 || len(rows) != 11 {
		t.Fatalf("text has days %v, the page %d rows", days, len(rows))
	}
	header := rows[0] // day, values..., builds
	values := header[1 : len(header)-1]
	if len(values) < 4 {
		t.Fatalf("page charts %v, want the top 4 and more", values)
	}
	for _, row := range rows[1:] {
		d := -1
		for i, day := range days {
			if day == row[0] {
				d = i
			}
		}
		if d < 0 {
			t.Fatalf("page day %s is not in the text's days %v", row[0], days)
		}
		cell := func(i int) int64 { n, _ := strconv.ParseInt(row[i], 10, 64); return n }
		var shown, all int64
		for i, v := range values {
			switch v {
			case "other", "(not set)":
				continue
			}
			if got, want := cell(i+1), text[v][d]; got != want {
				t.Errorf("%s %s: page %d, text %d", row[0], v, got, want)
			}
			shown += cell(i + 1)
		}
		for v, c := range text {
			if v != "builds" {
				all += c[d]
			}
		}
		var other int64
		for i, v := range values {
			if v == "other" {
				other = cell(i + 1)
			}
		}
		if other != all-shown {
			t.Errorf("%s: other %d, want the %d builds of the values not shown", row[0], other, all-shown)
		}
		if got, want := cell(len(row)-1), text["builds"][d]; got != want {
			t.Errorf("%s: page builds %d, text %d", row[0], got, want)
		}
	}
	if !strings.Contains(string(b), "<svg") {
		t.Error("no chart on the page")
	}
	t.Logf("page charts %v over %d days, equal to worker counts", values, len(rows)-1)
}
