// Package checkpoint is the worker's lease table: an implementation of
// vmware-go-kcl-v2's checkpoint.Checkpointer over DynamoDB, and of
// processor.ProgressStore on the same rows.
//
// The library's own DynamoCheckpoint cannot be used: its checkpoints are
// unconditional PutItems, it never loads claims, and its scans are single
// eventually consistent pages. Each difference below fixes one of its
// defects:
//
//   - Fenced writes. Every write of a lease holder
//     (renewal, CheckpointSequence, SaveProgress, SaveSinkState) is an
//     UpdateItem conditioned on AssignedTo = this worker AND LeaseToken = the
//     token this Checkpointer got when it acquired the lease. A worker that
//     lost its lease, even to a restarted instance with the same WorkerID,
//     can no longer move the checkpoint or the sink watermarks: its write
//     fails with an error wrapping processor.ErrLeaseLost and changes
//     nothing.
//   - No silent re-acquisition. The library uses GetLease both to acquire
//     and to renew. Once a renewal or fenced write finds the lease lost,
//     GetLease keeps refusing the shard until the consumer exits and
//     RemoveLeaseOwner runs, so a consumer that missed another worker's
//     progress cannot carry on under a fresh lease (the library
//     never tells the processor it lost the lease).
//   - Counter-fenced acquisition (KCL 2.x's lease counter). Every
//     acquisition and renewal increments LeaseCounter; an acquisition is
//     conditioned on the counter it observed, so of two workers racing for
//     an expired lease exactly one wins, and a renewal landing between the
//     other's read and write makes that write fail.
//   - UpdateItem, never a full-item PutItem, so attributes the library does not know (SinkWatermarks,
//     SinkState, ClaimRequest) survive renewals and checkpoints.
//   - Parent-before-child. The library lets a child start
//     as soon as its parent's lease row has no checkpoint, and ignores the
//     second parent of a merge. GetLease refuses to acquire a shard while
//     any of its parents (ParentShardId and AdjacentParentShardId, from
//     ListShards) is still listed in the stream and not checkpointed at
//     SHARD_END, whether that parent was never leased, is leased, or was
//     leased and never checkpointed. The library's waitOnParentShard then
//     finds the parent finished at once. A lease row left behind by a parent
//     that has aged out of the stream without reaching SHARD_END is deleted,
//     because waitOnParentShard would otherwise poll it forever.
//   - FetchCheckpoint returns nil with an empty Checkpoint for a row that
//     exists without one, instead of ErrSequenceIDNotFound, which the
//     library takes for "parent deleted". It also loads ClaimRequest, and
//     reports AssignedTo as "" for a row naming our WorkerID that this
//     process does not hold (left by an earlier process with the same ID):
//     the library skips shards it thinks it owns, so one failed GetLease
//     would otherwise strand the shard.
//   - Consistent reads everywhere, and a paginated consistent Scan in
//     Leases.
//   - Init creates the table PAY_PER_REQUEST, waits until it is ACTIVE,
//     treats a concurrent CreateTable as success (DynamoDB and the
//     emulator answer it with ResourceInUseException) and only treats
//     ResourceNotFoundException as "missing".
//   - RemoveLeaseOwner also clears the token and sets LeaseTimeout to now,
//     so after a graceful stop another worker takes the shard on its next
//     tick instead of waiting for the lease to expire.
//
// Balancing. The library's lease stealing stays off; Run balances instead
// (see balance.go): heartbeat rows, a fair share that GetLease respects,
// and fenced claims that the holder's processor answers with a graceful
// handoff (Handoff). ListActiveWorkers and ClaimShard work too, for a
// worker that turns the library's stealing on.
//
// # Row schema
//
// One item per shard in the table named by Config.Table, hash key ShardID
// (S), and one per live worker (ShardID "worker/<id>", EntityType
// "worker", HeartbeatExpiry N ms since the epoch, LeasesHeld N). The first five attributes are the library's; the rest are ours.
//
//	ShardID        S  shard ID (hash key)
//	AssignedTo     S  worker ID of the lease holder; absent when released
//	LeaseTimeout   S  RFC3339Nano UTC: the holder's clock + LeaseDuration
//	Checkpoint     S  last checkpointed sequence number, or SHARD_END
//	ParentShardId  S  the shard's parent, as the library knows it
//	ClaimRequest   S  worker that claimed the shard for a handoff
//	ClaimExpiry    N  ms since the epoch: the claim is void after it
//	LeaseCounter   N  incremented by every acquisition and renewal
//	LeaseToken     S  random per acquisition; absent when released
//	SinkWatermarks M  of S: processor.SinkProgress.Watermark by sink name
//	SinkState      M  of B: processor.SinkProgress.State by sink name
//
// SinkWatermarks and SinkState are created as empty maps at acquisition
// (if they do not exist yet), so later writes can SET one sink's entry by
// its nested path without reading the row first.
//
// # Configuring the KCL worker
//
// Config.LeaseDuration must equal the library's FailoverTimeMillis
// (KinesisClientLibConfiguration.WithFailoverTimeMillis); both default to
// 10 s. The library renews every LeaseRefreshWaitTime (2.5 s by default),
// which must stay well below it. Lease expiry compares the holder's
// wall clock (written into LeaseTimeout) with the reader's, so hosts need
// synchronised clocks (NTP); skew shortens or lengthens failover by the
// skew, it does not break fencing, which rests on the token and counter.
//
// Use one Checkpointer per worker, shared by the KCL worker
// (WithCheckpointer) and the record processors (as their
// processor.ProgressStore): the lease tokens that fence the processors'
// writes live in it. The worker must also read children from TRIM_HORIZON
// (WithInitialPositionInStream), as the start position of a shard with no
// checkpoint comes from the library's configuration, not from here.
package checkpoint
