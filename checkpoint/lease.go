package checkpoint

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/processor"
)

// notAcquired wraps chk.ErrLeaseNotAcquired with the reason. The library
// matches it with errors.As, ends the consumer when a renewal returns it,
// and does not log it when an acquisition does (contention is normal).
func notAcquired(format string, args ...any) error {
	return fmt.Errorf("checkpoint: "+format+": %w", append(args, chk.ErrLeaseNotAcquired{})...)
}

// GetLease acquires the lease on shard for workerID, or renews it if this
// Checkpointer holds it. It implements chk.Checkpointer: the library calls
// it from its event loop to acquire, and from each shard consumer every
// LeaseRefreshWaitTime to renew. On success it sets shard.AssignedTo and
// shard.LeaseTimeout. It returns an error wrapping chk.ErrLeaseNotAcquired
// when the lease is held by another worker, the shard is finished, a parent
// has not reached SHARD_END, or (renewal) the lease was lost; a renewal
// error makes the library end the shard's consumer.
//
// Renewal is decided by the token in memory, not by the row: with a token
// this is a renewal, fenced on owner and token, that never falls back to a
// new acquisition, because the consumer asking for it may have missed
// records that a worker which held the lease in between has checkpointed.
// Once a lease is found lost, GetLease keeps refusing the shard until
// RemoveLeaseOwner (which the library calls when the consumer exits).
func (c *Checkpointer) GetLease(shard *par.ShardStatus, workerID string) error {
	if workerID != c.cfg.WorkerID {
		return fmt.Errorf("checkpoint: lease for worker %q, but Config.WorkerID is %q", workerID, c.cfg.WorkerID)
	}
	if h, ok := c.lease(shard.ID); ok {
		if h.lost {
			return notAcquired("lease on shard %s was lost, waiting for its consumer to release it", shard.ID)
		}
		return c.renew(shard, h.token)
	}
	return c.acquire(shard)
}

// renew extends the lease we hold on shard and bumps its counter, if the
// row still carries our token.
func (c *Checkpointer) renew(shard *par.ShardStatus, tok string) error {
	timeout := c.cfg.Now().Add(c.cfg.LeaseDuration).UTC()
	u := newUpdate()
	u.set = []string{
		u.name("t", attrTimeout) + " = " + u.value("t", sAttr(timeout.Format(timeFormat))),
		u.name("c", attrCounter) + " = if_not_exists(#c, " + u.value("zero", nAttr(0)) + ") + " + u.value("one", nAttr(1)),
	}
	u.cond = c.fence(u, tok)
	ctx, cancel := c.callCtx()
	defer cancel()
	in := u.input(c.cfg.Table, shard.ID)
	// The whole row comes back, so the renewal sees a claim on it
	// without another read.
	in.ReturnValues = types.ReturnValueAllNew
	out, err := c.db.UpdateItem(ctx, in)
	if isConditionFailed(err) {
		c.markLost(shard.ID, tok)
		c.log.Info("lease lost", zap.String("shard", shard.ID))
		return notAcquired("renew lease on shard %s: taken or released since acquired", shard.ID)
	}
	if err != nil {
		// The write may have happened: keep the token. The library ends
		// the consumer on this error and RemoveLeaseOwner releases it.
		return fmt.Errorf("checkpoint: renew lease on shard %s: %w", shard.ID, err)
	}
	if out != nil && len(out.Attributes) > 0 {
		if r, err := decodeRow(out.Attributes); err == nil {
			c.noteClaim(shard.ID, tok, r, c.cfg.Now())
		}
	}
	shard.Mux.Lock()
	shard.AssignedTo = c.cfg.WorkerID
	shard.LeaseTimeout = timeout
	shard.Mux.Unlock()
	return nil
}

// fence registers the placeholders of the lease-holder condition and
// returns it: the row names this worker and carries the token of our
// acquisition. A row that was deleted, released, taken over, or acquired
// again by another process with our WorkerID fails it.
func (c *Checkpointer) fence(u *update, tok string) string {
	return u.name("owner", attrOwner) + " = " + u.value("me", sAttr(c.cfg.WorkerID)) +
		" AND " + u.name("token", attrToken) + " = " + u.value("tok", sAttr(tok))
}

