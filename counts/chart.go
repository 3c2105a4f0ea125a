package counts

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Labels of the bands that are not one value.
const (
	OtherLabel  = "other"
	NotSetLabel = "(not set)"
)

// Series is what an adoption chart draws: for each shown value, its count
// and its share of the builds counted on each day of the window, oldest
// day first.
type Series struct {
	Dimension string
	// Days are the window's days, oldest first (a report lists them
	// newest first); Events the builds counted on each.
	Days   []string
	Events []int64
	// Values are the top values by peak daily share, newest version
	// first, then OtherLabel for the rest and NotSetLabel for builds
	// without the property, each only when it counted anything.
	Values []string
	// Counts and Shares are [value][day]; a share is 0 on a day without
	// builds.
	Counts [][]int64
	Shares [][]float64
	// Stacked is whether the shares of a day add up to at most 1, so that
	// a stacked area shows them; a multi-valued dimension (plugin: a build
	// runs several) is drawn as lines instead, and has no other or not-set
	// band.
	Stacked bool
}

// Series returns the chart of r with its top values, the others summed.
func (r Report) Series(top int) Series {
	n := len(r.Days)
	// A report lists days newest first; a chart draws them oldest first.
	chrono := func(days []int64) []int64 {
		out := slices.Clone(days)
		slices.Reverse(out)
		return out
	}
	days := slices.Clone(r.Days)
	slices.Reverse(days)
	s := Series{Dimension: r.Dimension, Days: days, Events: chrono(r.Events), Stacked: true}
	sum := make([]int64, n) // of every value, per day
	rows := slices.Clone(r.Rows)
	for _, row := range rows {
		for i, c := range chrono(row.Days) {
			sum[i] += c
		}
	}
	for i := range n {
		if sum[i] > s.Events[i] {
			s.Stacked = false
		}
	}
	// The values shown are those with the highest peak daily share: a
	// release adopted in the last days matters more than its small total
	// says. Ties by total, then by version, newest first.
	peak := func(row Row) float64 {
		best := 0.0
		for i, c := range row.Days {
			if r.Events[i] > 0 {
				best = max(best, float64(c)/float64(r.Events[i]))
			}
		}
		return best
	}
	window := func(row Row) (t int64) {
		for _, c := range row.Days {
			t += c
		}
		return t
	}
	slices.SortStableFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(peak(b), peak(a)), cmp.Compare(window(b), window(a)), CompareVersions(b.Value, a.Value))
	})
	shown := rows[:min(max(top, 1), len(rows))]
	rest := rows[len(shown):]
	// Newest version on top of the stack and of the legend.
	shown = slices.Clone(shown)
	slices.SortStableFunc(shown, func(a, b Row) int { return CompareVersions(b.Value, a.Value) })
	for _, row := range shown {
		s.Values = append(s.Values, row.Value)
		s.Counts = append(s.Counts, chrono(row.Days))
	}
	if s.Stacked {
		other := make([]int64, n)
		notSet := make([]int64, n)
		for _, row := range rest {
			for i, c := range chrono(row.Days) {
				other[i] += c
			}
		}
		for i := range n {
			notSet[i] = s.Events[i] - sum[i]
		}
		for _, band := range []struct {
			label  string
			counts []int64
		}{{OtherLabel, other}, {NotSetLabel, notSet}} {
			if slices.ContainsFunc(band.counts, func(c int64) bool { return c > 0 }) {
				s.Values = append(s.Values, band.label)
				s.Counts = append(s.Counts, band.counts)
			}
		}
	}
	for _, counts := range s.Counts {
		shares := make([]float64, n)
		for i, c := range counts {
			if s.Events[i] > 0 {
				shares[i] = float64(c) / float64(s.Events[i])
			}
		}
		s.Shares = append(s.Shares, shares)
	}
	return s
}

// palette is Tableau's ten colours, which stay apart for most eyes; values
// past ten repeat them. Other and not set are greys.
var palette = []color.RGBA{
	{0x4e, 0x79, 0xa7, 0xff}, {0xf2, 0x8e, 0x2b, 0xff}, {0xe1, 0x57, 0x59, 0xff}, {0x76, 0xb7, 0xb2, 0xff},
	{0x59, 0xa1, 0x4f, 0xff}, {0xed, 0xc9, 0x48, 0xff}, {0xb0, 0x7a, 0xa1, 0xff}, {0xff, 0x9d, 0xa7, 0xff},
	{0x9c, 0x75, 0x5f, 0xff}, {0xba, 0xb0, 0xac, 0xff},
}

