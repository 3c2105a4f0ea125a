package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	info := Info{Version: "v1.2.3", Revision: "abc", Modified: true, GoVersion: "go1.26.8"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(info.Collector("gateway"))
	want := `# HELP gateway_build_info Always 1; the labels name the running build.
# TYPE gateway_build_info gauge
gateway_build_info{goversion="go1.26.8",revision="abc+modified",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gateway_build_info"); err != nil {
		t.Error(err)
	}
	if got := info.String(); got != "v1.2.3 (revision abc+modified, go1.26.8)" {
		t.Errorf("String() = %q", got)
	}
}

// A test binary is linked without the -X flag: Read reports devel, never
// an empty label value.
func TestReadUnstamped(t *testing.T) {
	if got := Read(); got.Version != "devel" || got.GoVersion == "" || got.Revision == "" {
		t.Errorf("Read() = %+v", got)
	}
}
