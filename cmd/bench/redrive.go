package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// benchRedrive measures redrive_after_outage_s: a worker with the default
// breaker and re-drive settings delivers to a Segment test server that
// answers 503 for 30 s while events keep flowing; the figure is the
// seconds from the end of the outage until every event reached the
// server, the parked ones re-driven by the worker itself.
func benchRedrive(ctx context.Context, o options) ([]figure, error) {
	r, closeRig, err := newRig(ctx, "bench-redrive")
	if err != nil {
		return nil, err
	}
	defer closeRig()
	const stream = "bench-redrive"
	if err := r.s.CreateStream(ctx, stream, 2); err != nil {
		return nil, err
	}
	if err := r.s.CreateBucket(ctx, stream); err != nil {
		return nil, err
	}
	var down atomic.Bool
	var mu sync.Mutex
	got := map[string]bool{}
	url, stop, err := serve(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		var body struct {
			Batch []struct {
				MessageID string `json:"messageId"`
			} `json:"batch"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, e := range body.Batch {
			got[e.MessageID] = true
		}
		mu.Unlock()
		w.Write([]byte(`{"success":true}`))
	}))
	if err != nil {
		return nil, err
	}
	defer stop()
	logf, err := os.Create(filepath.Join(r.dir, "redrive.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	w := exec.Command(r.bin, "run")
	w.Env = append(r.s.Endpoints().ChildEnv(), "KINESIS_STREAM="+stream, "WORKER_APP="+stream, "WORKER_ID=w1",
		"WORKER_HEALTH_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0", "DEADLETTER_BUCKET="+stream,
		"SEGMENT_WRITE_KEY=bench", "SEGMENT_ENDPOINT="+url, "LOG_LEVEL=info")
	w.Stdout, w.Stderr = logf, logf
	if err := w.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	m := r.produce(ctx, stream, "redrive")
	time.Sleep(3 * time.Second)
	down.Store(true)
	time.Sleep(30 * time.Second)
	down.Store(false)
	up := time.Now()
	time.Sleep(time.Second)
	ids, err := m.halt()
	if err != nil {
		return nil, err
	}
	if err := waitUntil(3*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("parked events did not reach Segment (worker log %s): %w", logf.Name(), err)
	}
	return []figure{{"redrive_after_outage_s", time.Since(up).Seconds(), "s"}}, nil
}
