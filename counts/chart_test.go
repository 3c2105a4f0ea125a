package counts

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/testkit"
	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
)

// The chart's series are the report's counts: the top values' daily
// counts, the rest summed as other, the builds without the property as
// not set, each share over that day's builds, oldest day first.
func TestSeriesEqualCounts(t *testing.T) {
	r := Build("buildVersion", knownDays(), 3, now)
	s := r.Series(2)
	if !slices.Equal(s.Days, []string{"2026-11-25", "2026-11-26", "2026-11-27"}) || !slices.Equal(s.Events, []int64{100, 2000, 300}) {
		t.Fatalf("days %v events %v", s.Days, s.Events)
	}
	// Over the window: 29.57.3 1529, 29.58.0 700, 29.56.0 140, 29.58.2 30.
	want := map[string][]int64{
		"29.58.0":   {0, 500, 200},
		"29.57.3":   {60, 1400, 69},
		OtherLabel:  {40, 100, 30},
		NotSetLabel: {0, 0, 1},
	}
	if !slices.Equal(s.Values, []string{"29.58.0", "29.57.3", OtherLabel, NotSetLabel}) || !s.Stacked {
		t.Fatalf("values %v stacked %v", s.Values, s.Stacked)
	}
	for i, v := range s.Values {
		if !slices.Equal(s.Counts[i], want[v]) {
			t.Errorf("%s: counts %v, want %v", v, s.Counts[i], want[v])
		}
		for d, c := range s.Counts[i] {
			if got := s.Shares[i][d]; got != float64(c)/float64(s.Events[d]) {
				t.Errorf("%s on %s: share %v, want %d/%d", v, s.Days[d], got, c, s.Events[d])
			}
		}
	}
	// Every day's bands fill it exactly.
	for d := range s.Days {
		var sum int64
		for i := range s.Values {
			sum += s.Counts[i][d]
		}
		if sum != s.Events[d] {
			t.Errorf("%s: bands sum to %d of %d builds", s.Days[d], sum, s.Events[d])
		}
	}
}

// A multi-valued dimension (a build runs several plugins) is not stacked:
// its shares can add up past 100%, and there is no other band.
func TestSeriesMultiValued(t *testing.T) {
	dcs := []ddbsink.DayCounts{{Day: "2026-11-27", Events: 10, Values: map[string]int64{"@netlify/plugin-nextjs": 8, "netlify-plugin-cache": 6, "x": 1}}}
	s := Build("plugin", dcs, 1, now).Series(2)
	if s.Stacked || !slices.Equal(s.Values, []string{"netlify-plugin-cache", "@netlify/plugin-nextjs"}) && !slices.Equal(s.Values, []string{"@netlify/plugin-nextjs", "netlify-plugin-cache"}) {
		t.Errorf("values %v stacked %v, want the two top plugins as lines", s.Values, s.Stacked)
	}
}

// The page is self-contained (no script, nothing fetched), holds one
// chart per dimension with every series in its legend, and its daily
// tables, the numbers drawn, equal the counts.
func TestWriteHTML(t *testing.T) {
	dims := []Report{
		Build("buildVersion", knownDays(), 3, now),
		Build("plugin", []ddbsink.DayCounts{{Day: "2026-11-27", Events: 10, Values: map[string]int64{"a": 8, "b": 6}}}, 3, now),
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, dims, 2, now); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script") || regexp.MustCompile(`(src|href)=`).MatchString(page) || strings.Contains(page, "@import") {
		t.Error("the page loads something: it must be self-contained")
	}
	if n := strings.Count(page, "<svg"); n != 2 {
		t.Errorf("%d charts, want one per dimension", n)
	}
	tables := testkit.DailyTables(page)
	for _, r := range dims {
		s := r.Series(2)
		rows := tables[r.Dimension]
		if len(rows) != len(s.Days)+1 {
			t.Fatalf("%s: %d table rows, want a header and %d days", r.Dimension, len(rows), len(s.Days))
		}
		if want := append(append([]string{"day"}, s.Values...), "builds"); !slices.Equal(rows[0], want) {
			t.Errorf("%s: header %v, want %v", r.Dimension, rows[0], want)
		}
		for d, row := range rows[1:] {
			want := []string{s.Days[d]}
			for v := range s.Values {
				want = append(want, strconv.FormatInt(s.Counts[v][d], 10))
			}
			want = append(want, strconv.FormatInt(s.Events[d], 10))
			if !slices.Equal(row, want) {
				t.Errorf("%s %s: %v, want %v", r.Dimension, s.Days[d], row, want)
			}
		}
		for i, v := range s.Values {
			c := s.Color(i)
			entry := fmt.Sprintf(`<li><span class="swatch" style="background: #%02x%02x%02x"></span>%s</li>`, c.R, c.G, c.B, v)
			if !strings.Contains(page, entry) {
				t.Errorf("%s: the chart's legend has no %q in its colour", r.Dimension, v)
			}
		}
	}
}
