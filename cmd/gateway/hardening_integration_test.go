//go:build integration

package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/testkit"
)

// startGateway runs the gateway binary on a fresh stream with extra
// environment, waits for /readyz and returns its base URL and output.
func startGateway(t *testing.T, extra ...string) (string, *testkit.Buffer) {
	t.Helper()
	s := devstack.ForTest(t)
	stream := devstack.UniqueName(t, "hard")
	if err := s.CreateStream(context.Background(), stream, 1); err != nil {
		t.Fatal(err)
	}
	_, url, logs := startGatewayProc(t, append(append(s.Endpoints().ChildEnv(), "KINESIS_STREAM="+stream), extra...)...)
	return url, logs
}

func post(t *testing.T, url, key string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/track", strings.NewReader(`{"userId":"u","event":"e"}`))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestSlowBodyCutOff: a client that sends its headers and then its body a
// byte every 200 ms is cut off by GATEWAY_BODY_TIMEOUT (2 s here), where
// before it held its connection for as long as it liked; a client that
// sends promptly on the next connection is served.
func TestSlowBodyCutOff(t *testing.T) {
	url, _ := startGateway(t, "GATEWAY_WRITE_KEYS=k=test", "GATEWAY_BODY_TIMEOUT=2s")
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n",
		base64.StdEncoding.EncodeToString([]byte("k:")))
	start := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		// The answer, if any, and then the close.
		_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
		cut <- time.Since(start)
	}()
	var took time.Duration
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case took = <-cut:
			break wait
		case <-tick.C:
			_, _ = conn.Write([]byte(" "))
			if time.Since(start) > 30*time.Second {
				t.Fatal("slow client still connected after 30 s")
			}
		}
	}
	t.Logf("slow-body client cut off after %v (deadline 2 s)", took.Round(10*time.Millisecond))
	if took < 2*time.Second {
		t.Errorf("cut off after %v, before the 2 s deadline", took)
	}
	if code, _, body := post(t, url, "k"); code != 200 {
		t.Errorf("a prompt client after it: %d %s", code, body)
	}
}

// TestKinesisDownStaysReady: with Kinesis unreachable the gateway starts,
// stays ready (readiness is the pod's, and every pod would fail together),
// and answers requests 503 with Retry-After; /readyz never carries an
// upstream error.
func TestKinesisDownStaysReady(t *testing.T) {
	dead := "127.0.0.1:1" // tcpmux: nothing listens there
	url, logs := startGateway(t, "GATEWAY_WRITE_KEYS=k=test", "AWS_ENDPOINT_URL_KINESIS=http://"+dead,
		"GATEWAY_RETRY_TIMEOUT=1s", "GATEWAY_ACK_TIMEOUT=3s")
	code, hdr, body := post(t, url, "k")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("POST with Kinesis down: %d (Retry-After %q) %s; want 503 with Retry-After", code, hdr.Get("Retry-After"), body)
	}
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(b), "error") {
		t.Errorf("/readyz with Kinesis down: %d %s; want 200 and no error text", resp.StatusCode, b)
	}
	// The check runs beside the start, so its line may come a little later.
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(logs.String(), "stream does not answer"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the start did not log that the stream does not answer")
		}
	}
}

// TestWriteKeysReload: a rotated key file takes effect without a restart.
func TestWriteKeysReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("old-key=ci\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := startGateway(t, "GATEWAY_WRITE_KEYS_FILE="+file, "GATEWAY_WRITE_KEYS_RELOAD=100ms")
	if code, _, body := post(t, url, "old-key"); code != 200 {
		t.Fatalf("old key before rotation: %d %s", code, body)
	}
	if err := os.WriteFile(file, []byte("new-key=ci\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _, _ := post(t, url, "new-key"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new key was not accepted within 10 s")
		}
	}
	if code, _, _ := post(t, url, "old-key"); code != http.StatusUnauthorized {
		t.Errorf("old key after rotation: %d, want 401", code)
	}
}
