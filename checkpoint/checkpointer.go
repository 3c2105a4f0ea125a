package checkpoint

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"
	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/processor"
)

// Compile-time checks that Checkpointer is what the library and the
// processor expect.
var (
	_ chk.Checkpointer        = (*Checkpointer)(nil)
	_ processor.ProgressStore = (*Checkpointer)(nil)
)

// Defaults for Config fields left at zero.
const (
	// DefaultLeaseDuration is how long a lease lasts after each acquisition
	// or renewal. It must equal the library's FailoverTimeMillis, whose
	// default is the same 10 s.
	DefaultLeaseDuration = 10 * time.Second
	// DefaultCallTimeout bounds each DynamoDB and Kinesis call made for the
	// library, which passes no context. It is well under the lease so that a
	// hung call cannot outlive the lease it is renewing.
	DefaultCallTimeout = 5 * time.Second
	// DefaultShardCacheTTL is how long a ListShards result is reused for
	// parent checks: the library asks for a lease on every unowned shard on
	// each tick, and one listing per second is plenty for that.
	DefaultShardCacheTTL = time.Second
	// DefaultTableWaitTimeout bounds Init's wait for a new table to become
	// ACTIVE; DynamoDB usually takes a few seconds.
	DefaultTableWaitTimeout = 2 * time.Minute
)

// DynamoDBAPI is the part of the DynamoDB client the Checkpointer uses.
// *dynamodb.Client implements it.
type DynamoDBAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}

// ShardLister lists a stream's shards, for the parent checks.
// *kinesis.Client implements it.
type ShardLister interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

// Config configures a Checkpointer.
type Config struct {
	// Table is the lease table's name. Required.
	Table string
	// Stream is the Kinesis stream's name (not its ARN: kinesalite accepts
	// only names). Required.
	Stream string
	// WorkerID identifies this worker as a lease holder; it must be the
	// library's WorkerID, and unique among running processes: a process
	// started with the ID of one that died takes over its unexpired leases
	// at once (fencing the old one out). Required.
	WorkerID string
	// LeaseDuration is how long a lease lasts after each acquisition or
	// renewal. It must equal the library's FailoverTimeMillis. Default
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// CallTimeout bounds each AWS call. The library's calls carry no
	// context, so each gets context.WithTimeout(context.Background(),
	// CallTimeout); ProgressStore calls get it on top of the caller's ctx.
	// Default DefaultCallTimeout.
	CallTimeout time.Duration
	// ShardCacheTTL is how long a ListShards result is reused. Default
	// DefaultShardCacheTTL.
	ShardCacheTTL time.Duration
	// TableWaitTimeout bounds Init's wait for the table to be ACTIVE.
	// Default DefaultTableWaitTimeout.
	TableWaitTimeout time.Duration
	// BalanceInterval is how often Run heartbeats and rebalances. Default
	// DefaultBalanceInterval.
	BalanceInterval time.Duration
	// WorkerTTL is how long a heartbeat counts a worker as live; a worker
	// killed without deregistering stops counting after it. Default
	// LeaseDuration, so a dead worker's share and its leases free up
	// together.
	WorkerTTL time.Duration
	// ClaimTTL is how long a claim holds a shard for its claimant: the
	// holder's renewal, flush and checkpoint must fit in it. After it the
	// claim is void and anyone may acquire the shard. Default
	// LeaseDuration.
	ClaimTTL time.Duration
	// MaxLeases caps the leases this worker holds; 0 means no cap beyond
	// its fair share.
	MaxLeases int
	// Registerer receives the lease metrics; nil: unregistered.
	Registerer prometheus.Registerer
	// Now returns the current time, for lease timeouts. Default time.Now;
	// tests pass a fake clock.
	Now func() time.Time
}

// Checkpointer keeps leases, checkpoints and per-sink progress in a
// DynamoDB table (row schema in the package documentation). It is safe for
// concurrent use: the library calls it from its event loop and from every
// shard consumer, and the processors call it as their ProgressStore.
type Checkpointer struct {
	db     DynamoDBAPI
	shards ShardLister
	cfg    Config
	log    *zap.Logger

	metrics *metrics

	mu      sync.Mutex
	tokens  map[string]held // by shard ID: leases we acquired and not released
	view    view            // the last balance pass
	closing bool            // Deregister ran: acquire nothing more

	listMu    sync.Mutex // serialises ListShards refreshes
	listing   map[string]shardInfo
	listingAt time.Time

	// scanLimit sets ScanInput.Limit in Leases; tests use it to force
	// several pages.
	scanLimit int32
}

// shardInfo is what the parent checks need of a listed shard.
type shardInfo struct {
	parent, adjacentParent string
}

