package dynamodb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
)

// MaxValuesPerUpdate bounds the values one UpdateItem adds to: each takes
// about 13 bytes of the update expression, which DynamoDB limits to 4 KB.
// An item whose batch holds more distinct values is updated in several
// calls, split between records; a single record with more is counted with
// its least frequent values under OtherValue.
const MaxValuesPerUpdate = 200

// maxAttempts bounds the conditional updates of one item per Write. Each
// failed condition means another writer of the same shard moved the
// watermark in between, which a single lease holder makes rare.
const maxAttempts = 10

// Errors returned by a writer.
var (
	// ErrContention is returned (wrapped) by Write when an item's
	// watermark kept moving under it for maxAttempts tries: two writers
	// of one shard at once. The processor retries it.
	ErrContention = errors.New("watermark kept moving")
)

// writer counts one shard's records, in windows: it holds what it is
// given until the window is due (FlushEvents events, or FlushInterval
// since its first record, or a Flush), then applies the whole window with
// one conditional UpdateItem per item. Counting a window rather than each
// batch is what keeps the write units per event low. As the Writer
// contract allows, it is not safe for concurrent use: the processor calls
// it from one goroutine at a time.
type writer struct {
	s     *Sink
	shard string // the live shard whose items are updated
	// letter is set for a writer that re-drives one dead letter: it
	// counts the letter's records only where the live writer recorded the
	// range as a hole (see the package documentation).
	letter *processor.LetterID

	pending       []processor.Record // the window, in sequence order
	pendingEvents int
	since         time.Time // when the window's first record came
	durable       string
	closed        bool
	x             *extractor
}

// item is one counter item: a dimension on a day (of the writer's shard).
type item struct {
	dim int // index into Sink.dims
	day string
}

// recCount is what one record adds to one item.
type recCount struct {
	seq    string // padded
	events int64
	values map[string]int64
}

// plan is what a window adds to one item, record by record in sequence
// order.
type plan struct {
	item item
	recs []recCount
}

// Write adds records to the window, and applies the window when it is
// due; records given to a replay writer wait for Flush. A nil error means
// the records are counted or held to be; on an error the records of this
// call are not held (the processor retries them), and the items the
// window had updated before the error keep them once, by their
// watermarks.
func (w *writer) Write(ctx context.Context, recs []processor.Record) error {
	if w.closed {
		return errors.New("dynamodb: write: writer closed")
	}
	n, added := len(w.pending), 0
	if n == 0 && len(recs) > 0 {
		w.since = time.Now()
	}
	for _, r := range recs {
		w.pending = append(w.pending, r)
		added += len(r.Events)
	}
	w.pendingEvents += added
	if w.letter != nil || !w.due() {
		return nil
	}
	if err := w.apply(ctx); err != nil {
		clear(w.pending[n:])
		w.pending = w.pending[:n]
		w.pendingEvents -= added
		return err
	}
	return nil
}

// due reports whether the window is to be applied now.
func (w *writer) due() bool {
	return len(w.pending) > 0 && (w.pendingEvents >= w.s.flushEvents || time.Since(w.since) >= w.s.flushInterval)
}

// Flush applies the window.
func (w *writer) Flush(ctx context.Context) error {
	if w.closed {
		return errors.New("dynamodb: flush: writer closed")
	}
	return w.apply(ctx)
}

// Durable returns the last sequence number of the last window applied.
func (w *writer) Durable() string { return w.durable }

// Close drops the window, uncounted.
func (w *writer) Close() error {
	w.closed = true
	clear(w.pending)
	w.pending = nil
	return nil
}

// apply counts the window: every item's plan, at most Parallelism items
// at a time. On success the window is durable and dropped.
func (w *writer) apply(ctx context.Context) error {
	if len(w.pending) == 0 {
		return nil
	}
	plans, events := w.plan(w.pending)
	do := w.applyItem
	if w.letter != nil {
		do = w.replayItem
	}
	if err := w.s.each(len(plans), func(i int) error { return do(ctx, plans[i]) }); err != nil {
		return err
	}
	w.s.nEvents.Add(events)
	w.durable = w.pending[len(w.pending)-1].SequenceNumber
	clear(w.pending)
	w.pending, w.pendingEvents = w.pending[:0], 0
	return nil
}

