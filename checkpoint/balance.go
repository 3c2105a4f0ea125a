package checkpoint

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	"go.uber.org/zap"
)

// Balancing.
//
// The library's own rebalance (EnableLeaseStealing) cannot reach a fair
// share: it steals only while a worker holds fewer than
// floor(shards / workers), so 8 shards over 3 workers settle at 4/2/2, and
// its victim drops the shard without a final checkpoint. So the worker
// keeps the library's stealing off and runs Run, which does three things
// every BalanceInterval:
//
//  1. It writes this worker's heartbeat row, so that workers holding no
//     lease are counted (the library cannot see them at all).
//  2. From a consistent scan and the shard listing it computes the share:
//     open shards over live workers. GetLease then refuses to acquire a
//     free shard beyond ceil(open / live), so a fresh install or a
//     scale-down spreads the free leases instead of one worker taking all.
//  3. When no shard is free and some worker holds at least two more
//     leases than this one, it claims leases of the most loaded worker,
//     one per missing lease, with a conditional write fenced on the
//     holder's token. The holder's next renewal sees the claim; its
//     processor flushes every sink, checkpoints and calls Handoff, which
//     releases the lease; only the claimant may then acquire it. This is
//     KCL 3.x's graceful handoff: nothing is delivered twice or skipped.
//
// A claim expires after ClaimTTL, and is ignored once its claimant's
// heartbeat is gone, so a claimant that dies leaves the shard to whoever
// acquires it next.

// DefaultBalanceInterval is how often Run heartbeats and rebalances. Each
// pass is one write and a consistent scan of the lease table.
const DefaultBalanceInterval = time.Second

// view is what the last balance pass learned.
type view struct {
	at   time.Time
	live map[string]bool // workers with a current heartbeat, this one included
	open int             // shards that can be leased now
	cap  int             // the most leases this worker should hold
}

