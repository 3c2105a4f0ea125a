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