// Color is the colour of value i's band or line.
func (s Series) Color(i int) color.RGBA {
	switch s.Values[i] {
	case OtherLabel:
		return color.RGBA{0xc8, 0xc8, 0xc8, 0xff}
	case NotSetLabel:
		return color.RGBA{0xee, 0xee, 0xee, 0xff}
	}
	return palette[i%len(palette)]
}

// dayTicks labels the days under the chart, thinned to about eight so
// that the dates do not overlap.
type dayTicks []string

func (d dayTicks) Ticks(lo, hi float64) []plot.Tick {
	step := max(1, (len(d)+7)/8)
	var ts []plot.Tick
	for i := range d {
		t := plot.Tick{Value: float64(i)}
		if (len(d)-1-i)%step == 0 { // the newest day always labelled
			t.Label = d[i][5:] // MM-DD
		}
		ts = append(ts, t)
	}
	return ts
}

// SVG draws the series, w by h, as a stacked area of daily shares (or
// lines, when not Stacked), coloured as Color says; it returns the SVG
// document.
func (s Series) SVG(w, h vg.Length) ([]byte, error) {
	if len(s.Days) < 1 || len(s.Values) == 0 {
		return nil, fmt.Errorf("draw %s: no values counted in the window", s.Dimension)
	}
	p := plot.New()
	p.Y.Label.Text = "share of builds"
	p.Y.Min, p.Y.Max = 0, 1
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0%"}, {Value: .25, Label: "25%"}, {Value: .5, Label: "50%"}, {Value: .75, Label: "75%"}, {Value: 1, Label: "100%"}})
	p.X.Min, p.X.Max = 0, float64(max(len(s.Days)-1, 1))
	p.X.Tick.Marker = dayTicks(s.Days)
	// Sans labels, as on the page around the chart. The legend is the
	// page's, beside the chart, where it hides no data.
	for _, st := range []*text.Style{&p.X.Tick.Label, &p.Y.Tick.Label, &p.Y.Label.TextStyle} {
		st.Font.Variant = "Sans"
		st.Font.Size = vg.Points(10)
	}
	if !s.Stacked {
		p.Y.Max = 0
		for _, sh := range s.Shares {
			p.Y.Max = max(p.Y.Max, slices.Max(sh))
		}
		p.Y.Max = min(1, p.Y.Max*1.1+0.01)
		p.Y.Tick.Marker = percentTicks{}
	}
	pts := func(ys []float64) plotter.XYs {
		xy := make(plotter.XYs, len(ys))
		for i, y := range ys {
			xy[i] = plotter.XY{X: float64(i), Y: y}
		}
		if len(ys) == 1 { // one day: a flat band across the chart
			xy = append(xy, plotter.XY{X: 1, Y: ys[0]})
		}
		return xy
	}
	if s.Stacked {
		// Bands from the top of the stack down: each filled from its
		// cumulative share to 0, the next one over it.
		cum := make([][]float64, len(s.Values))
		run := make([]float64, len(s.Days))
		for i := len(s.Values) - 1; i >= 0; i-- {
			for d := range run {
				run[d] += s.Shares[i][d]
			}
			cum[i] = slices.Clone(run)
		}
		for i := range s.Values {
			l, err := plotter.NewLine(pts(cum[i]))
			if err != nil {
				return nil, fmt.Errorf("draw %s: %w", s.Dimension, err)
			}
			l.FillColor = s.Color(i)
			l.LineStyle.Width = vg.Points(0.5)
			l.LineStyle.Color = color.White
			p.Add(l)
		}
	} else {
		for i := range s.Values {
			l, err := plotter.NewLine(pts(s.Shares[i]))
			if err != nil {
				return nil, fmt.Errorf("draw %s: %w", s.Dimension, err)
			}
			l.LineStyle.Width = vg.Points(2)
			l.LineStyle.Color = s.Color(i)
			p.Add(l)
		}
	}
	c := vgsvg.NewWith(vgsvg.UseWH(w, h))
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("draw %s: %w", s.Dimension, err)
	}
	return b.Bytes(), nil
}

// percentTicks are the default ticks labelled as percentages.
type percentTicks struct{}

func (percentTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = fmt.Sprintf("%.0f%%", ts[i].Value*100)
		}
	}
	return ts
}
