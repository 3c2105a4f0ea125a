package dynamodb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/processor"
)

// Defaults of Config.
const (
	// DefaultName is the sink's name, the key of its watermark and dead
	// letters.
	DefaultName = "dynamodb"
	// DefaultParallelism is how many UpdateItem calls one writer has in
	// flight: a batch touches a few items per dimension and day.
	DefaultParallelism = 8
	// DefaultFlushEvents is how many events a shard's window holds before
	// it is counted: a window costs about one write unit per item it
	// touches (six dimensions, a day or two), whatever its size.
	DefaultFlushEvents = 5000
	// DefaultFlushInterval is the longest a shard's window waits to be
	// counted; the checkpoint waits for it too.
	DefaultFlushInterval = 10 * time.Second
	// AnyEvent in Config.Events counts every track event.
	AnyEvent = "*"
)

// DefaultEvents are the events counted when Config.Events is empty: the
// one event Netlify Build sends per build, current and legacy. Counting
// only these keeps each count a number of builds.
var DefaultEvents = []string{"build:ci_build_process_completed", "netlifyCI:buildComplete"}

// API is the part of the DynamoDB client the sink uses. *dynamodb.Client
// implements it.
type API interface {
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}

var (
	_ API              = (*dynamodb.Client)(nil)
	_ processor.Sink   = (*Sink)(nil)
	_ processor.Writer = (*writer)(nil)
)

// Config configures a Sink. Zero values mean the documented defaults.
type Config struct {
	// Table is the counters' table, created if missing. Required.
	Table string
	// Name is the sink's name (DefaultName). Never change it for a lease
	// table in use: the sink's progress would start over.
	Name string
	// Dimensions are the properties counted (DefaultDimensions()).
	Dimensions []Dimension
	// Events are the names of the track events counted (DefaultEvents);
	// AnyEvent counts every track event. Other message types are never
	// counted.
	Events []string
	// Parallelism bounds each writer's concurrent UpdateItem calls
	// (DefaultParallelism).
	Parallelism int
	// FlushEvents and FlushInterval close a shard's window: it is counted
	// once it holds FlushEvents events or its first record is
	// FlushInterval old (DefaultFlushEvents, DefaultFlushInterval).
	FlushEvents   int
	FlushInterval time.Duration
}

// Stats are a sink's running totals, summed over its writers.
type Stats struct {
	// Events is the number of events counted (passed the event filter),
	// replays included.
	Events int64
	// Updates is the number of UpdateItem calls, conditional checks that
	// failed included: DynamoDB bills those too.
	Updates int64
	// ConditionFailures is the number of UpdateItem calls whose watermark
	// condition failed: a replay, or another writer of the same shard.
	ConditionFailures int64
	// Reads is the number of GetItem calls: a watermark read after a
	// failed condition, or a hole read by a replay or a park note.
	Reads int64
	// WriteUnits is the write capacity DynamoDB reported consumed by the
	// successful UpdateItem calls (ReturnConsumedCapacity): one unit per
	// KB of the larger of the item before and after, which is the bill.
	WriteUnits float64
	// Holes is the number of parked ranges recorded in an item.
	Holes int64
}

// Sink counts events in DynamoDB; see the package documentation. It is
// safe for concurrent use by the writers of several shards.
type Sink struct {
	db     API
	log    *zap.Logger
	table  string
	name   string
	dims   []Dimension
	events map[string]bool // nil: every track event
	par    int

	flushEvents   int
	flushInterval time.Duration

	ensureMu sync.Mutex // serialises EnsureTable from Open
	ensured  bool

	nEvents, nUpdates, nFailures, nReads, nHoles, milliWCU atomic.Int64
}

