// Package limits puts production's throughput limits in front of the
// local emulators. kinesalite and dynalite accept any rate, so without it
// no test, chaos run or benchmark ever meets a throttle: the gateway's
// retry of throttled entries and its 429s, the worker's read limits
// shared with `worker tail`, and DynamoDB's per-partition limit on the
// counters all go untried. Proxy is a reverse proxy per emulator that
// counts what each Kinesis shard and each DynamoDB item receives and
// answers over the limit exactly as AWS does.
//
// Limits and their sources (see also the README's local stack section):
//
//   - Kinesis, per shard, writes: 1 MiB/s and 1,000 records/s, counted on
//     data plus partition key; PutRecords fails the entries over the limit
//     with ErrorCode ProvisionedThroughputExceededException and counts
//     them in FailedRecordCount, PutRecord fails whole (Kinesis Data
//     Streams quotas; PutRecords API reference).
//   - Kinesis, per shard, reads: 5 GetRecords calls/s and 2 MiB/s, shared
//     by every reader of the shard; a call that returns more than the
//     second's allowance makes the following calls fail until it is paid
//     back, as after a 10 MB call (GetRecords API reference).
//   - DynamoDB on demand, per item key (a partition's limit, which is what
//     one hot item meets): 1,000 write units/s, each write costing the
//     capacity DynamoDB reports for it (1 unit per KB of the larger of the
//     item before and after); over it the call fails with
//     ProvisionedThroughputExceededException, which the SDK retries
//     (DynamoDB partition and throttling documentation).
//
// Each limit is a token bucket refilled continuously at the rate and
// holding at most Window of it (one second: AWS measures per second),
// plus Burst (short bursts above the rate that AWS absorbs). Reads and
// writes of other kinds pass through untouched.
package limits

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Config sets the limits. The zero value of a rate means no limit on it.
type Config struct {
	ShardWriteBytes   float64 // per second and shard
	ShardWriteRecords float64
	ShardReadCalls    float64
	ShardReadBytes    float64
	KeyWriteUnits     float64 // per second and DynamoDB item key
	// Window is how much of each rate a bucket holds when full (default
	// one second).
	Window time.Duration
	// Burst is the extra allowance above Window, as a fraction of the
	// rate (0.5: half a second more).
	Burst float64
}

// AWS returns the published limits.
func AWS() Config {
	return Config{
		ShardWriteBytes:   1 << 20,
		ShardWriteRecords: 1000,
		ShardReadCalls:    5,
		ShardReadBytes:    2 << 20,
		KeyWriteUnits:     1000,
		Window:            time.Second,
		Burst:             0.2,
	}
}

// Scaled returns c with every rate multiplied by f: tests that must push
// a stream past its capacity on a small machine scale the limits down
// rather than the load up.
func (c Config) Scaled(f float64) Config {
	c.ShardWriteBytes *= f
	c.ShardWriteRecords *= f
	c.ShardReadCalls *= f
	c.ShardReadBytes *= f
	c.KeyWriteUnits *= f
	return c
}

func (c Config) bucket(rate float64, now time.Time) *bucket {
	if rate <= 0 {
		return nil
	}
	w := c.Window
	if w <= 0 {
		w = time.Second
	}
	size := rate * (w.Seconds() + c.Burst)
	return &bucket{rate: rate, size: size, tokens: size, last: now}
}

// bucket is a token bucket that may go into debt: a read's cost is known
// only after it is served.
type bucket struct {
	rate, size, tokens float64
	last               time.Time
}

func (b *bucket) refill(now time.Time) {
	if b == nil {
		return
	}
	b.tokens = min(b.size, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

// has reports whether n tokens are there (a nil bucket always has).
func (b *bucket) has(n float64) bool { return b == nil || b.tokens >= n }

// positive reports whether the bucket is out of debt.
func (b *bucket) positive() bool { return b == nil || b.tokens > 0 }

func (b *bucket) take(n float64) {
	if b != nil {
		b.tokens -= n
	}
}

// Stats counts what a proxy passed and refused.
type Stats struct {
	// WriteRecords and WriteThrottled count Kinesis entries written and
	// refused; ReadCalls and ReadThrottled GetRecords calls.
	WriteRecords, WriteThrottled int64
	ReadCalls, ReadThrottled     int64
	// DynamoDBWrites and DynamoDBThrottled count item writes.
	DynamoDBWrites, DynamoDBThrottled int64
	// MaxReadCallsPerSecond is the most GetRecords calls one shard served
	// within one calendar second.
	MaxReadCallsPerSecond int
	// WritesPerShard are the Kinesis records written per shard.
	WritesPerShard map[string]int64
}

// counter is the mutable side of Stats.
type counter struct {
	mu       sync.Mutex
	s        Stats
	perShard map[string]int64
	secCalls map[string]secCount
}

type secCount struct {
	sec int64
	n   int
}

func (c *counter) add(f func(s *Stats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.s)
}

func (c *counter) wrote(shard string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perShard == nil {
		c.perShard = map[string]int64{}
	}
	c.perShard[shard] += n
	c.s.WriteRecords += n
}

func (c *counter) read(shard string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.secCalls == nil {
		c.secCalls = map[string]secCount{}
	}
	sc := c.secCalls[shard]
	if sec := now.Unix(); sc.sec != sec {
		sc = secCount{sec: sec}
	}
	sc.n++
	c.secCalls[shard] = sc
	c.s.ReadCalls++
	c.s.MaxReadCallsPerSecond = max(c.s.MaxReadCallsPerSecond, sc.n)
}

func (c *counter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.WritesPerShard = make(map[string]int64, len(c.perShard))
	for k, v := range c.perShard {
		s.WritesPerShard[k] = v
	}
	return s
}

// upstreamClient talks to the emulators, which are on loopback: no proxy
// from the environment.
func upstreamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
	}}
}
