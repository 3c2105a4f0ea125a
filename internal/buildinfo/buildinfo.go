// Package buildinfo says which build a binary is: the version stamped at
// link time by `make build` and the Dockerfile, and the VCS revision and
// Go version the toolchain records. Both binaries print it for -version
// and export it as a <component>_build_info metric, so a dashboard can
// show which release each pod runs during a rolling deploy.
package buildinfo

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set with -ldflags "-X github.com/buildtelemetry/pipeline/internal/buildinfo.version=v1.2.3".
// A plain `go build` leaves it empty, and Read reports "devel".
var version string

// revision may be stamped the same way, for builds made with -buildvcs=false
// or outside a checkout; the toolchain's vcs.revision wins when present.
var revision string

// Info describes one build.
type Info struct {
	Version   string // the stamped version, or "devel"
	Revision  string // the VCS commit, or "unknown" (the Docker context has no .git)
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string
}

// Read returns this binary's Info.
func Read() Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	info.Version = cmp.Or(info.Version, "devel")
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	info.Revision = cmp.Or(info.Revision, "unknown")
	return info
}

// String is the -version line: "gateway v1.2.3 (revision abc123, go1.26.8)".
func (i Info) String() string {
	return fmt.Sprintf("%s (revision %s, %s)", i.Version, i.rev(), i.GoVersion)
}

// rev is the revision, marked when the work tree had changes.
func (i Info) rev() string {
	if i.Modified {
		return i.Revision + "+modified"
	}
	return i.Revision
}

// Collector is the constant gauge <component>_build_info with value 1 and
// the labels version, revision and goversion: joined on (pod) it labels
// any other series with the build that produced it.
func (i Info) Collector(component string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        component + "_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.rev(), "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