// acquire takes the lease on shard if it is free or expired, the shard is
// not finished, and its parents are.
func (c *Checkpointer) acquire(shard *par.ShardStatus) error {
	r, found, err := c.getRow(shard.ID)
	if err != nil {
		return err
	}
	now := c.cfg.Now()
	if found && r.Checkpoint == chk.ShardEnd {
		return notAcquired("shard %s is finished", shard.ID)
	}
	if found && r.heldByOther(c.cfg.WorkerID, now) {
		return notAcquired("shard %s is held by %s until %s", shard.ID, r.Owner, r.TimeoutRaw)
	}
	// A claim reserves a released shard for its claimant, so that a
	// handoff goes where the balancer meant it to.
	claimed := found && r.claimLive(now)
	if claimed && r.ClaimRequest != c.cfg.WorkerID && c.claimantAlive(r.ClaimRequest) {
		return notAcquired("shard %s is claimed by %s", shard.ID, r.ClaimRequest)
	}
	if why := c.admit(claimed && r.ClaimRequest == c.cfg.WorkerID); why != "" {
		return notAcquired("acquire shard %s: %s", shard.ID, why)
	}
	info, err := c.checkParents(shard.ID)
	if err != nil {
		return err
	}

	tok := rand.Text()
	timeout := now.Add(c.cfg.LeaseDuration).UTC()
	u := newUpdate()
	u.set = []string{
		u.name("owner", attrOwner) + " = " + u.value("me", sAttr(c.cfg.WorkerID)),
		u.name("token", attrToken) + " = " + u.value("tok", sAttr(tok)),
		u.name("t", attrTimeout) + " = " + u.value("t", sAttr(timeout.Format(timeFormat))),
		u.name("c", attrCounter) + " = if_not_exists(#c, " + u.value("zero", nAttr(0)) + ") + " + u.value("one", nAttr(1)),
		// Created here so SaveProgress and SaveSinkState can SET one
		// sink's entry by its nested path: DynamoDB cannot create a map and
		// a key inside it in one expression.
		u.name("wm", attrSinkWatermarks) + " = if_not_exists(#wm, " + u.value("empty", emptyMap()) + ")",
		u.name("st", attrSinkState) + " = if_not_exists(#st, :empty)",
	}
	u.remove = []string{u.name("claim", attrClaimRequest), u.name("cexp", attrClaimExpiry)}
	parent := info.parent
	parent = cmp.Or(parent, shard.ParentShardId)
	if parent != "" {
		u.set = append(u.set, u.name("p", attrParent)+" = "+u.value("p", sAttr(parent)))
	}
	u.cond = acquireCondition(u, r, found)

	ctx, cancel := c.callCtx()
	defer cancel()
	_, err = c.db.UpdateItem(ctx, u.input(c.cfg.Table, shard.ID))
	if isConditionFailed(err) {
		return notAcquired("acquire lease on shard %s: row changed since read", shard.ID)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: acquire lease on shard %s: %w", shard.ID, err)
	}
	c.setToken(shard.ID, tok)
	shard.Mux.Lock()
	shard.AssignedTo = c.cfg.WorkerID
	shard.LeaseTimeout = timeout
	shard.Mux.Unlock()
	c.log.Info("lease acquired", zap.String("shard", shard.ID), zap.Int64("counter", r.Counter+1),
		zap.String("previousOwner", r.Owner), zap.Bool("claimed", claimed))
	return nil
}

// acquireCondition returns the condition that the row is still as read:
// absent, or with the same LeaseCounter (every acquisition and renewal
// changes it) and not finished. A row written by the library's own
// checkpointer has no counter; it must then still have the owner and
// timeout we read.
func acquireCondition(u *update, r row, found bool) string {
	if !found {
		return "attribute_not_exists(" + u.name("id", attrShardID) + ")"
	}
	notEnded := "(attribute_not_exists(" + u.name("cp", attrCheckpoint) + ") OR #cp <> " + u.value("end", sAttr(chk.ShardEnd)) + ")"
	if r.HasCounter {
		return "#c = " + u.value("seen", nAttr(r.Counter)) + " AND " + notEnded
	}
	cond := "attribute_exists(" + u.name("id", attrShardID) + ") AND attribute_not_exists(#c) AND " + notEnded
	if r.Owner == "" {
		cond += " AND attribute_not_exists(#owner)"
	} else {
		cond += " AND #owner = " + u.value("seenOwner", sAttr(r.Owner))
	}
	if !r.HasTimeout {
		cond += " AND attribute_not_exists(#t)"
	} else {
		cond += " AND #t = " + u.value("seenT", sAttr(r.TimeoutRaw))
	}
	return cond
}

func emptyMap() types.AttributeValue {
	return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}
}

