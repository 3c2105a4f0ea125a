package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	for _, tc := range []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{6, 3200 * time.Millisecond, 6400 * time.Millisecond},
		{7, 5 * time.Second, 10 * time.Second}, // 12.8 s capped
		{40, 5 * time.Second, 10 * time.Second},
		{1000, 5 * time.Second, 10 * time.Second}, // no overflow to 0 or negative
		{-1, 5 * time.Second, 10 * time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(tc.attempt)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", tc.attempt, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d): only %d distinct waits in 200: not jittered", tc.attempt, len(seen))
		}
	}
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy: %v", d)
	}
}
