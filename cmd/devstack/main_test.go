package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"serve"}},
		{"env without -out", []string{"env"}},
		{"env with argument", []string{"env", "-out", "x", "extra"}},
		{"env bad flag", []string{"env", "-nope"}},
		{"run with no workers", []string{"run", "-workers", "0"}},
		{"run with too many workers", []string{"run", "-workers", "10"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard)
			if !errors.Is(err, errUsage) {
				t.Fatalf("run(%q): got %v, want errUsage", tc.args, err)
			}
		})
	}
}

func TestWriteEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devstack.env")
	if err := writeEnvFile(path, []string{"A=http://127.0.0.1:1", "B=", "C=it's"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"export A='http://127.0.0.1:1'\n", "export B=''\n", `export C='it'\''s'` + "\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("env file: got\n%s\nwant a line %q", b, want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(m) > 0 {
		t.Errorf("temp files left: %v", m)
	}
}

// The banner prints the commands as a shell takes them: nothing escaped,
// every worker listed.
func TestBanner(t *testing.T) {
	var b strings.Builder
	err := banner.Execute(&b, bannerData{GatewayAddr: "127.0.0.1:8080", DevKey: "k", EnvFile: ".run/stack.env", BinDir: "bin",
		Workers: "worker-1 (health :8081, metrics :9091)", Sinks: sinkStatus(func(string) string { return "" })})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-> .run/events.ndjson", "curl -sS -u k: -H 'Content-Type: application/json' http://127.0.0.1:8080/v1/track", "source .run/stack.env && bin/worker tail", "worker-1 (health :8081"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "&gt;") || strings.Contains(b.String(), "&#") {
		t.Errorf("banner has escaped text:\n%s", b.String())
	}
}
