package gateway

import (
	"testing"
	"time"
)

// TestDrainMeterLimit: without throttling the bound is the buffer; while
// Kinesis throttles it is what the recent rate writes in the window, at
// least the minimum, never above the buffer; it lapses after a quiet
// spell.
func TestDrainMeterLimit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var d drainMeter
	for s := 0; s < 3; s++ {
		d.wrote(t0.Add(time.Duration(s)*time.Second), 300<<10) // 300 KiB/s
	}
	now := t0.Add(3 * time.Second)
	if got := d.limit(now, 2*time.Second, 64<<20); got != 64<<20 {
		t.Errorf("not throttled: limit %d, want the buffer", got)
	}
	d.throttle(now)
	if got, want := d.limit(now, 2*time.Second, 64<<20), int64(600<<10); got != want {
		t.Errorf("throttled: limit %d, want %d (300 KiB/s for 2 s)", got, want)
	}
	if got := d.limit(now, 2*time.Second, 100<<10); got != 100<<10 {
		t.Errorf("throttled, small buffer: limit %d, want the buffer", got)
	}
	if got := d.limit(now.Add(10*time.Second), 2*time.Second, 64<<20); got != 64<<20 {
		t.Errorf("long after the last throttle: limit %d, want the buffer", got)
	}
	var idle drainMeter
	idle.throttle(now)
	if got := idle.limit(now, 2*time.Second, 64<<20); got != minThrottledBuffer {
		t.Errorf("throttled with nothing written: limit %d, want the minimum %d", got, minThrottledBuffer)
	}
}
