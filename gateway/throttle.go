package gateway

import (
	"sync"
	"time"
)

// Throttle-aware admission. A stream at capacity answers part of every
// PutRecords with ProvisionedThroughputExceededException. Buffering up to
// MaxBufferBytes then only makes every request wait longer, until the
// oldest pass RetryTimeout and fail with 503, with the buffer full of
// work that clients will send again anyway. So while Kinesis throttles,
// the producer admits no more than it has been able to write in
// RetryTimeout/2 at the rate it achieved over the last seconds, and
// refuses the rest with ErrBufferFull (429 and Retry-After): clients
// back off, and what was admitted is written in time.

const (
	// throttleMemory is how long after the last throttled entry the
	// producer keeps admitting by rate.
	throttleMemory = 2 * time.Second
	// rateWindow is how many whole seconds of writes the rate is taken
	// over.
	rateWindow = 3
	// minThrottledBuffer is what is always admitted, so that a stream
	// that writes slowly still makes progress.
	minThrottledBuffer = 256 << 10
)

// drainMeter measures the event bytes written per second and remembers
// when Kinesis last throttled. It is safe for concurrent use.
type drainMeter struct {
	mu        sync.Mutex
	secs      [rateWindow + 1]secBytes
	throttled time.Time
	failed    time.Time // a call or an entry failed other than by throttling
}

type secBytes struct {
	sec   int64
	bytes int64
}

func (d *drainMeter) wrote(now time.Time, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sec := now.Unix()
	s := &d.secs[sec%int64(len(d.secs))]
	if s.sec != sec {
		*s = secBytes{sec: sec}
	}
	s.bytes += n
}

func (d *drainMeter) throttle(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.throttled = now
}

func (d *drainMeter) fail(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failed = now
}

// throttledSince reports whether Kinesis throttled within d before now.
func (d *drainMeter) throttledSince(now time.Time, within time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.throttled.IsZero() && now.Sub(d.throttled) <= within
}

// failedSince reports whether a call or entry failed, other than by
// throttling, within d before now.
func (d *drainMeter) failedSince(now time.Time, within time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.failed.IsZero() && now.Sub(d.failed) <= within
}

// limit returns the buffer bound: most, or while Kinesis throttles what
// the stream takes in window at the recent rate, at least
// minThrottledBuffer.
func (d *drainMeter) limit(now time.Time, window time.Duration, most int64) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.throttled.IsZero() || now.Sub(d.throttled) > throttleMemory {
		return most
	}
	var total int64
	cur := now.Unix()
	for _, s := range d.secs {
		if s.sec < cur && s.sec >= cur-rateWindow {
			total += s.bytes
		}
	}
	rate := float64(total) / rateWindow
	return min(most, int64(max(float64(minThrottledBuffer), rate*window.Seconds())))
}
