// Command worker consumes the event stream. Subcommands:
//
//	worker run    lease shards and deliver events to the sinks
//	worker tail   print the stream's events as NDJSON, decoded from our
//	              record format (or plain JSON records)
//	worker replay re-drive parked records into their sink
//	worker counts print version adoption from the DynamoDB counters
//	worker version print the build (also -version)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/buildtelemetry/pipeline/internal/buildinfo"
)

const usage = `usage: worker <command> [flags]

commands:
  run      lease shards and deliver events to every configured sink
  tail     print the events in the stream as NDJSON
  replay   re-drive parked records of one sink from the dead-letter store
  counts   print version adoption from the DynamoDB counters
  version  print the build's version, revision and Go version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd := os.Args[1]; cmd {
	case "run":
		err = runWorker(os.Args[2:], os.Getenv)
	case "replay":
		err = runReplay(ctx, os.Args[2:], os.Getenv)
	case "counts":
		err = runCounts(ctx, os.Args[2:], os.Getenv, os.Stdout)
	case "tail":
		err = runTail(ctx, os.Args[2:], os.Getenv, os.Stdout)
	case "version", "-version", "--version":
		fmt.Println("worker", buildinfo.Read())
		return
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "worker: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
