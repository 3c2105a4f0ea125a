// Package backoff computes the waits between retries for the gateway's
// Kinesis writes and the worker's sink calls: capped exponential with
// "equal jitter" (half of each wait fixed, half random), so that callers
// failing together spread their retries without ever retrying at once.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff.
type Policy struct {
	// Min is the wait before the first retry, before jitter.
	Min time.Duration
	// Max caps every wait, before jitter.
	Max time.Duration
}

// Delay returns the wait before retry attempt+1 (attempt counts from 0):
// Min·2^attempt capped at Max, then uniformly in [d/2, d]. Any attempt
// count is safe: the shift is bounded, and an overflow takes Max.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Max
	if attempt >= 0 && attempt < 62 {
		if s := p.Min << attempt; s > 0 && s>>attempt == p.Min && s < p.Max {
			d = s
		}
	}
	if d <= 1 {
		return max(d, 0)
	}
	return d/2 + rand.N(d/2+1)
}