// checkParents refuses (chk.ErrLeaseNotAcquired) while a parent of
// shardID is still in the stream and not at SHARD_END: the parent may
// still hold records for the child's keys, which must be processed
// first. A parent no longer listed has aged out of the stream; nothing of
// it can be read any more. It returns the shard's
// listing entry.
func (c *Checkpointer) checkParents(shardID string) (shardInfo, error) {
	info, listing, ok, err := c.lookupShard(shardID)
	if err != nil {
		return shardInfo{}, err
	}
	if !ok {
		// Not ErrLeaseNotAcquired: the library logs this one. It happens
		// once when a shard ages out between the library's shard sync and
		// ours, and on every tick when Config.Stream is not the library's
		// stream.
		return shardInfo{}, fmt.Errorf("checkpoint: acquire lease on shard %s: not listed in stream %s", shardID, c.cfg.Stream)
	}
	for _, p := range info.parents() {
		pr, found, err := c.getRow(p)
		if err != nil {
			return shardInfo{}, err
		}
		if found && pr.Checkpoint == chk.ShardEnd {
			continue
		}
		if _, listed := listing[p]; listed {
			c.log.Debug("child lease refused: parent not finished", zap.String("shard", shardID),
				zap.String("parent", p), zap.String("parentOwner", pr.Owner), zap.String("parentCheckpoint", pr.Checkpoint))
			return shardInfo{}, notAcquired("shard %s waits for parent %s to reach %s", shardID, p, chk.ShardEnd)
		}
		if found {
			c.removeAgedOutRow(p)
		}
	}
	return info, nil
}

// removeAgedOutRow deletes the row of a parent that left the stream
// without reaching SHARD_END. The library's waitOnParentShard polls the
// parent's row until it reads SHARD_END or finds no row, forever and
// deaf to Shutdown (v1#72); the library itself deletes such rows only for
// shards its own shard sync has seen listed. Failures are only logged: the
// child consumer then waits as the library would.
func (c *Checkpointer) removeAgedOutRow(shardID string) {
	if err := c.deleteRow(shardID); err != nil {
		c.log.Warn("remove lease row of aged-out parent", zap.String("shard", shardID), zap.Error(err))
		return
	}
	c.log.Info("removed lease row of a parent that aged out of the stream unfinished", zap.String("shard", shardID))
}

// getRow reads shardID's row with a consistent read, on the library's
// behalf (no caller context).
func (c *Checkpointer) getRow(shardID string) (row, bool, error) {
	ctx, cancel := c.callCtx()
	defer cancel()
	return c.getRowCtx(ctx, shardID)
}

func (c *Checkpointer) getRowCtx(ctx context.Context, shardID string) (row, bool, error) {
	out, err := c.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(c.cfg.Table),
		Key:            key(shardID),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return row{}, false, fmt.Errorf("checkpoint: get lease row %s: %w", shardID, err)
	}
	if out == nil || len(out.Item) == 0 {
		return row{}, false, nil
	}
	r, err := decodeRow(out.Item)
	if err != nil {
		return row{}, false, fmt.Errorf("checkpoint: decode lease row %s: %w", shardID, err)
	}
	return r, true, nil
}

// FetchCheckpoint loads shard's row into shard: Checkpoint, AssignedTo
// ("" if the row names our WorkerID but this process does not hold the
// lease), LeaseTimeout, ClaimRequest and, if the row knows it,
// ParentShardId. It implements chk.Checkpointer. With no row it returns exactly
// chk.ErrSequenceIDNotFound, unwrapped, because the library compares with
// ==. A row without a checkpoint (leased, never checkpointed) sets
// Checkpoint to "" and returns nil, so the library's waitOnParentShard
// keeps waiting instead of taking the parent for deleted.
func (c *Checkpointer) FetchCheckpoint(shard *par.ShardStatus) error {
	r, found, err := c.getRow(shard.ID)
	if err != nil {
		return err
	}
	if !found {
		return chk.ErrSequenceIDNotFound
	}
	owner := r.Owner
	if h, ok := c.lease(shard.ID); owner == c.cfg.WorkerID && (!ok || h.lost) {
		// The row names our WorkerID but this process holds no lease on
		// it (an earlier process under the same ID held it). The library
		// reads AssignedTo == its WorkerID as "a consumer of mine runs
		// it" and skips the shard on every tick; if the GetLease that
		// follows this call failed even once, the shard would never be
		// consumed again.
		owner = ""
	}
	shard.Mux.Lock()
	shard.Checkpoint = r.Checkpoint
	shard.AssignedTo = owner
	shard.LeaseTimeout = r.Timeout
	shard.ClaimRequest = r.ClaimRequest
	// The library reads ParentShardId without the lock; write it only in
	// the rare case it differs.
	if r.Parent != "" && shard.ParentShardId != r.Parent {
		shard.ParentShardId = r.Parent
	}
	shard.Mux.Unlock()
	return nil
}

