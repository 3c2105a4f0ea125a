//go:build integration

package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// TestEnvCommand runs `devstack env` as make test does: wait for the file, use the
// endpoints in it, stop, and check the file is gone.
func TestEnvCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "devstack.env")
	if err := os.WriteFile(out, []byte("export STALE=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"env", "-out", out}, &testWriter{t}) }()

	var vars map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for vars == nil {
		if time.Now().After(deadline) {
			t.Fatal("env file not written within 30s")
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		vars = readEnvFile(t, out)
	}
	for _, k := range []string{"DEVSTACK_KINESIS_ENDPOINT", "DEVSTACK_DYNAMODB_ENDPOINT", "DEVSTACK_S3_ENDPOINT", "AWS_ENDPOINT_URL_KINESIS", "AWS_ACCESS_KEY_ID", "AWS_EC2_METADATA_DISABLED"} {
		if vars[k] == "" {
			t.Errorf("env file: %s missing or empty", k)
		}
	}
	s := devstack.Attach(devstack.Endpoints{
		Kinesis:  vars["DEVSTACK_KINESIS_ENDPOINT"],
		DynamoDB: vars["DEVSTACK_DYNAMODB_ENDPOINT"],
		S3:       vars["DEVSTACK_S3_ENDPOINT"],
	})
	if _, err := s.Kinesis().ListStreams(ctx, &kinesis.ListStreamsInput{}); err != nil {
		t.Fatalf("list streams at the written endpoint: %v", err)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run after cancel: got %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15s of cancel")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("env file after stop: got stat error %v, want not-exist", err)
	}
}

// readEnvFile parses `export K='v'` lines; it returns nil while the file is missing or
// still the stale one.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kv, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = strings.Trim(v, "'")
	}
	if vars["STALE"] != "" {
		return nil
	}
	return vars
}

// testWriter sends the command's stderr to the test log.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