// counts reports whether e passes the sink's event filter.
func (s *Sink) counts(e *event.Event) bool {
	return e != nil && e.Type == event.Track && (s.events == nil || s.events[e.Name])
}

// plan sums recs per item, record by record. It returns the plans in a
// fixed order (dimension, then day) and the number of events counted.
func (w *writer) plan(recs []processor.Record) ([]*plan, int64) {
	if w.x == nil {
		w.x = newExtractor(w.s.dims)
	}
	byItem := map[item]*plan{}
	var events int64
	var vals []string
	for _, r := range recs {
		seq := processor.PadSeq(r.SequenceNumber)
		for _, e := range r.Events {
			if !w.s.counts(e) {
				continue
			}
			events++
			day := dayOf(e, r.ArrivalTime)
			w.x.reset()
			for i := range w.s.dims {
				k := item{i, day}
				p := byItem[k]
				if p == nil {
					p = &plan{item: k}
					byItem[k] = p
				}
				if n := len(p.recs); n == 0 || p.recs[n-1].seq != seq {
					p.recs = append(p.recs, recCount{seq: seq, values: map[string]int64{}})
				}
				rc := &p.recs[len(p.recs)-1]
				rc.events++
				vals = w.x.values(vals[:0], e, i)
				for _, v := range vals {
					rc.values[v]++
				}
			}
		}
	}
	plans := slices.Collect(maps.Values(byItem))
	slices.SortFunc(plans, func(a, b *plan) int {
		return cmp.Or(cmp.Compare(a.item.dim, b.item.dim), strings.Compare(a.item.day, b.item.day))
	})
	return plans, events
}

// each runs f(0) … f(n-1), at most Parallelism at a time, and joins their
// errors: permanent only if every failure is, since a transient one
// deserves the processor's retry, which also completes the permanent
// ones' siblings.
func (s *Sink) each(n int, f func(i int) error) error {
	work := make(chan int)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for range min(s.par, n) {
		wg.Go(func() {
			for i := range work {
				errs[i] = f(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	for _, e := range errs {
		if e != nil && !processor.IsPermanent(e) {
			return err
		}
	}
	return processor.Permanent(err)
}

// key is the primary key of the writer's item for it.
func (w *writer) key(it item) map[string]types.AttributeValue {
	return itemKeyAttrs(w.s.dims[it.dim].Name, it.day, w.shard)
}

func itemKeyAttrs(dim, day, shard string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: dim},
		attrSK: &types.AttributeValueMemberS{Value: itemKey(day, shard)},
	}
}

// applyItem applies one item's plan, in chunks of at most
// MaxValuesPerUpdate values, in sequence order.
func (w *writer) applyItem(ctx context.Context, p *plan) error {
	for _, chunk := range w.chunks(p) {
		if err := w.applyChunk(ctx, p.item, chunk); err != nil {
			return err
		}
	}
	return nil
}

// chunks splits the plan's records into runs whose union of values fits
// in one update, capping any single record that alone does not fit.
func (w *writer) chunks(p *plan) [][]recCount {
	var out [][]recCount
	union := map[string]bool{}
	start := 0
	for i := range p.recs {
		rc := &p.recs[i]
		if len(rc.values) > MaxValuesPerUpdate {
			w.s.log.Warn("record has too many distinct values for one update; counting the rarest as "+OtherValue,
				zap.String("dimension", w.s.dims[p.item.dim].Name), zap.String("day", p.item.day),
				zap.String("seq", strings.TrimLeft(rc.seq, "0")), zap.Int("values", len(rc.values)))
			rc.values = capValues(rc.values, MaxValuesPerUpdate)
		}
		added := 0
		for v := range rc.values {
			if !union[v] {
				added++
			}
		}
		if i > start && len(union)+added > MaxValuesPerUpdate {
			out = append(out, p.recs[start:i])
			start = i
			clear(union)
		}
		for v := range rc.values {
			union[v] = true
		}
	}
	if start < len(p.recs) {
		out = append(out, p.recs[start:])
	}
	return out
}

// capValues keeps the max-1 most frequent values (ties by value) and
// counts the rest as OtherValue. It depends only on the values, so a
// replay caps a record the same way.
func capValues(values map[string]int64, max int) map[string]int64 {
	keys := slices.Collect(maps.Keys(values))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(values[b], values[a]), strings.Compare(a, b))
	})
	out := make(map[string]int64, max)
	for i, k := range keys {
		if i < max-1 {
			out[k] += values[k]
		} else {
			out[OtherValue] += values[k]
		}
	}
	return out
}

