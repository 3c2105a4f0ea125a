//go:build integration

package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/streamread"
	"github.com/buildtelemetry/pipeline/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// buildGateway builds the gateway with -race once per test binary.
func buildGateway(t *testing.T) string { return testkit.Binary(t, ".", true) }

// startGatewayProc starts the gateway binary with env on ports the kernel
// picks, reads from its log where it listens, waits until it is ready and
// returns its base URL and output. The test's cleanup kills it; a test
// that stops it itself waits for it.
func startGatewayProc(t *testing.T, env ...string) (*exec.Cmd, string, *testkit.Buffer) {
	t.Helper()
	logs := &testkit.Buffer{}
	cmd := exec.Command(buildGateway(t))
	cmd.Env = append(env, "GATEWAY_ADDR=127.0.0.1:0", "GATEWAY_METRICS_ADDR=127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("gateway output:\n%s", lastLines(logs.String(), 20))
		}
	})
	url := "http://" + testkit.LoggedField(t, logs, "gateway listening", "addr", 20*time.Second)
	waitReady(t, url, logs)
	return cmd, url, logs
}

// TestSIGTERMLosesNothingAcknowledged sends events from many clients while
// the gateway is stopped with SIGTERM, and checks that every event answered
// with 200 is in the stream.
func TestSIGTERMLosesNothingAcknowledged(t *testing.T) {
	s := devstack.ForTest(t)
	ctx := context.Background()
	stream := devstack.UniqueName(t, "sigterm")
	if err := s.CreateStream(ctx, stream, 4); err != nil {
		t.Fatal(err)
	}
	cmd, url, logs := startGatewayProc(t, append(s.Endpoints().ChildEnv(),
		"KINESIS_STREAM="+stream,
		"GATEWAY_WRITE_KEYS=k=test",
		// A longer linger keeps more events buffered at the moment of
		// SIGTERM, which is the case worth testing.
		"GATEWAY_LINGER=50ms",
	)...)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("k:"))
	var (
		mu                   sync.Mutex
		acked                = map[string]bool{}
		sent, refused, other atomic.Int64
		stop                 atomic.Bool
		wg                   sync.WaitGroup
	)
	client := &http.Client{Timeout: 15 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				n := 1 + i%5
				ids := make([]string, n)
				items := make([]string, n)
				for j := range ids {
					ids[j] = fmt.Sprintf("w%d-r%d-e%d", w, i, j)
					items[j] = fmt.Sprintf(`{"type":"track","messageId":%q,"userId":"u","event":"build","properties":{"i":%d}}`, ids[j], i)
				}
				req, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(`{"batch":[`+strings.Join(items, ",")+`]}`))
				req.Header.Set("Authorization", auth)
				sent.Add(int64(n))
				resp, err := client.Do(req)
				if err != nil {
					var op *net.OpError
					if errors.As(err, &op) {
						refused.Add(1)
						if stop.Load() {
							return
						}
						time.Sleep(5 * time.Millisecond)
						continue
					}
					other.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					for _, id := range ids {
						acked[id] = true
					}
					mu.Unlock()
				}
			}
		}()
	}

	// SIGTERM under load: once a few hundred events were acknowledged.
	testkit.WaitFor(t, "events acknowledged", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 500
	})
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gateway exited with %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway did not exit within 30 s of SIGTERM\n%s", logs.String())
	}
	drain := time.Since(start)
	// Let clients see the closed port, then stop them.
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	recs, err := streamread.ReadAll(ctx, s.Kinesis(), stream)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := event.NewRecordDecoder()
	inStream := map[string]bool{}
	for _, r := range recs {
		evs, err := dec.Decode(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range evs {
			e, err := event.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			inStream[e.MessageID] = true
		}
	}
	lost := 0
	for id := range acked {
		if !inStream[id] {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged event %s is not in the stream", id)
			}
		}
	}
	t.Logf("sent %d events, %d acknowledged, %d in stream, %d lost; drain took %v; %d refused connections",
		sent.Load(), len(acked), len(inStream), lost, drain.Round(time.Millisecond), refused.Load())
	if len(acked) == 0 {
		t.Fatal("no event was acknowledged: the test proved nothing")
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged events lost", lost)
	}
}
