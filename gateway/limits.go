package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyLimits holds one token bucket per source. Sources come from the
// configured write keys, so the map stays as small as that list.
type keyLimits struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newKeyLimits(perSecond float64, burst int) *keyLimits {
	return &keyLimits{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{}}
}

// take spends n tokens of source's bucket, all or none: a refused request
// costs its source nothing, so a client that backs off gets through as
// soon as its bucket refills. When refused, wait is how long until the
// bucket would hold n tokens; for a request larger than the burst that is
// as if the bucket could grow past it, so the client still gets a finite
// Retry-After and a hint to send smaller batches.
func (k *keyLimits) take(source string, n int, now time.Time) (wait time.Duration, ok bool) {
	k.mu.Lock()
	l := k.buckets[source]
	if l == nil {
		l = rate.NewLimiter(k.rate, k.burst)
		k.buckets[source] = l
	}
	k.mu.Unlock()
	if l.AllowN(now, n) {
		return 0, true
	}
	short := float64(n) - l.TokensAt(now)
	return time.Duration(short / float64(k.rate) * float64(time.Second)), false
}