// Run heartbeats and rebalances every BalanceInterval until ctx ends,
// then returns ctx.Err(). Failed passes are logged and retried on the
// next tick. Call Deregister after it returns.
func (c *Checkpointer) Run(ctx context.Context) error {
	for {
		if err := c.Balance(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("balance leases", zap.Error(err))
		}
		// Jitter keeps workers started together from scanning together
		// and claiming from the same victim on the same view.
		d := c.cfg.BalanceInterval
		d = d*4/5 + rand.N(d*2/5+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// Balance runs one balance pass: heartbeat, share, claims.
func (c *Checkpointer) Balance(ctx context.Context) error {
	now := c.cfg.Now()
	if err := c.heartbeat(ctx, now); err != nil {
		return err
	}
	rows, err := c.scanRows(ctx)
	if err != nil {
		return err
	}
	listing, err := c.listShards(false)
	if err != nil {
		return err
	}
	live := map[string]bool{c.cfg.WorkerID: true}
	for _, r := range rows {
		if r.IsWorker && now.Before(r.Heartbeat) {
			live[r.ShardID[len(workerKeyPrefix):]] = true
		}
	}
	shards := openShards(rows, listing, now)
	share, claims := plan(c.cfg.WorkerID, live, shards, c.cfg.MaxLeases, rand.N[int])
	c.setView(view{at: now, live: live, open: len(shards), cap: share})
	c.metrics.liveWorkers.Set(float64(len(live)))
	c.metrics.share.Set(float64(share))
	c.metrics.openShards.Set(float64(len(shards)))
	for _, cl := range claims {
		err := c.claim(ctx, cl.shard, cl.victim, cl.token, c.cfg.WorkerID, now)
		if err != nil {
			c.log.Info("claim not written", zap.String("shard", cl.shard), zap.String("victim", cl.victim), zap.Error(err))
			continue
		}
		c.metrics.claims.Inc()
		c.log.Info("lease claimed for handoff", zap.String("shard", cl.shard), zap.String("victim", cl.victim),
			zap.Int("share", share), zap.Int("live_workers", len(live)))
	}
	return nil
}

// shardState is one open shard as the balancer sees it.
type shardState struct {
	id    string
	owner string // holder of an unexpired lease, "" if free
	token string
	// claimant is the worker named by an unexpired claim, "" if none.
	claimant string
}

// openShards returns the shards that can be leased now: listed, not
// finished, and with every listed parent finished (a waiting child is
// not part of anyone's share).
func openShards(rows []row, listing map[string]shardInfo, now time.Time) []shardState {
	byID := make(map[string]row, len(rows))
	for _, r := range rows {
		if !r.IsWorker {
			byID[r.ShardID] = r
		}
	}
	var out []shardState
	for id, info := range listing {
		r := byID[id]
		if r.Checkpoint == chk.ShardEnd {
			continue
		}
		waiting := false
		for _, p := range info.parents() {
			if _, listed := listing[p]; listed && byID[p].Checkpoint != chk.ShardEnd {
				waiting = true
			}
		}
		if waiting {
			continue
		}
		s := shardState{id: id, token: r.Token}
		if r.Owner != "" && now.Before(r.Timeout) {
			s.owner = r.Owner
		}
		if r.claimLive(now) {
			s.claimant = r.ClaimRequest
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b shardState) int { return cmp.Compare(a.id, b.id) })
	return out
}

// claimPlan is one claim to write.
type claimPlan struct {
	shard, victim, token string
}

// plan returns this worker's share of the open shards, the most leases
// it should acquire (ceil(open / live), capped by maxLeases), and the
// claims it should write: none while a shard is free (acquiring free
// shards needs no handoff), otherwise one lease at a time from the most
// loaded live worker while that one holds at least two more than me.
// Stopping at a difference of one is what ends at floor or ceil for every
// worker without passing a lease back and forth. A shard counts for its
// live claimant rather than its holder, so claims already under way are
// not repeated. pick(n) chooses among n candidates.
func plan(me string, live map[string]bool, shards []shardState, maxLeases int, pick func(int) int) (int, []claimPlan) {
	share := (len(shards) + len(live) - 1) / len(live)
	if maxLeases > 0 && share > maxLeases {
		share = maxLeases
	}
	counts := map[string]int{}
	free := false
	for _, s := range shards {
		switch {
		case s.claimant != "" && live[s.claimant]:
			counts[s.claimant]++
		case s.owner == "":
			free = true
		case live[s.owner]:
			counts[s.owner]++
		}
	}
	if free {
		return share, nil
	}
	var claims []claimPlan
	taken := map[string]bool{}
	exhausted := map[string]bool{}
	for maxLeases <= 0 || counts[me] < maxLeases {
		victim := ""
		for w := range live {
			if w == me || exhausted[w] {
				continue
			}
			if victim == "" || counts[w] > counts[victim] || (counts[w] == counts[victim] && w < victim) {
				victim = w
			}
		}
		if victim == "" || counts[victim] < counts[me]+2 {
			break
		}
		var candidates []shardState
		for _, s := range shards {
			if s.owner == victim && s.claimant == "" && !taken[s.id] {
				candidates = append(candidates, s)
			}
		}
		if len(candidates) == 0 {
			exhausted[victim] = true // its count is claims of its own
			continue
		}
		s := candidates[pick(len(candidates))]
		taken[s.id] = true
		claims = append(claims, claimPlan{shard: s.id, victim: victim, token: s.token})
		counts[victim]--
		counts[me]++
	}
	return share, claims
}

// claim writes claimant's claim on shardID, conditioned on the lease
// still being victim's under token and carrying no unexpired claim.
func (c *Checkpointer) claim(ctx context.Context, shardID, victim, token, claimant string, now time.Time) error {
	u := newUpdate()
	u.set = []string{
		u.name("claim", attrClaimRequest) + " = " + u.value("claimant", sAttr(claimant)),
		u.name("cexp", attrClaimExpiry) + " = " + u.value("exp", msValue(now.Add(c.cfg.ClaimTTL))),
	}
	u.cond = u.name("owner", attrOwner) + " = " + u.value("victim", sAttr(victim)) +
		" AND " + u.name("token", attrToken) + " = " + u.value("tok", sAttr(token)) +
		" AND (attribute_not_exists(#claim) OR attribute_not_exists(#cexp) OR #cexp < " + u.value("now", msValue(now)) + ")"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	_, err := c.db.UpdateItem(ctx, u.input(c.cfg.Table, shardID))
	if isConditionFailed(err) {
		return notAcquired("claim shard %s: lease changed hands or is already claimed", shardID)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: claim shard %s: %w", shardID, err)
	}
	return nil
}

// heartbeat writes this worker's row: it counts as live until
// now + WorkerTTL.
func (c *Checkpointer) heartbeat(ctx context.Context, now time.Time) error {
	held := c.heldCount()
	c.metrics.held.Set(float64(held))
	u := newUpdate()
	u.set = []string{
		u.name("et", attrEntityType) + " = " + u.value("worker", sAttr(entityWorker)),
		u.name("hb", attrHeartbeat) + " = " + u.value("hb", msValue(now.Add(c.cfg.WorkerTTL))),
		u.name("n", attrWorkerLeases) + " = " + u.value("n", nAttr(int64(held))),
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if _, err := c.db.UpdateItem(ctx, u.input(c.cfg.Table, workerKeyPrefix+c.cfg.WorkerID)); err != nil {
		return fmt.Errorf("checkpoint: write heartbeat of worker %s: %w", c.cfg.WorkerID, err)
	}
	return nil
}

// Deregister deletes this worker's heartbeat row and makes GetLease
// refuse every new acquisition: the worker is shutting down, and the
// others should count it out (and take its shards as it releases them)
// at once rather than after WorkerTTL. Call it after Run returned and
// before the library's Shutdown.
func (c *Checkpointer) Deregister(ctx context.Context) error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	_, err := c.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(c.cfg.Table),
		Key:       key(workerKeyPrefix + c.cfg.WorkerID),
	})
	if err != nil {
		return fmt.Errorf("checkpoint: delete heartbeat of worker %s: %w", c.cfg.WorkerID, err)
	}
	return nil
}

func (c *Checkpointer) setView(v view) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.view = v
}