// New returns a Checkpointer. It does no I/O: call Init (or let the
// library call it) to create the table. log may be nil.
func New(db DynamoDBAPI, shards ShardLister, cfg Config, log *zap.Logger) (*Checkpointer, error) {
	switch {
	case db == nil:
		return nil, errors.New("checkpoint: DynamoDB client is nil")
	case shards == nil:
		return nil, errors.New("checkpoint: shard lister is nil")
	case cfg.Table == "":
		return nil, errors.New("checkpoint: Config.Table is required")
	case cfg.Stream == "":
		return nil, errors.New("checkpoint: Config.Stream is required")
	case cfg.WorkerID == "":
		return nil, errors.New("checkpoint: Config.WorkerID is required")
	case cfg.LeaseDuration < 0:
		return nil, fmt.Errorf("checkpoint: Config.LeaseDuration %v is negative", cfg.LeaseDuration)
	case cfg.CallTimeout < 0:
		return nil, fmt.Errorf("checkpoint: Config.CallTimeout %v is negative", cfg.CallTimeout)
	case cfg.ShardCacheTTL < 0:
		return nil, fmt.Errorf("checkpoint: Config.ShardCacheTTL %v is negative", cfg.ShardCacheTTL)
	case cfg.TableWaitTimeout < 0:
		return nil, fmt.Errorf("checkpoint: Config.TableWaitTimeout %v is negative", cfg.TableWaitTimeout)
	case cfg.BalanceInterval < 0, cfg.WorkerTTL < 0, cfg.ClaimTTL < 0:
		return nil, errors.New("checkpoint: Config.BalanceInterval, WorkerTTL and ClaimTTL must not be negative")
	case cfg.MaxLeases < 0:
		return nil, fmt.Errorf("checkpoint: Config.MaxLeases %d is negative", cfg.MaxLeases)
	}
	cfg.LeaseDuration = cmp.Or(cfg.LeaseDuration, DefaultLeaseDuration)
	cfg.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultCallTimeout)
	cfg.ShardCacheTTL = cmp.Or(cfg.ShardCacheTTL, DefaultShardCacheTTL)
	cfg.TableWaitTimeout = cmp.Or(cfg.TableWaitTimeout, DefaultTableWaitTimeout)
	cfg.BalanceInterval = cmp.Or(cfg.BalanceInterval, DefaultBalanceInterval)
	cfg.WorkerTTL = cmp.Or(cfg.WorkerTTL, cfg.LeaseDuration)
	cfg.ClaimTTL = cmp.Or(cfg.ClaimTTL, cfg.LeaseDuration)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &Checkpointer{
		metrics: m,
		db:      db,
		shards:  shards,
		cfg:     cfg,
		log:     log.With(zap.String("table", cfg.Table), zap.String("worker", cfg.WorkerID)),
		tokens:  make(map[string]held),
	}, nil
}

// callCtx returns the context for one AWS call made on the library's
// behalf: the library gives none.
func (c *Checkpointer) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.cfg.CallTimeout)
}

// held is what a Checkpointer remembers of a lease it acquired.
type held struct {
	// token is the LeaseToken written by our acquisition.
	token string
	// lost is set when a fenced write or renewal found the row no longer
	// carrying token. The entry stays until RemoveLeaseOwner, so that
	// every later GetLease from the same consumer fails: the library uses
	// one call for renewal and acquisition, and a consumer that lost its
	// lease must end rather than silently take the shard again (it may
	// have missed what another worker checkpointed meanwhile).
	lost bool
	// handoffTo is the worker that claimed the shard, as the last renewal
	// saw it, and handoffSince when a renewal first saw the claim.
	handoffTo    string
	handoffSince time.Time
}

// lease returns what we hold for shard, if anything.
func (c *Checkpointer) lease(shard string) (held, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.tokens[shard]
	return h, ok
}

func (c *Checkpointer) setToken(shard, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens[shard] = held{token: tok}
}

// markLost records that the lease with token tok on shard is lost, unless
// a newer acquisition replaced it.
func (c *Checkpointer) markLost(shard, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.tokens[shard]; ok && h.token == tok {
		c.tokens[shard] = held{token: tok, lost: true}
	}
}

// forget drops shard's entry if its token is still tok (or unconditionally
// when tok is ""), so that an old lease's release cannot erase a newer
// acquisition.
func (c *Checkpointer) forget(shard, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.tokens[shard]; ok && (tok == "" || h.token == tok) {
		delete(c.tokens, shard)
	}
}

// isConditionFailed reports whether err is DynamoDB's conditional check
// failure: the row was not as the write expected.
func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}
