package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/deadletter"
	"github.com/buildtelemetry/pipeline/internal/zaplog"
)

// runReplay is `worker replay -sink NAME [-reason R] [-list] [run flags]`: it
// re-drives the parked letters of one sink into it, deleting each letter
// only once the sink made its events durable. It uses the same settings
// as `worker run`, so the sink is configured exactly as in production.
func runReplay(ctx context.Context, args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("worker replay", flag.ContinueOnError)
	sinkName := fs.String("sink", "", "sink whose parked letters to re-drive (required)")
	reason := fs.String("reason", "", "only letters parked for this reason (breaker-open, permanent, retries-exhausted); empty: all")
	stopOnError := fs.Bool("stop-on-error", true, "stop at the first letter that fails (the sink is probably still down)")
	list := fs.Bool("list", false, "only list the sink's letters (key and when parked), replaying nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sinkName == "" {
		return errors.New("replay: -sink is required")
	}
	cfg, err := loadRunConfig(fs.Args(), getenv)
	if err != nil {
		return err
	}
	log, err := zaplog.New(cfg.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	clients, err := newAWSClients(ctx, cfg.Region, getenv)
	if err != nil {
		return err
	}
	store, err := deadletter.New(clients.s3, deadletter.Config{Bucket: cfg.DeadLetterBkt, Prefix: cfg.DeadLetterPfx})
	if err != nil {
		return err
	}
	if *list {
		return listLetters(ctx, store, *sinkName, *reason, os.Stdout)
	}
	sinks, closeSinks, err := buildSinks(ctx, cfg, clients, nil, log)
	if err != nil {
		return err
	}
	defer closeSinks()
	for _, s := range sinks {
		if s.Name() != *sinkName {
			continue
		}
		stats, err := deadletter.Replay(ctx, store, s, deadletter.ReplayOptions{
			Reason: *reason, StopOnError: *stopOnError,
			OnLetter: func(r deadletter.LetterResult) {
				if r.Err != nil {
					log.Error("replay letter failed; it stays parked", zap.String("key", r.Key), zap.Error(r.Err))
				}
				if r.Corrupt {
					log.Warn("skipping an object that does not decode (an upload cut off by a killed worker; its records were parked again)", zap.String("key", r.Key))
				}
			},
		})
		fmt.Printf("replayed %d letters, %d events into %s; %d letters failed, %d entries kept (not replayable), %d events rejected again, %d corrupt objects skipped\n",
			stats.Letters, stats.Events, *sinkName, stats.Failed, stats.Skipped, stats.Rejected, stats.Corrupt)
		return err
	}
	return fmt.Errorf("replay: sink %q is not configured (see worker run's sink settings)", *sinkName)
}

// listLetters prints a sink's letters, oldest first: what a person reads
// before deciding to replay or delete them. The key names the reason,
// shard and sequence range.
func listLetters(ctx context.Context, store *deadletter.Store, sink, reason string, out io.Writer) error {
	letters, err := store.ListLetters(ctx, sink, reason)
	if err != nil {
		return err
	}
	slices.SortStableFunc(letters, func(a, b deadletter.Listed) int { return a.Modified.Compare(b.Modified) })
	for _, l := range letters {
		when := "-"
		if !l.Modified.IsZero() {
			when = l.Modified.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(out, "%s  %s\n", when, l.Key)
	}
	fmt.Fprintf(out, "%d letters of sink %s\n", len(letters), sink)
	return nil
}