// CheckpointSequence writes shard.GetCheckpoint() (a sequence number, or
// SHARD_END) as the shard's checkpoint. It implements chk.Checkpointer.
// The write is fenced: if this Checkpointer no longer holds the lease it
// returns an error wrapping processor.ErrLeaseLost and the row is
// unchanged.
func (c *Checkpointer) CheckpointSequence(shard *par.ShardStatus) error {
	cp := shard.GetCheckpoint()
	if cp == "" {
		return fmt.Errorf("checkpoint: write checkpoint of shard %s: empty sequence number", shard.ID)
	}
	u := newUpdate()
	u.set = []string{u.name("cp", attrCheckpoint) + " = " + u.value("cp", sAttr(cp))}
	ctx, cancel := c.callCtx()
	defer cancel()
	if err := c.fencedUpdate(ctx, shard.ID, "write checkpoint", u); err != nil {
		return err
	}
	if cp == chk.ShardEnd {
		c.log.Info("shard finished", zap.String("shard", shard.ID))
	}
	return nil
}

// fencedUpdate applies u to shardID's row only if this Checkpointer holds
// the lease (see fence). Otherwise it returns an error wrapping
// processor.ErrLeaseLost, and marks the lease lost.
func (c *Checkpointer) fencedUpdate(ctx context.Context, shardID, what string, u *update) error {
	h, ok := c.lease(shardID)
	if !ok {
		return fmt.Errorf("checkpoint: %s of shard %s: no lease held: %w", what, shardID, processor.ErrLeaseLost)
	}
	if h.lost {
		return fmt.Errorf("checkpoint: %s of shard %s: %w", what, shardID, processor.ErrLeaseLost)
	}
	u.cond = c.fence(u, h.token)
	_, err := c.db.UpdateItem(ctx, u.input(c.cfg.Table, shardID))
	if isConditionFailed(err) {
		c.markLost(shardID, h.token)
		return fmt.Errorf("checkpoint: %s of shard %s: %w", what, shardID, processor.ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %s of shard %s: %w", what, shardID, err)
	}
	return nil
}

// RemoveLeaseOwner releases this worker's lease on shardID: it removes
// AssignedTo and LeaseToken and sets LeaseTimeout to now, so that another
// worker can take the shard at once, and forgets the token, so our own
// later writes for the shard fail and the shard can be acquired afresh. It
// implements chk.Checkpointer; the library calls it whenever a shard
// consumer exits. A row this worker no longer holds is left alone and is
// not an error.
func (c *Checkpointer) RemoveLeaseOwner(shardID string) error {
	h, ok := c.lease(shardID)
	if ok {
		c.forget(shardID, h.token)
	}
	u := newUpdate()
	u.set = []string{u.name("t", attrTimeout) + " = " + u.value("now", sAttr(c.cfg.Now().UTC().Format(timeFormat)))}
	u.remove = []string{u.name("owner", attrOwner), u.name("token", attrToken)}
	if ok {
		// Our token, even if known lost: never strip a lease that a
		// process restarted under our WorkerID has taken since.
		u.cond = c.fence(u, h.token)
	} else {
		u.cond = "#owner = " + u.value("me", sAttr(c.cfg.WorkerID))
	}
	ctx, cancel := c.callCtx()
	defer cancel()
	_, err := c.db.UpdateItem(ctx, u.input(c.cfg.Table, shardID))
	if isConditionFailed(err) {
		c.log.Debug("lease not released: not held", zap.String("shard", shardID))
		return nil
	}
	if err != nil {
		return fmt.Errorf("checkpoint: release lease on shard %s: %w", shardID, err)
	}
	c.log.Info("lease released", zap.String("shard", shardID))
	return nil
}

// deleteRow deletes shardID's row, whoever holds it.
func (c *Checkpointer) deleteRow(shardID string) error {
	ctx, cancel := c.callCtx()
	defer cancel()
	_, err := c.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(c.cfg.Table), Key: key(shardID)})
	return err
}

// RemoveLeaseInfo deletes shardID's row. It implements chk.Checkpointer;
// the library calls it when the shard has left the stream.
func (c *Checkpointer) RemoveLeaseInfo(shardID string) error {
	c.forget(shardID, "")
	if err := c.deleteRow(shardID); err != nil {
		return fmt.Errorf("checkpoint: delete lease row %s: %w", shardID, err)
	}
	c.log.Info("lease row removed", zap.String("shard", shardID))
	return nil
}

// GetLeaseOwner returns the worker named in shardID's row, whether or not
// its lease has expired, or chk.NoLeaseOwnerErr if none. It implements
// chk.Checkpointer (the library never calls it).
func (c *Checkpointer) GetLeaseOwner(shardID string) (string, error) {
	r, found, err := c.getRow(shardID)
	if err != nil {
		return "", err
	}
	if !found || r.Owner == "" {
		return "", chk.NoLeaseOwnerErr
	}
	return r.Owner, nil
}