// applyChunk applies one run of records to an item. It first assumes the
// item's watermark is below the run (the common case: no replay) and adds
// everything. If the condition fails, it reads the watermark and adds
// only the records above it, on condition that the watermark is still
// what it read, until that holds or nothing is left.
func (w *writer) applyChunk(ctx context.Context, it item, recs []recCount) error {
	key := w.key(it)
	cond := "attribute_not_exists(#wm) OR #wm < :first"
	condValues := map[string]types.AttributeValue{":first": &types.AttributeValueMemberS{Value: recs[0].seq}}
	todo := recs
	for attempt := 1; ; attempt++ {
		u := newUpdate(w.s.table, key)
		u.set("#wm", attrWatermark, todo[len(todo)-1].seq)
		u.add(todo)
		u.in.ConditionExpression = aws.String(cond)
		maps.Copy(u.in.ExpressionAttributeValues, condValues)
		err := w.s.update(ctx, u.build())
		if err == nil {
			return nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			return w.itemError("update", it, err)
		}
		w.s.nFailures.Add(1)
		if attempt == maxAttempts {
			return w.itemError("update", it, fmt.Errorf("%w after %d conditional updates", ErrContention, attempt))
		}
		got, err := w.s.read(ctx, key, attrWatermark)
		if err != nil {
			return w.itemError("read watermark of", it, err)
		}
		seen, ok := got[attrWatermark]
		todo = after(recs, seen)
		if len(todo) == 0 {
			return nil // applied before: a replay, or the SDK retried a call that had succeeded
		}
		cond, condValues = casWatermark(seen, ok)
	}
}

// casWatermark is the condition that the item's watermark is still seen
// (absent when !ok).
func casWatermark(seen string, ok bool) (string, map[string]types.AttributeValue) {
	if !ok {
		return "attribute_not_exists(#wm)", nil
	}
	return "#wm = :seen", map[string]types.AttributeValue{":seen": &types.AttributeValueMemberS{Value: seen}}
}

// after returns the records of recs above the padded sequence number seq.
func after(recs []recCount, seq string) []recCount {
	i := 0
	for i < len(recs) && recs[i].seq <= seq {
		i++
	}
	return recs[i:]
}

// replayItem counts a dead letter's records in one item, only if the live
// writer recorded the letter's range there as a hole, and only its
// records above the hole's value: those the item never counted. Each
// update moves the hole up to its last record, on condition that the hole
// is still what was read, and the last removes it; so the letter counts
// once, in any order with other letters, after any crash, and a letter
// whose records were counted live (no hole) adds nothing.
func (w *writer) replayItem(ctx context.Context, p *plan) error {
	key := w.key(p.item)
	hole := holePrefix + w.letter.Key()
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		got, err := w.s.read(ctx, key, hole)
		if err != nil {
			return w.itemError("read hole of", p.item, err)
		}
		from, ok := got[hole]
		if !ok {
			return nil // counted live, or replayed before
		}
		chunks := w.chunks(&plan{item: p.item, recs: after(p.recs, from)})
		if len(chunks) == 0 {
			chunks = [][]recCount{nil}
		}
		moved := true
		for i, chunk := range chunks {
			u := newUpdate(w.s.table, key)
			if i == len(chunks)-1 {
				u.remove("#h", hole)
			} else {
				u.set("#h", hole, chunk[len(chunk)-1].seq)
			}
			u.add(chunk)
			u.in.ConditionExpression = aws.String("#h = :from")
			u.in.ExpressionAttributeValues[":from"] = &types.AttributeValueMemberS{Value: from}
			err := w.s.update(ctx, u.build())
			var ccf *types.ConditionalCheckFailedException
			if errors.As(err, &ccf) {
				w.s.nFailures.Add(1)
				moved = false // another replay of the same letter: read again
				break
			}
			if err != nil {
				return w.itemError("replay into", p.item, err)
			}
			if len(chunk) > 0 {
				from = chunk[len(chunk)-1].seq
			}
		}
		if moved {
			return nil
		}
	}
	return w.itemError("replay into", p.item, fmt.Errorf("%w after %d conditional updates", ErrContention, maxAttempts))
}

