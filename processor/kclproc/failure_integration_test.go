//go:build integration

package kclproc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"go.uber.org/zap/zaptest"

	"github.com/buildtelemetry/pipeline/deadletter"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// httpSink posts each batch as NDJSON to a URL, classifying answers the
// way the real HTTP sinks do: 2xx delivered, 429 with Retry-After and 5xx
// transient, other 4xx permanent, network errors transient.
type httpSink struct {
	url    string
	client *http.Client
}

func (s *httpSink) Name() string { return "http" }
func (s *httpSink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &httpWriter{s: s}, nil
}

type httpWriter struct {
	s       *httpSink
	durable string
}

func (w *httpWriter) Write(ctx context.Context, recs []processor.Record) error {
	if len(recs) == 0 {
		return nil
	}
	var body bytes.Buffer
	for _, r := range recs {
		for _, raw := range r.Raw {
			body.Write(raw)
			body.WriteByte('\n')
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.s.url, &body)
	resp, err := w.s.client.Do(req)
	if err != nil {
		return fmt.Errorf("post batch: %w", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		w.durable = recs[len(recs)-1].SequenceNumber
		return nil
	case resp.StatusCode == 429:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return processor.RetryAfter(fmt.Errorf("post batch: status %d", resp.StatusCode), time.Duration(secs)*time.Second)
	case resp.StatusCode >= 500:
		return fmt.Errorf("post batch: status %d", resp.StatusCode)
	}
	return processor.Permanent(fmt.Errorf("post batch: status %d", resp.StatusCode))
}
func (w *httpWriter) Flush(context.Context) error { return nil }
func (w *httpWriter) Durable() string             { return w.durable }
func (w *httpWriter) Close() error                { return nil }

// destination is an in-test HTTP server that fails on demand.
type destination struct {
	mu       sync.Mutex
	mode     string // ok, 500, 429, hang
	received map[string]int
	srv      *httptest.Server
}

func newDestination(t *testing.T) *destination {
	d := &destination{mode: "ok", received: map[string]int{}}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *destination) set(mode string) {
	d.mu.Lock()
	d.mode = mode
	d.mu.Unlock()
}

func (d *destination) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	mode := d.mode
	d.mu.Unlock()
	switch mode {
	case "500":
		http.Error(w, "boom", 500)
		return
	case "429":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case "hang":
		// Read the body first: only then does net/http watch the
		// connection and cancel the context when the client gives up.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		return
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	d.mu.Lock()
	defer d.mu.Unlock()
	for sc.Scan() {
		var e struct {
			MessageID string `json:"messageId"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			d.received[e.MessageID]++
		}
	}
}

func (d *destination) got() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, v := range d.received {
		out[k] = v
	}
	return out
}

// downURL is an address nothing listens on: connection refused.
func downURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// Each failure mode of a destination: its breaker opens, the other sink
// keeps receiving, the checkpoint passes only durable (delivered or
// parked) records, and the replay command's re-drive brings every parked
// event to the destination once it is back: nothing is lost.
func TestSinkFailureModesParkAndReplay(t *testing.T) {
	ctx := context.Background()
	s := devstack.ForTest(t)
	for _, mode := range []string{"500", "429", "hang", "down"} {
		t.Run(mode, func(t *testing.T) {
			bucket := devstack.UniqueName(t, "dl")
			if err := s.CreateBucket(ctx, bucket); err != nil {
				t.Fatal(err)
			}
			dlq, err := deadletter.New(s.S3(), deadletter.Config{Bucket: bucket})
			if err != nil {
				t.Fatal(err)
			}
			dest := newDestination(t)
			url := dest.srv.URL
			if mode == "down" {
				url = downURL(t)
			} else {
				dest.set(mode)
			}
			hs := &httpSink{url: url, client: &http.Client{}}
			other := &pt.Sink{SinkName: "other"}
			store := &pt.Store{}
			f, err := kclproc.NewFactory(kclproc.Config{
				WorkerID: "w", Stream: "s", CallTimeout: 300 * time.Millisecond, RetryBudget: 5 * time.Second,
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, CheckpointInterval: time.Nanosecond,
				Breaker: kclproc.BreakerConfig{Failures: 3, OpenTimeout: time.Hour},
			}, []processor.Sink{hs, other}, dlq, store, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			p := f.CreateProcessor()
			p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000001"})
			var all []string
			for b := 0; b < 3; b++ {
				first := 1 + b*10
				process(p, pt.KinesisRecords(mode, first, 10, 5))
				all = append(all, ids(mode, first, 10, 5)...)
			}
			wantDelivered(t, other, all)
			if got := store.Progress("shardId-000000000001").Checkpoint; got != "30" {
				t.Errorf("checkpoint %q, want 30: parked records count as durable", got)
			}
			if len(dest.got()) != 0 {
				t.Errorf("the failing destination received %d events", len(dest.got()))
			}
			keys, err := dlq.List(ctx, "http", "")
			if err != nil || len(keys) == 0 {
				t.Fatalf("parked letters: %v, %v", keys, err)
			}

			// The destination is back: re-drive.
			dest.set("ok")
			hs.url = dest.srv.URL
			stats, err := deadletter.Replay(ctx, dlq, hs, deadletter.ReplayOptions{})
			if err != nil {
				t.Fatalf("replay: %v", err)
			}
			got := dest.got()
			for _, id := range all {
				if got[id] == 0 {
					t.Errorf("%s lost", id)
				}
			}
			if left, _ := dlq.List(ctx, "http", ""); len(left) != 0 {
				t.Errorf("%d letters left after a successful replay", len(left))
			}
			t.Logf("%s: %d events parked in %d letters, all re-driven", mode, stats.Events, stats.Letters)
			p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED})
		})
	}
}
