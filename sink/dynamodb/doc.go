// Package dynamodb is a sink that counts build telemetry in DynamoDB: for
// each configured dimension (build version, Node version, OS, framework,
// build status, plugin name@version, or any property path), the events of
// each UTC day that carried each value. Counts are exact under the
// worker's at-least-once delivery (replays after a crash or a lease
// handover, with any batch boundaries, and SDK retries) without
// transactions, which the local emulator (dynalite) does not have, and
// re-driven dead letters count once each. Package counts reads them back
// as a report.
//
// # Items
//
// One item per dimension, UTC day and shard, in a table with hash key pk
// (S) and range key sk (S), created PAY_PER_REQUEST if missing:
//
//	pk        "buildVersion"                         the dimension's name
//	sk        "day#2026-11-27#shardId-000000000003"  the UTC day and the shard
//	n         1234 (N)                               events counted
//	v#29.58.2 412 (N)                                events with that value, one attribute per value
//	wm        "000…0049590…" (S)                     processor.PadSeq of the shard's last record counted here
//	h#<key>   "000…0049590…" (S)                     a parked range not re-driven yet (below)
//
// n counts every event that passed the filter (Config.Events), with or
// without the property, so that a share is a share of builds: for the
// plugin dimension, of builds using the plugin. A day's total is the sum
// of its shards' items, and there is no all-time item (it would gain an
// attribute for every value ever seen and head for DynamoDB's 400 KB
// limit): ReadCounts sums them from one Query of the dimension's
// partition, whose sort keys keep a day's items together.
//
// An item per shard is what keeps the cost flat: each item has one
// writer, hence one watermark, so its size (which DynamoDB bills per KB
// written) does not grow with the shard count, as it did when a day's
// single item carried a watermark per shard.
//
// # Windows
//
// A writer sums its shard's records in memory over a window of
// Config.FlushEvents events or Config.FlushInterval, or until the
// processor flushes, and then updates each item the window touches once:
// a window costs about one write unit per item (six dimensions, a day or
// two) however many events it holds. Durable moves when the whole window
// is counted; the processor holds the records (and the checkpoint) until
// then.
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
// The local emulator (dynalite) has no transactions, so every rule below
// is one conditional write to one item. The invariant, per item: it counts
// exactly the events of its shard's records at or below wm, except those
// of the parked ranges it holds as holes, each counted only up to the
// hole's value.
//
// Live. A window's update of an item is
//
//	SET wm = :last  ADD n :n, v#a :a, v#b :b …
//	IF attribute_not_exists(wm) OR wm < :first
//
// with :first and :last the window's first and last records with events
// for the item. If the condition fails, the item counted some of the
// window already (a replay from a checkpoint, a Write retried after a
// partial failure, an SDK retry of a call that had succeeded, a zombie
// writer): the writer reads wm (GetItem, consistent) and adds only the
// records above it, on condition wm = the value read, reading again if
// another writer of the shard moved it meanwhile (at most 10 times, then
// ErrContention, which the processor retries). A window replayed with
// other boundaries than a partly applied one therefore counts each record
// once per item.
//
// Parked. When the processor parks records for this sink it calls
// ParkNote, and records the note before giving the sink anything newer
// (see processor.ParkNoter). Recording it sets, in every item the records
// would have updated, h#<key> to the item's wm (noneCounted if none) and
// wm to the range's last record, on condition wm is what was read. The
// live writer then never counts the range; an item whose wm is already at
// or past the range counted all of it and gets no hole. Until the note is
// recorded the processor keeps the sink's saved watermark below the range,
// so a crash then delivers the range live again, and its letter, having no
// hole, adds nothing.
//
// Re-driven. A writer opened with processor.Shard.Letter (a replay or an
// automatic re-drive) reads each item's hole for the letter and adds the
// letter's records above the hole's value, removing the hole in the same
// update, on condition the hole is unchanged (moving it up between chunks
// when an item takes several updates). A letter re-driven again, or one
// whose records were counted live, finds no hole and adds nothing; letters
// re-driven in any order count once each.
//
// Limits. An update takes at most MaxValuesPerUpdate values (DynamoDB's
// 4 KB expression limit); more in one window split into several updates
// between records, and a single record with more counts its rarest under
// OtherValue.
package dynamodb
