// Package memlimit sets the Go runtime's soft memory limit from the
// container's, for both binaries: at 90% of the limit the GC works harder
// instead of the kernel killing the pod.
package memlimit

import (
	"os"
	"runtime/debug"
)

// Apply sets the soft limit to 90% of limit (bytes) unless GOMEMLIMIT is
// set, which wins, or limit is 0. It returns the soft limit in effect
// (math.MaxInt64: none).
func Apply(limit int64) int64 {
	if limit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit / 10 * 9)
	}
	return debug.SetMemoryLimit(-1)
}