// heldCount returns the leases this worker holds and has not found lost.
func (c *Checkpointer) heldCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heldLocked()
}

// heldLocked is heldCount with c.mu held.
func (c *Checkpointer) heldLocked() int {
	n := 0
	for _, h := range c.tokens {
		if !h.lost {
			n++
		}
	}
	return n
}

// admit decides whether GetLease may acquire a shard now, given whether
// the shard is claimed by this worker. It returns "" to admit, or why
// not.
func (c *Checkpointer) admit(claimedForMe bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return "worker is shutting down"
	}
	held := c.heldLocked()
	if c.cfg.MaxLeases > 0 && held >= c.cfg.MaxLeases {
		return fmt.Sprintf("worker holds %d leases, its cap", held)
	}
	if claimedForMe || !c.viewFresh() {
		return ""
	}
	if held >= c.view.cap {
		return fmt.Sprintf("worker holds %d leases, its share of %d shards over %d workers", held, c.view.open, len(c.view.live))
	}
	return ""
}

// viewFresh reports whether the last balance pass is recent enough to
// act on; without one (Run not started, or failing) GetLease admits
// every acquisition, as the library alone would. Callers hold c.mu.
func (c *Checkpointer) viewFresh() bool {
	return !c.view.at.IsZero() && c.cfg.Now().Sub(c.view.at) < 3*c.cfg.BalanceInterval+c.cfg.CallTimeout
}

// claimantAlive reports whether a claim by worker should still be
// honoured: it is, unless a fresh view shows the worker's heartbeat gone.
func (c *Checkpointer) claimantAlive(worker string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.viewFresh() || c.view.live[worker]
}
