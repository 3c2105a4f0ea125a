// Command devstack runs the local AWS emulators for make test and make run.
//
// Usage:
//
//	devstack env -out FILE [-data DIR] [-kinesis-port N] [-dynamodb-port N] [-s3-port N] [-node-dir DIR]
//	devstack s3 [-bucket B] [-prefix P] [-cat]
//	devstack run [-bin DIR] [-dir DIR] [-stream NAME] [-shards N] [-gateway-addr ADDR] ...
//
// run is `make run`: the emulators, the stream and bucket, the gateway (and
// workers) as child processes, and instructions on how to send an event.
//
// env starts the emulators, writes `export VAR='value'` lines for the DEVSTACK_*
// endpoints and the AWS SDK variables to FILE, and runs until SIGTERM or SIGINT, when
// it stops the emulators and removes FILE. make test uses it like this:
//
//	go run ./cmd/devstack env -out .devstack.env & pid=$!
//	while [ ! -f .devstack.env ]; do sleep 0.1; done
//	. ./.devstack.env && go test -tags integration ./...; kill $pid
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks command-line errors, which exit with status 2.
var errUsage = errors.New("usage: devstack env -out FILE [flags] | devstack run [flags] | devstack s3 [flags] | devstack send [flags]")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts the graceful stop, restore the default action
		// so a second one aborts at once. The emulators still exit: their stdin closes.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// run dispatches to the subcommand named by args[0].
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "env":
		return runEnv(ctx, args[1:], stderr)
	case "run":
		return runRun(ctx, args[1:], os.Stdout, stderr)
	case "s3":
		return runS3(ctx, args[1:], os.Stdout)
	case "send":
		return runSend(ctx, args[1:], os.Stdout)
	default:
		return fmt.Errorf("%w (unknown command %q)", errUsage, args[0])
	}
}
