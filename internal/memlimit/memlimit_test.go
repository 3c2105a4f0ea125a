package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	if got := Apply(0); got != math.MaxInt64 {
		t.Errorf("Apply(0) = %d, want no limit", got)
	}
	if got := Apply(1000 << 20); got != 900<<20 {
		t.Errorf("Apply(1000 MiB) = %d, want 90%% of it", got)
	}
	t.Setenv("GOMEMLIMIT", "2GiB") // read by the runtime at start; here it only means "set by the operator"
	debug.SetMemoryLimit(2 << 30)
	if got := Apply(1000 << 20); got != 2<<30 {
		t.Errorf("Apply with GOMEMLIMIT set = %d, want GOMEMLIMIT's 2 GiB kept", got)
	}
}
