package counts

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"time"

	"gonum.org/v1/plot/vg"
)

// pageTemplate is a self-contained page: inline SVG charts and CSS, no
// script, nothing fetched when it is opened, so it can be mailed or
// attached to a ticket as it is.
var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Build telemetry: adoption</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
p.meta { color: #666; margin-top: 0; }
figure { margin: 0.5rem 0; display: flex; align-items: flex-start; gap: 1rem; }
figure svg { flex: 1 1 auto; min-width: 0; width: 100%; height: auto; }
ul.legend { list-style: none; padding: 0; margin: 1rem 0 0; font-size: 0.85rem; white-space: nowrap; }
ul.legend li { margin: 0.15rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { padding: 0.2rem 0.6rem; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 1px solid #999; }
details { margin: 0.5rem 0 1rem; }
summary { cursor: pointer; color: #555; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; vertical-align: baseline; }
</style>
</head>
<body>
<h1>Build telemetry: adoption</h1>
<p class="meta">{{.Days}} days (UTC) to {{.Last}}; share of the builds counted each day. Generated {{.Generated}}.</p>
{{range .Sections}}
<section id="{{.Dimension}}">
<h2>{{.Dimension}}</h2>
{{if .Empty}}<p>No values counted in the window.</p>{{else}}
<figure>{{.SVG}}<ul class="legend">{{range .Legend}}<li><span class="swatch" style="background: {{.Color}}"></span>{{.Label}}</li>{{end}}</ul></figure>
<p class="meta">{{if .Stacked}}Stacked daily shares: the {{.Top}} values with the highest daily share in the window, the rest as “other”, builds without the property as “(not set)”.{{else}}Daily share of builds with each of the {{.Top}} values with the highest daily share; a build can have several, so the lines are not stacked.{{end}}</p>
<table class="totals">
<thead><tr><th>{{.Dimension}}</th><th>builds in window</th><th>share of window</th><th>all time</th><th>last seen</th></tr></thead>
<tbody>
{{range .Totals}}<tr><td>{{.Value}}</td><td>{{.Window}}</td><td>{{.Share}}</td><td>{{.AllTime}}</td><td>{{.LastSeen}}</td></tr>
{{end}}<tr><td>builds</td><td>{{.Builds}}</td><td></td><td>{{.AllBuilds}}</td><td></td></tr>
</tbody>
</table>
<details>
<summary>Daily counts the chart draws</summary>
<table class="daily" data-dimension="{{.Dimension}}">
<thead><tr><th>day</th>{{range .Values}}<th>{{.}}</th>{{end}}<th>builds</th></tr></thead>
<tbody>
{{range .Daily}}<tr><td>{{.Day}}</td>{{range .Counts}}<td>{{.}}</td>{{end}}<td>{{.Builds}}</td></tr>
{{end}}</tbody>
</table>
</details>
{{end}}
</section>
{{end}}
</body>
</html>
`))

type pageSection struct {
	Dimension      string
	Empty, Stacked bool
	Top            int
	SVG            template.HTML
	Values         []string
	Legend         []legendEntry
	Totals         []pageTotal
	Builds         string
	AllBuilds      string
	Daily          []pageDay
}

type legendEntry struct {
	Label string
	Color template.CSS
}

type pageTotal struct{ Value, Window, Share, AllTime, LastSeen string }

type pageDay struct {
	Day    string
	Counts []int64
	Builds int64
}

// WriteHTML writes the adoption page of reports (one section each, all
// over the same days) with their top values charted.
func WriteHTML(w io.Writer, reports []Report, top int, generated time.Time) error {
	if len(reports) == 0 || len(reports[0].Days) == 0 {
		return fmt.Errorf("write adoption page: no report with days")
	}
	page := struct {
		Days            int
		Last, Generated string
		Sections        []pageSection
	}{Days: len(reports[0].Days), Last: reports[0].Days[0], Generated: generated.UTC().Format(time.RFC3339)}
	for _, r := range reports {
		s := r.Series(top)
		sec := pageSection{Dimension: r.Dimension, Stacked: s.Stacked, Top: top, Values: s.Values, Empty: len(s.Values) == 0}
		if !sec.Empty {
			svg, err := s.SVG(18*vg.Centimeter, 9*vg.Centimeter)
			if err != nil {
				return fmt.Errorf("write adoption page: %w", err)
			}
			// Trusted: drawn here from numbers, with our own labels
			// escaped by the SVG writer.
			sec.SVG = template.HTML(stripXMLHeader(svg))
			for i, v := range s.Values {
				c := s.Color(i)
				sec.Legend = append(sec.Legend, legendEntry{v, template.CSS(fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B))})
			}
		}
		var builds int64
		for _, e := range r.Events {
			builds += e
		}
		sec.Builds, sec.AllBuilds = count(builds), count(r.TotalEvents)
		for _, row := range r.Rows {
			var win int64
			for _, c := range row.Days {
				win += c
			}
			if win == 0 {
				continue
			}
			sec.Totals = append(sec.Totals, pageTotal{row.Value, count(win), percent(win, builds), count(row.Total), row.LastSeen})
		}
		for d, day := range s.Days {
			pd := pageDay{Day: day, Builds: s.Events[d]}
			for v := range s.Values {
				pd.Counts = append(pd.Counts, s.Counts[v][d])
			}
			sec.Daily = append(sec.Daily, pd)
		}
		page.Sections = append(page.Sections, sec)
	}
	if err := pageTemplate.Execute(w, page); err != nil {
		return fmt.Errorf("write adoption page: %w", err)
	}
	return nil
}

// stripXMLHeader drops what precedes the <svg> element of a standalone
// SVG document (the <?xml ...?> declaration), which has no place in HTML.
func stripXMLHeader(svg []byte) []byte {
	if i := bytes.Index(svg, []byte("<svg")); i > 0 {
		return svg[i:]
	}
	return svg
}
