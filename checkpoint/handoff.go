package checkpoint

import (
	"context"
	"fmt"
	"time"

	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/processor"
)

var _ processor.Handoffs = (*Checkpointer)(nil)

// noteClaim records, from a renewal's view of the row, whether another
// worker has claimed the shard: the processor polls HandoffRequested.
func (c *Checkpointer) noteClaim(shardID, tok string, r row, now time.Time) {
	claimant := ""
	if r.claimLive(now) && r.ClaimRequest != c.cfg.WorkerID {
		claimant = r.ClaimRequest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.tokens[shardID]
	if !ok || h.token != tok || h.lost {
		return
	}
	switch {
	case claimant == "":
		h.handoffTo, h.handoffSince = "", time.Time{}
	case h.handoffTo == "":
		h.handoffTo, h.handoffSince = claimant, time.Now()
		c.log.Info("handoff requested", zap.String("shard", shardID), zap.String("claimant", claimant))
	default:
		h.handoffTo = claimant
	}
	c.tokens[shardID] = h
}

// HandoffRequested reports whether another live worker has claimed
// shardID, whose lease this worker holds: its processor should flush
// every sink, save its progress and call Handoff. It implements
// processor.Handoffs; it reads memory only, updated by each renewal.
func (c *Checkpointer) HandoffRequested(shardID string) bool {
	c.mu.Lock()
	h, ok := c.tokens[shardID]
	c.mu.Unlock()
	return ok && !h.lost && h.handoffTo != "" && c.claimantAlive(h.handoffTo)
}

// Handoff releases this worker's lease on shardID to its claimant: it
// removes AssignedTo and LeaseToken and sets LeaseTimeout to now, keeping
// the claim so that only the claimant may acquire the shard, and marks the
// lease lost here so that the library's next renewal ends the shard's
// consumer. Call it only once everything delivered is in the saved
// progress. It implements processor.Handoffs; if the lease is no longer
// held it returns an error wrapping processor.ErrLeaseLost.
func (c *Checkpointer) Handoff(ctx context.Context, shardID string) error {
	h, ok := c.lease(shardID)
	u := newUpdate()
	u.set = []string{u.name("t", attrTimeout) + " = " + u.value("now", sAttr(c.cfg.Now().UTC().Format(timeFormat)))}
	u.remove = []string{u.name("owner", attrOwner), u.name("token", attrToken)}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if err := c.fencedUpdate(ctx, shardID, "hand off lease", u); err != nil {
		c.metrics.handoffs.WithLabelValues("failed").Inc()
		return err
	}
	c.markLost(shardID, h.token)
	c.metrics.handoffs.WithLabelValues("released").Inc()
	if ok && !h.handoffSince.IsZero() {
		c.metrics.handoffSeconds.Observe(time.Since(h.handoffSince).Seconds())
	}
	c.log.Info("lease handed off", zap.String("shard", shardID), zap.String("claimant", h.handoffTo),
		zap.Duration("took", time.Since(h.handoffSince)))
	return nil
}

// ListActiveWorkers returns, for the library's lease stealing, the shards
// of shardStatus held by each live worker, from a consistent paginated
// scan. Live workers holding nothing are present with no shards, and an
// unowned shard is skipped rather than an error (the library's version
// aborts the rebalance, v2#50). The ShardStatus values are the caller's,
// unmodified. It implements chk.Checkpointer; the worker itself balances
// with Run instead (see Balance), but the method works if the library's
// stealing is turned on.
func (c *Checkpointer) ListActiveWorkers(shardStatus map[string]*par.ShardStatus) (map[string][]*par.ShardStatus, error) {
	ctx, cancel := c.callCtx()
	defer cancel()
	rows, err := c.scanRows(ctx)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	workers := map[string][]*par.ShardStatus{}
	for _, r := range rows {
		if r.IsWorker && now.Before(r.Heartbeat) {
			id := r.ShardID[len(workerKeyPrefix):]
			workers[id] = workers[id][:0:0]
		}
	}
	for _, r := range rows {
		if r.IsWorker || r.Checkpoint == chk.ShardEnd || r.Owner == "" || !now.Before(r.Timeout) {
			continue
		}
		if s, ok := shardStatus[r.ShardID]; ok {
			workers[r.Owner] = append(workers[r.Owner], s)
		}
	}
	return workers, nil
}

// ClaimShard writes claimant's claim on shard, if the shard's lease is
// held and carries no unexpired claim: the conditional write is fenced on
// the holder's token, and the claim expires after ClaimTTL. The holder
// hands the shard over gracefully (see Handoff). It implements
// chk.Checkpointer and returns an error wrapping chk.ErrLeaseNotAcquired
// when the shard cannot be claimed.
func (c *Checkpointer) ClaimShard(shard *par.ShardStatus, claimant string) error {
	r, found, err := c.getRow(shard.ID)
	if err != nil {
		return err
	}
	now := c.cfg.Now()
	if !found || r.Owner == "" || !now.Before(r.Timeout) {
		return notAcquired("claim shard %s: not leased; acquire it instead", shard.ID)
	}
	if r.Owner == claimant {
		return fmt.Errorf("checkpoint: claim shard %s: %s already holds it", shard.ID, claimant)
	}
	ctx, cancel := c.callCtx()
	defer cancel()
	if err := c.claim(ctx, shard.ID, r.Owner, r.Token, claimant, now); err != nil {
		return err
	}
	shard.Mux.Lock()
	shard.ClaimRequest = claimant
	shard.Mux.Unlock()
	return nil
}

// Holds reports whether this worker holds shardID's lease and has not
// found it lost: the worker's background tasks for a shard (re-driving
// its dead letters) run only while it does.
func (c *Checkpointer) Holds(shardID string) bool {
	h, ok := c.lease(shardID)
	return ok && !h.lost
}
