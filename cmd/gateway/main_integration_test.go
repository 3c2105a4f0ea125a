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
	"path/filepath"
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

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildGateway builds the gateway with -race once per test binary.
func buildGateway(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gateway")
		if out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build gateway: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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
	addr := freeAddr(t)
	logs := &testkit.Buffer{}
	cmd := exec.Command(buildGateway(t))
	cmd.Env = append(s.Endpoints().ChildEnv(),
		"KINESIS_STREAM="+stream,
		"GATEWAY_ADDR="+addr,
		"GATEWAY_METRICS_ADDR="+freeAddr(t),
		"GATEWAY_WRITE_KEYS=k=test",
		// A longer linger keeps more events buffered at the moment of
		// SIGTERM, which is the case worth testing.
		"GATEWAY_LINGER=50ms",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	url := "http://" + addr
	waitReady(t, url, logs)

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

	time.Sleep(1500 * time.Millisecond)
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
