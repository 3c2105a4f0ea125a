//go:build integration

package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
	"github.com/buildtelemetry/pipeline/internal/streamread"
)

// TestThrottledStreamAnswers429: clients send twice what a 2-shard stream
// takes. The gateway answers what it cannot write in time with 429 and
// Retry-After, never 503; every event it acknowledged is in the stream,
// and both shards take writes. The stream's limits are Kinesis' scaled to
// a fiftieth (21 KB/s and 20 records/s per shard), so that twice the
// capacity is a load a loaded 2-core machine sends and the race-enabled
// gateway takes (at a twentieth, the gateway itself was the bottleneck
// under the whole suite's load, and the stream never throttled).
func TestThrottledStreamAnswers429(t *testing.T) {
	const scale = 0.02
	s := devstack.ForTest(t)
	ctx := context.Background()
	stream := devstack.UniqueName(t, "throttle")
	if err := s.CreateStream(ctx, stream, 2); err != nil {
		t.Fatal(err)
	}
	lim, err := limits.Start(s.Endpoints().Kinesis, s.Endpoints().DynamoDB, limits.AWS().Scaled(scale))
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	_, url, logs := startGatewayProc(t, append(s.Endpoints().ChildEnv(),
		"AWS_ENDPOINT_URL_KINESIS="+lim.KinesisURL,
		"KINESIS_STREAM="+stream, "GATEWAY_WRITE_KEYS=k=test")...)

	// Capacity: 2 × 52 KB/s at what an event takes in the stream.
	const clients, perBatch = 16, 10
	capacity := 2 * limits.AWS().Scaled(scale).ShardWriteBytes / 130
	every := time.Duration(float64(time.Second) * clients * perBatch / (2 * capacity))
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("k:"))
	var mu sync.Mutex
	acked := map[string]bool{}
	codes := map[int]int{}
	missingRetryAfter := 0
	errBodies := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	// Open loop, as a fleet of build machines is: each request leaves on
	// its tick whether or not the ones before it were answered.
	send := func(ids, items []string) {
		defer wg.Done()
		req, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(`{"batch":[`+strings.Join(items, ",")+`]}`))
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("request: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		codes[resp.StatusCode]++
		if resp.StatusCode >= 500 {
			errBodies[strings.TrimSpace(string(body))]++
		}
		if resp.StatusCode == http.StatusOK {
			for _, id := range ids {
				acked[id] = true
			}
		}
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			missingRetryAfter++
		}
	}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		g := corpus.NewNetlify(uint64(c))
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; time.Now().Before(deadline); i++ {
				<-tick.C
				ids := make([]string, perBatch)
				items := make([]string, perBatch)
				for j := range ids {
					ids[j] = fmt.Sprintf("c%d-%d-%d", c, i, j)
					// Netlify Build's events, as they compress in the stream.
					ev := g.NextJSON()
					items[j] = fmt.Sprintf(`{"type":"track","messageId":%q,%s`, ids[j], ev[1:])
				}
				wg.Add(1)
				go send(ids, items)
			}
		}()
	}
	wg.Wait()

	shards, err := streamread.Shards(ctx, s.Kinesis(), stream)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := event.NewRecordDecoder()
	inStream := map[string]bool{}
	perShard := map[string]int{}
	for _, shard := range shards {
		err := streamread.Follow(ctx, s.Kinesis(), stream, shard, types.ShardIteratorTypeTrimHorizon, false, func(recs []types.Record) error {
			for _, r := range recs {
				evs, err := dec.Decode(r.Data)
				if err != nil {
					return err
				}
				perShard[shard] += len(evs)
				for _, raw := range evs {
					e, err := event.Parse(raw)
					if err != nil {
						return err
					}
					inStream[e.MessageID] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	lost := 0
	for id := range acked {
		if !inStream[id] {
			lost++
		}
	}
	st := lim.Stats()
	t.Logf("answers %v; %d events acknowledged, %d in the stream (%v per shard); %d entries throttled by the stream",
		codes, len(acked), len(inStream), perShard, st.WriteThrottled)
	if lost > 0 {
		t.Errorf("%d acknowledged events are not in the stream", lost)
	}
	if codes[http.StatusTooManyRequests] == 0 {
		t.Error("no 429 at twice the stream's capacity")
	}
	if missingRetryAfter > 0 {
		t.Errorf("%d answers 429 without Retry-After", missingRetryAfter)
	}
	if n := codes[http.StatusServiceUnavailable]; n > 0 {
		t.Errorf("%d answers 503 %v: a throttled stream is at capacity, not unavailable\n%s", n, errBodies, lastLines(logs.String(), 6))
	}
	if len(perShard) != 2 {
		t.Errorf("events went to shards %v, want both", perShard)
	}
	if st.WriteRecords == 0 {
		t.Fatal("no record went through the limits layer")
	}
	if st.WriteThrottled == 0 {
		t.Error("the stream never throttled: the test proved nothing")
	}
}

func waitReady(t *testing.T, url string, logs fmt.Stringer) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
