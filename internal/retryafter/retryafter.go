// Package retryafter reads how long an HTTP server asked its client to
// wait before retrying, for the sinks that talk to SaaS APIs.
package retryafter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Parse returns the longer of the delays asked by Retry-After (seconds or
// an HTTP date) and X-RateLimit-Reset (seconds to wait, or a Unix time in
// seconds when it is that large, as Segment documents both), or 0.
func Parse(h http.Header, now time.Time) time.Duration {
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil && n > 0 {
			d = time.Duration(n * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil && n > 0 {
			r := time.Duration(n * float64(time.Second))
			if n > 1e9 { // a Unix time, not a delay
				r = time.Unix(int64(n), 0).Sub(now)
			}
			d = max(d, r)
		}
	}
	return max(d, 0)
}