// New returns a sink writing to cfg.Table through db. It does no I/O: the
// table is made sure of by the first Open (or by calling EnsureTable).
func New(db API, cfg Config, log *zap.Logger) (*Sink, error) {
	if db == nil {
		return nil, errors.New("dynamodb: new sink: nil client")
	}
	if cfg.Table == "" {
		return nil, errors.New("dynamodb: new sink: Table is required")
	}
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if len(cfg.Dimensions) == 0 {
		cfg.Dimensions = DefaultDimensions()
	}
	if err := validateDimensions(cfg.Dimensions); err != nil {
		return nil, fmt.Errorf("dynamodb: new sink: Dimensions: %w", err)
	}
	if len(cfg.Events) == 0 {
		cfg.Events = DefaultEvents
	}
	if cfg.Parallelism < 0 {
		return nil, fmt.Errorf("dynamodb: new sink: Parallelism %d is negative", cfg.Parallelism)
	}
	cfg.Parallelism = cmp.Or(cfg.Parallelism, DefaultParallelism)
	if cfg.FlushEvents < 0 || cfg.FlushInterval < 0 {
		return nil, fmt.Errorf("dynamodb: new sink: FlushEvents %d and FlushInterval %s must not be negative", cfg.FlushEvents, cfg.FlushInterval)
	}
	cfg.FlushEvents = cmp.Or(cfg.FlushEvents, DefaultFlushEvents)
	cfg.FlushInterval = cmp.Or(cfg.FlushInterval, DefaultFlushInterval)
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sink{
		db: db, log: log.With(zap.String("sink", cfg.Name)),
		table: cfg.Table, name: cfg.Name,
		dims: slices.Clone(cfg.Dimensions), par: cfg.Parallelism,
		flushEvents: cfg.FlushEvents, flushInterval: cfg.FlushInterval,
	}
	if !slices.Contains(cfg.Events, AnyEvent) {
		s.events = map[string]bool{}
		for _, e := range cfg.Events {
			s.events[e] = true
		}
	}
	return s, nil
}

// Name returns the sink's name.
func (s *Sink) Name() string { return s.name }

// IntegrationName is the sink's key in an integrations object: this pipeline's name for the counters (Segment has no such destination).
// An event that turns it off (or turns All off without turning it on) is
// not given to this sink.
func (s *Sink) IntegrationName() string { return IntegrationName }

// IntegrationName is the key that turns this sink on or off in an event's
// integrations object.
const IntegrationName = "Build Counts"

// Table returns the counters' table name.
func (s *Sink) Table() string { return s.table }

// Dimensions returns the dimensions counted.
func (s *Sink) Dimensions() []Dimension { return slices.Clone(s.dims) }

// Stats returns the sink's running totals.
func (s *Sink) Stats() Stats {
	return Stats{
		Events:            s.nEvents.Load(),
		Updates:           s.nUpdates.Load(),
		ConditionFailures: s.nFailures.Load(),
		Reads:             s.nReads.Load(),
		WriteUnits:        float64(s.milliWCU.Load()) / 1000,
		Holes:             s.nHoles.Load(),
	}
}

// Open returns a writer for one shard, after making sure the table exists
// (once per sink; an Open that fails to do so fails, and the next Open
// tries again). The writer keeps no state between leases: the watermarks
// live in the counter items, so shard.State is ignored. A writer opened
// with shard.Letter re-drives that letter into the live shard's items.
func (s *Sink) Open(ctx context.Context, shard processor.Shard) (processor.Writer, error) {
	if shard.ID == "" {
		return nil, errors.New("dynamodb: open writer: empty shard ID")
	}
	s.ensureMu.Lock()
	defer s.ensureMu.Unlock()
	if !s.ensured {
		if err := s.EnsureTable(ctx); err != nil {
			return nil, err
		}
		s.ensured = true
	}
	if l := shard.Letter; l != nil {
		if l.Shard == "" {
			return nil, errors.New("dynamodb: open writer: letter without a shard")
		}
		return &writer{s: s, shard: l.Shard, letter: l}, nil
	}
	return &writer{s: s, shard: shard.ID}, nil
}
