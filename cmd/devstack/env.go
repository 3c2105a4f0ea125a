package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// runEnv implements `devstack env`: start, write the env file, wait for ctx, stop.
func runEnv(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("devstack env", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write `export VAR='value'` lines to this `file` once the emulators listen (required)")
	var cfg devstack.Config
	fs.StringVar(&cfg.DataDir, "data", "", "persist streams, tables and buckets under this `dir` (default: in memory)")
	fs.StringVar(&cfg.NodeDir, "node-dir", "", "`dir` with emulators.js and node_modules (default: $DEVSTACK_NODE_DIR or internal/devstack/node)")
	fs.IntVar(&cfg.KinesisPort, "kinesis-port", 0, "Kinesis `port` (0: a free one)")
	fs.IntVar(&cfg.DynamoDBPort, "dynamodb-port", 0, "DynamoDB `port` (0: a free one)")
	fs.IntVar(&cfg.S3Port, "s3-port", 0, "S3 `port` (0: a free one)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w (-out is required, no arguments)", errUsage)
	}
	cfg.Log = stderr

	// A file left by an earlier run would make `make test` read dead endpoints before
	// this run has written the new ones.
	if err := os.Remove(*out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale env file: %w", err)
	}
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close() // no-op after the explicit Close below; covers early returns
	if err := writeEnvFile(*out, s.Endpoints().ChildEnv()); err != nil {
		return err
	}
	defer os.Remove(*out)
	fmt.Fprintf(stderr, "devstack: env written to %s; running until SIGTERM/SIGINT\n", *out)

	select {
	case <-ctx.Done():
	case <-s.Done():
		// Close reports why the emulators died.
	}
	if err := os.Remove(*out); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "devstack: remove env file: %v\n", err)
	}
	return s.Close()
}

// writeEnvFile writes `export K='v'` lines to path atomically (temp file and rename),
// so a reader polling for the file never sees half of it.
func writeEnvFile(path string, env []string) error {
	var b strings.Builder
	b.WriteString("# Written by cmd/devstack; removed when it stops.\n")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create env file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write env file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename env file: %w", err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
