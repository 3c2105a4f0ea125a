// Package dynamodb is a sink that counts build telemetry in DynamoDB: for
// each configured dimension (build version, Node version, OS, framework,
// build status, plugin name@version, or any property path), the events of
// each UTC day that carried each value. Counts are exact under the
// worker's at-least-once delivery (replays after a crash or a lease
// handover, with any batch boundaries, and SDK retries) without
// transactions, which the local emulator (dynalite) does not have
// (sinks.md §2.5). Package counts reads them back as a report.
//
// # Items
//
// One item per dimension and day, in a table with hash key pk (S) and
// range key sk (S), created PAY_PER_REQUEST if missing:
//
//	pk        "buildVersion"                 the dimension's name
//	sk        "day#2026-11-27"               the UTC day
//	n         1234 (N)                       events counted that day
//	v#29.58.2 412 (N)                        events with that value, one attribute per value
//	wm#<shardId> "000…0049590…" (S)          the shard's watermark: processor.PadSeq of the
//	                                         last record of that shard counted in this item
//
// n counts every event that passed the filter (Config.Events), with or
// without the property, so that a share is a share of builds: for the
// plugin dimension, of builds using the plugin. There is no all-time item:
// one would gain an attribute for every value ever seen and head for
// DynamoDB's 400 KB item limit; the total is the sum of the days, which
// ReadCounts returns in one Query of the dimension's partition.
//
// Grouping a dimension's values per day in one item is what keeps writes
// low: a batch costs one UpdateItem per dimension and day it touches (six
// dimensions, usually one or two days), not one per value: about 24 calls
// per 1,000 Netlify-shaped events in batches of 500, against about 250 for
// an item per value. The price is item size, which DynamoDB bills per KB
// written: an item holds the day's distinct values (tens for versions, a
// few hundred for plugins) and about 140 bytes of watermark per shard that
// wrote it that day.
//
// # Days
//
// An event counts on the UTC day of its own timestamp, when the build ran,
// not on its arrival: adoption per day means builds per day, and the event
// time is in the record, so a replay counts it on the same day. A
// timestamp after receivedAt or more than MaxEventSkew before it is a
// wrong client clock; receivedAt decides then (see dayOf).
//
// # Exactly once without transactions
//
// A Write sums its records per item in memory, record by record (the
// events of a Kinesis record share its sequence number, so records are
// applied whole), then sends one UpdateItem per item, several at once:
//
//	SET wm#S = :last  ADD n :n, v#a :a, v#b :b …
//	IF attribute_not_exists(wm#S) OR wm#S < :first
//
// where :first and :last are the padded sequence numbers of the batch's
// first and last records with events for the item. The invariant, per item
// and shard S: the item counts exactly the events of S's records with
// sequence numbers up to wm#S. Watermarks only grow, and each update moves
// the watermark and the counts in one atomic item write, so the invariant
// holds after every call:
//
//   - If the condition holds, no record of this run was counted, and the
//     records of S between the watermark and :first hold no event for the
//     item (they came earlier in this writer's own stream, whose updates
//     succeeded, or at or below where the writer started: the processor
//     starts a writer at or below the sink's durable watermark, up to
//     which every item was updated). Adding the whole run is exact.
//   - If it fails, this item already counted some of the run: a replay
//     from a checkpoint, a Write retried after a partial failure, an SDK
//     retry of a call that had succeeded, or a zombie writer of the same
//     shard. The writer reads wm#S (GetItem, consistent) and adds only the
//     records above it, on condition wm#S = the value read: a
//     compare-and-set that fails only if another writer of the shard moved
//     it meanwhile, and is then read and tried again (at most 10 times,
//     then ErrContention, which the processor retries). Nothing above the
//     watermark means the run was counted: no write.
//
// A batch replayed with other boundaries than the partially applied one
// therefore counts each record once per item: the items that were updated
// skip what is at or below their watermark, the others take it all.
// Durable reports a batch only once every item is updated, so the
// checkpoint never passes an uncounted record. Each shard has its own
// watermark attribute, so shards interleave freely on the same items.
//
// Limits. An update takes at most MaxValuesPerUpdate values (DynamoDB's
// 4 KB expression limit); more in one batch split into several updates
// between records, and a single record with more counts its rarest under
// OtherValue. Records the processor parks are skipped by the live writer
// (its watermark moves past them). `worker replay` re-drives them through
// a writer of shard "replay-<shard>", whose watermark is separate: a letter
// counts once if the shard's letters are replayed in sequence order (a
// letter at or below the replay watermark counts as done), but the items a
// batch had updated before it was parked count its records again.
package dynamodb
