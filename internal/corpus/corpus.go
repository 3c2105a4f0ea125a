// Package corpus generates realistic build-telemetry payloads for tests and
// benchmarks: events shaped like Netlify Build's
// build:ci_build_process_completed, with random IDs of the
// same length and alphabet as the real ones, so that compression figures are
// not flattered by repetition.
package corpus

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
)

// Netlify generates Netlify-Build-shaped track events. It is not safe for
// concurrent use.
type Netlify struct {
	rng *rand.Rand
	now time.Time
	// days, when positive, spreads events over the days before now, with
	// build versions following their releases (NewNetlifyAdoption).
	days int
}

// NewNetlify returns a deterministic generator: the same seed gives the
// same events.
func NewNetlify(seed uint64) *Netlify {
	return &Netlify{
		rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15)),
		now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
	}
}

// NewNetlifyAdoption returns a deterministic generator of events spread
// evenly over the days days before end, whose build versions follow an
// upgrade curve: the newest versions are released one after another
// within the window, and each is taken up by sites over a few days while
// the older ones fade. The adoption chart of such events looks like a
// real one.
func NewNetlifyAdoption(seed uint64, end time.Time, days int) *Netlify {
	g := NewNetlify(seed)
	g.now, g.days = end, max(days, 1)
	return g
}

// releasedVersion picks the version of a build at t: walking from the
// newest version released by t to older ones, a build runs version k with
// probability 1-exp(-(t-release_k)/tau), else an older one.
func (g *Netlify) releasedVersion(t time.Time) string {
	window := time.Duration(g.days) * 24 * time.Hour
	// The six newest are released in the window, evenly; the rest before.
	const inWindow = 6
	tau := max(window/inWindow, time.Hour)
	for k := range buildVersions {
		release := g.now.Add(-window * time.Duration(k) / inWindow)
		if k < inWindow {
			release = release.Add(-window / inWindow / 2)
		}
		if t.Before(release) {
			continue
		}
		if g.rng.Float64() < 1-math.Exp(-float64(t.Sub(release))/float64(tau)) {
			return buildVersions[k]
		}
	}
	return buildVersions[len(buildVersions)-1]
}

var (
	// Build versions weighted towards recent ones, as an upgrade curve is.
	buildVersions = []string{"29.58.2", "29.58.1", "29.58.0", "29.57.3", "29.56.0", "29.55.4", "29.50.1", "29.41.2", "28.3.0", "27.20.5"}
	nodeVersions  = []string{"v22.12.0", "v20.18.1", "v20.14.0", "v18.20.4", "v23.3.0", "v16.20.2"}
	platforms     = []struct{ platform, name string }{{"Linux", "Ubuntu"}, {"Linux", "Debian GNU/Linux"}, {"MacOS", "macOS Sonoma"}, {"Windows", "Windows 11"}}
	frameworks    = []string{"next", "astro", "gatsby", "hugo", "remix", "vite", "eleventy", "nuxt", "sveltekit", "angular", "unknown"}
	statuses      = []string{"success", "success", "success", "success", "success", "success", "user-error", "plugin-error", "cancelled", "system-error"}
	plugins       = []struct{ name, pinned, version string }{
		{"@netlify/plugin-nextjs", "5", "5.8.1"},
		{"@netlify/plugin-lighthouse", "6", "6.0.1"},
		{"netlify-plugin-cache", "", "1.0.3"},
		{"@netlify/plugin-gatsby", "3", "3.8.1"},
		{"netlify-plugin-submit-sitemap", "", "0.4.0"},
		{"@netlify/plugin-sitemap", "", "0.8.1"},
	}
	installTypes = []string{"ui", "netlify_toml", "package.json", "local"}
)

// Plugin is one entry of the plugins property.
type Plugin struct {
	Name          string `json:"name"`
	InstallType   string `json:"installType"`
	NodeVersion   string `json:"nodeVersion"`
	PinnedVersion string `json:"pinnedVersion,omitempty"`
	Version       string `json:"version"`
}

