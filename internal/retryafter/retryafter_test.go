package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{"fraction", http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{"date", http.Header{"Retry-After": {now.Add(7 * time.Second).Format(http.TimeFormat)}}, 7 * time.Second},
		{"past date", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"rate limit reset delay", http.Header{"X-Ratelimit-Reset": {"4"}}, 4 * time.Second},
		{"rate limit reset unix", http.Header{"X-Ratelimit-Reset": {"1795780810"}}, 10 * time.Second},
		{"longer wins", http.Header{"Retry-After": {"2"}, "X-Ratelimit-Reset": {"5"}}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse(tc.h, now); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