// update is an UpdateItem being built.
type update struct {
	in                  *dynamodb.UpdateItemInput
	sets, adds, removes []string
}

func newUpdate(table string, key map[string]types.AttributeValue) *update {
	return &update{in: &dynamodb.UpdateItemInput{
		TableName:                 aws.String(table),
		Key:                       key,
		ExpressionAttributeNames:  map[string]string{},
		ExpressionAttributeValues: map[string]types.AttributeValue{},
	}}
}

// set sets attribute attr (placeholder ph) to the string v.
func (u *update) set(ph, attr, v string) {
	u.in.ExpressionAttributeNames[ph] = attr
	u.in.ExpressionAttributeValues[":"+ph[1:]] = &types.AttributeValueMemberS{Value: v}
	u.sets = append(u.sets, ph+" = :"+ph[1:])
}

// remove removes attribute attr (placeholder ph).
func (u *update) remove(ph, attr string) {
	u.in.ExpressionAttributeNames[ph] = attr
	u.removes = append(u.removes, ph)
}

// add adds recs' events and values to the item's counts.
func (u *update) add(recs []recCount) {
	if len(recs) == 0 {
		return
	}
	var events int64
	sums := map[string]int64{}
	for _, rc := range recs {
		events += rc.events
		for v, n := range rc.values {
			sums[v] += n
		}
	}
	u.in.ExpressionAttributeNames["#n"] = attrEvents
	u.in.ExpressionAttributeValues[":n"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(events, 10)}
	u.adds = append(u.adds, "#n :n")
	for i, v := range slices.Sorted(maps.Keys(sums)) {
		id := strconv.Itoa(i)
		u.in.ExpressionAttributeNames["#v"+id] = valuePrefix + v
		u.in.ExpressionAttributeValues[":v"+id] = &types.AttributeValueMemberN{Value: strconv.FormatInt(sums[v], 10)}
		u.adds = append(u.adds, "#v"+id+" :v"+id)
	}
}

// build returns the UpdateItem; the caller has set the condition.
func (u *update) build() *dynamodb.UpdateItemInput {
	var parts []string
	if len(u.sets) > 0 {
		parts = append(parts, "SET "+strings.Join(u.sets, ", "))
	}
	if len(u.adds) > 0 {
		parts = append(parts, "ADD "+strings.Join(u.adds, ", "))
	}
	if len(u.removes) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(u.removes, ", "))
	}
	u.in.UpdateExpression = aws.String(strings.Join(parts, " "))
	if len(u.in.ExpressionAttributeValues) == 0 {
		u.in.ExpressionAttributeValues = nil
	}
	return u.in
}

// update sends one UpdateItem, asking for the write units it consumed:
// the figure DynamoDB bills, which the sink sums in Stats.
func (s *Sink) update(ctx context.Context, in *dynamodb.UpdateItemInput) error {
	in.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
	s.nUpdates.Add(1)
	out, err := s.db.UpdateItem(ctx, in)
	if err != nil {
		return err
	}
	if cc := out.ConsumedCapacity; cc != nil && cc.CapacityUnits != nil {
		s.milliWCU.Add(int64(*cc.CapacityUnits * 1000))
	}
	return nil
}

// read reads string attributes of an item, consistently; absent ones (or
// a missing item) are left out of the map.
func (s *Sink) read(ctx context.Context, key map[string]types.AttributeValue, attrs ...string) (map[string]string, error) {
	names := map[string]string{}
	var proj []string
	for i, a := range attrs {
		ph := "#a" + strconv.Itoa(i)
		names[ph] = a
		proj = append(proj, ph)
	}
	s.nReads.Add(1)
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(s.table),
		Key:                      key,
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String(strings.Join(proj, ", ")),
		ExpressionAttributeNames: names,
	})
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, a := range attrs {
		if v, ok := out.Item[a].(*types.AttributeValueMemberS); ok {
			got[a] = v.Value
		}
	}
	return got, nil
}

// itemError wraps err with the item, marking as permanent what no retry
// can fix: a request DynamoDB rejects as invalid (an item over 400 KB).
func (w *writer) itemError(verb string, it item, err error) error {
	err = fmt.Errorf("dynamodb: %s counter %s/%s for %s: %w", verb, w.s.dims[it.dim].Name, it.day, w.shard, err)
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "ValidationException" {
		return processor.Permanent(err)
	}
	return err
}