// Properties is the properties object of a Netlify Build event, in the
// order the client writes it.
type Properties struct {
	DeployID     string   `json:"deployId"`
	BuildID      string   `json:"buildId"`
	Status       string   `json:"status"`
	Steps        int      `json:"steps"`
	BuildVersion string   `json:"buildVersion"`
	NodeVersion  string   `json:"nodeVersion"`
	OSPlatform   string   `json:"osPlatform"`
	OSName       string   `json:"osName"`
	Framework    string   `json:"framework"`
	SiteID       string   `json:"siteId"`
	Plugins      []Plugin `json:"plugins,omitempty"`
	PluginCount  *int     `json:"pluginCount,omitempty"`
	Duration     *int     `json:"duration,omitempty"`
}

// Track is the body Netlify Build POSTs to /v1/track.
type Track struct {
	UserID     string     `json:"userId"`
	Event      string     `json:"event"`
	Timestamp  int64      `json:"timestamp"`
	Properties Properties `json:"properties"`
}

// Next returns the next event.
func (g *Netlify) Next() Track {
	r := g.rng
	p := Properties{
		DeployID:     g.hex(12),
		BuildID:      g.hex(12),
		Status:       statuses[r.IntN(len(statuses))],
		Steps:        2 + r.IntN(6),
		BuildVersion: buildVersions[skewed(r, len(buildVersions))],
		NodeVersion:  nodeVersions[skewed(r, len(nodeVersions))],
		Framework:    frameworks[r.IntN(len(frameworks))],
		SiteID:       g.uuid(),
	}
	pl := platforms[skewed(r, len(platforms))]
	p.OSPlatform, p.OSName = pl.platform, pl.name
	if r.IntN(10) < 8 { // plugin options are not always known
		n := r.IntN(4)
		for i := 0; i < n; i++ {
			x := plugins[r.IntN(len(plugins))]
			p.Plugins = append(p.Plugins, Plugin{Name: x.name, InstallType: installTypes[r.IntN(len(installTypes))], NodeVersion: p.NodeVersion, PinnedVersion: x.pinned, Version: x.version})
		}
		p.PluginCount = &n
	}
	if p.Status == "success" {
		d := 5000 + r.IntN(600000)
		p.Duration = &d
	}
	span := 24 * time.Hour
	if g.days > 0 {
		span *= time.Duration(g.days)
	}
	ts := g.now.Add(-time.Duration(r.Int64N(int64(span))))
	if g.days > 0 {
		p.BuildVersion = g.releasedVersion(ts)
	}
	return Track{UserID: "buildbot_user", Event: "build:ci_build_process_completed", Timestamp: ts.UnixMilli(), Properties: p}
}

// NextJSON returns the next event as the client would send it.
func (g *Netlify) NextJSON() []byte {
	b, err := json.Marshal(g.Next())
	if err != nil {
		panic(fmt.Sprintf("marshal corpus event: %v", err)) // plain structs always marshal
	}
	return b
}

// Batch returns a /v1/batch body of n events.
func (g *Netlify) Batch(n int) []byte {
	items := make([]json.RawMessage, n)
	for i := range items {
		it := g.Next()
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			Track
		}{"track", it})
		items[i] = b
	}
	b, _ := json.Marshal(map[string]any{"batch": items})
	return b
}

// skewed picks an index with a falling probability, so the first entries
// are the common ones.
func skewed(r *rand.Rand, n int) int {
	i := int(r.ExpFloat64() * float64(n) / 4)
	if i >= n {
		i = n - 1
	}
	return i
}

func (g *Netlify) hex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return hex.EncodeToString(b)
}

// uuid is a version 4 UUID from the generator's own randomness, so that
// a seed gives the same IDs.
func (g *Netlify) uuid() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return uuid.Must(uuid.NewRandomFromReader(bytes.NewReader(b))).String()
}
