// Package loadtest drives HTTP load at a gateway on loopback and measures
// throughput and latency, for make bench.
package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Load describes one run.
type Load struct {
	URL    string
	Header http.Header
	// Bodies are sent round-robin; each holds EventsPerBody events.
	Bodies        [][]byte
	EventsPerBody int
	Concurrency   int
	Warmup        time.Duration
	Duration      time.Duration
}

// Result is what a run measured, after the warm-up.
type Result struct {
	Requests, Events, Errors int64
	Elapsed                  time.Duration
	P50, P99                 time.Duration
	// FirstError describes the first non-200 answer or transport error.
	FirstError string
}

// EventsPerSecond is the acknowledged event rate.
func (r Result) EventsPerSecond() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// Run sends the load and returns the measurements. Only 200 answers count.
func Run(ctx context.Context, l Load) (Result, error) {
	if len(l.Bodies) == 0 || l.Concurrency <= 0 {
		return Result{}, fmt.Errorf("run load: need bodies and concurrency")
	}
	tr := &http.Transport{MaxIdleConns: l.Concurrency, MaxIdleConnsPerHost: l.Concurrency, MaxConnsPerHost: l.Concurrency}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var (
		measuring atomic.Bool
		next      atomic.Uint64
		reqs, evs atomic.Int64
		errs      atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	lat := make([][]time.Duration, l.Concurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < l.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				body := l.Bodies[next.Add(1)%uint64(len(l.Bodies))]
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.URL, bytes.NewReader(body))
				req.Header = l.Header.Clone()
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(start)
				if ctx.Err() != nil || !measuring.Load() {
					continue
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
					if err == nil {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				reqs.Add(1)
				evs.Add(int64(l.EventsPerBody))
				lat[w] = append(lat[w], d)
			}
		}()
	}
	select {
	case <-time.After(l.Warmup):
	case <-ctx.Done():
	}
	measuring.Store(true)
	start := time.Now()
	select {
	case <-time.After(l.Duration):
	case <-ctx.Done():
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := Result{Requests: reqs.Load(), Events: evs.Load(), Errors: errs.Load(), Elapsed: elapsed}
	if len(all) > 0 {
		r.P50 = all[len(all)*50/100]
		r.P99 = all[len(all)*99/100]
	}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	return r, nil
}
