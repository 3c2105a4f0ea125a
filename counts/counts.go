// Package counts reads the counters the DynamoDB sink keeps
// (sink/dynamodb) and presents them to a person: Adoption builds the
// adoption of a dimension's values (build versions, by default) over the
// last days, and Report.Print writes it as a table for a terminal.
package counts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
)

// DefaultDimension is the dimension a report is about unless told.
const DefaultDimension = "buildVersion"

// MaxDays bounds a report's window: more days than this would not fit a
// terminal anyway.
const MaxDays = 366

// QueryAPI is the part of the DynamoDB client Adoption uses.
// *dynamodb.Client implements it.
type QueryAPI interface {
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

var _ QueryAPI = (*dynamodb.Client)(nil)

// Report is the adoption of one dimension's values: each value's all-time
// count, and its count on each day of a window. A share is a count over
// the events counted in the same column (the sink counts every build,
// with or without the property), so the shares of a single-valued
// dimension add up to at most 100%.
type Report struct {
	// Dimension is the dimension reported on.
	Dimension string
	// Days are the window's UTC days, newest first, in DayLayout; empty
	// for an all-time report.
	Days []string
	// Events are the events counted on each of Days.
	Events []int64
	// TotalEvents are the events counted up to the last day of the window.
	TotalEvents int64
	// Rows are the values counted in the window (every value, for an
	// all-time report), most recent first: by the last day seen, then by
	// version, newest first.
	Rows []Row
	// Older sums the values counted only before the window; its Value is
	// the number of them, as "(N older)", and it is zero when there are
	// none.
	Older Row
}

// Row is one value's counts.
type Row struct {
	Value string
	// Total is the all-time count, up to the last day of the window.
	Total int64
	// Days are the counts on each of Report.Days.
	Days []int64
	// LastSeen is the last day of the window the value was counted on
	// (of all time, for an all-time report).
	LastSeen string
}

// Adoption reads a dimension's counts from table and builds its report
// for the days days up to now's UTC day (0 days: an all-time report, every
// value). It reads the dimension's whole history, one item per day, for
// the all-time totals.
func Adoption(ctx context.Context, db QueryAPI, table, dimension string, days int, now time.Time) (Report, error) {
	if days < 0 || days > MaxDays {
		return Report{}, fmt.Errorf("counts: days %d out of range 0..%d", days, MaxDays)
	}
	dimension = cmp.Or(dimension, DefaultDimension)
	if now.IsZero() {
		return Report{}, errors.New("counts: zero time")
	}
	to := now.UTC().Format(ddbsink.DayLayout)
	dcs, err := ddbsink.ReadCounts(ctx, db, table, dimension, "", to)
	if err != nil {
		return Report{}, fmt.Errorf("counts: %w", err)
	}
	return Build(dimension, dcs, days, now), nil
}

// Build makes the report of a dimension from its daily counts (in any
// order), for the days days up to now's UTC day. Days after it are left
// out.
func Build(dimension string, dcs []ddbsink.DayCounts, days int, now time.Time) Report {
	r := Report{Dimension: dimension}
	last := now.UTC().Format(ddbsink.DayLayout)
	col := map[string]int{} // day -> index into r.Days
	for i := range days {
		d := now.UTC().AddDate(0, 0, -i).Format(ddbsink.DayLayout)
		col[d] = i
		r.Days = append(r.Days, d)
	}
	r.Events = make([]int64, days)
	rows := map[string]*Row{}
	for _, dc := range dcs {
		if dc.Day > last {
			continue
		}
		r.TotalEvents += dc.Events
		c, inWindow := col[dc.Day]
		if inWindow {
			r.Events[c] += dc.Events
		}
		for v, n := range dc.Values {
			row := rows[v]
			if row == nil {
				row = &Row{Value: v, Days: make([]int64, days)}
				rows[v] = row
			}
			row.Total += n
			if inWindow {
				row.Days[c] += n
			}
			if n > 0 && (days == 0 || inWindow) && dc.Day > row.LastSeen {
				row.LastSeen = dc.Day
			}
		}
	}
	older := 0
	for _, v := range slices.Sorted(maps.Keys(rows)) {
		row := rows[v]
		if row.LastSeen == "" {
			older++
			r.Older.Total += row.Total
			continue
		}
		r.Rows = append(r.Rows, *row)
	}
	if older > 0 {
		r.Older.Value = fmt.Sprintf("(%d older)", older)
		r.Older.Days = make([]int64, days)
	}
	slices.SortStableFunc(r.Rows, func(a, b Row) int {
		return cmp.Or(strings.Compare(b.LastSeen, a.LastSeen), CompareVersions(b.Value, a.Value))
	})
	return r
}

// Print writes the report as a table: a value per line, most recent
// first, with its all-time count and share and then its count and share
// on each day, newest first; a last line gives the events counted, the
// denominators of the shares.
//
//	buildVersion: last 2 days (UTC) to 2026-11-27; share of builds counted
//
//	buildVersion  total   share  2026-11-27  share  2026-11-26  share
//	29.58.2       1,203   40.1%         600  40.0%         603  40.2%
func (r Report) Print(w io.Writer) error {
	var title string
	switch len(r.Days) {
	case 0:
		title = fmt.Sprintf("%s: all time; share of builds counted", r.Dimension)
	case 1:
		title = fmt.Sprintf("%s: %s (UTC); share of builds counted", r.Dimension, r.Days[0])
	default:
		title = fmt.Sprintf("%s: last %d days (UTC) to %s; share of builds counted", r.Dimension, len(r.Days), r.Days[0])
	}
	head := []string{r.Dimension, "total", "share"}
	for _, d := range r.Days {
		head = append(head, d, "share")
	}
	table := [][]string{head}
	line := func(label string, total int64, days []int64, share bool) {
		cells := []string{label, count(total), ""}
		if share {
			cells[2] = percent(total, r.TotalEvents)
		}
		for i := range r.Days {
			cells = append(cells, count(days[i]), "")
			if share {
				cells[len(cells)-1] = percent(days[i], r.Events[i])
			}
		}
		table = append(table, cells)
	}
	for _, row := range r.Rows {
		line(row.Value, row.Total, row.Days, true)
	}
	if r.Older.Value != "" {
		line(r.Older.Value, r.Older.Total, r.Older.Days, true)
	}
	line("builds", r.TotalEvents, r.Events, false)

	var b strings.Builder
	b.WriteString(title + "\n\n")
	if len(r.Rows) == 0 && r.Older.Value == "" {
		b.WriteString("(no values counted)\n")
	}
	writeTable(&b, table)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable writes rows in columns two spaces apart: the first column
// left-aligned, the others (numbers) right-aligned.
func writeTable(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			switch {
			case i == 0:
				line.WriteString(c + pad)
			default:
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// count formats n with thousands separators, and 0 as "-".
func count(n int64) string {
	if n == 0 {
		return "-"
	}
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// percent formats n/of with one decimal, and nothing when n is 0.
func percent(n, of int64) string {
	if n == 0 || of == 0 {
		return ""
	}
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
}
