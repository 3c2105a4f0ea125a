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

// writer counts one shard's records. As the Writer contract allows, it is
// not safe for concurrent use: the processor calls it from one goroutine
// at a time.
type writer struct {
	s       *Sink
	shard   string
	wmAttr  string
	durable string
	closed  bool
	x       *extractor
}

// item is one counter item: a dimension on a day.
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

// plan is what a batch adds to one item, record by record in sequence
// order.
type plan struct {
	item item
	recs []recCount
}

// Write counts the records' events: it sums them per item in memory and
// applies each item's sums with one conditional UpdateItem (see the
// package documentation), several items at once. It returns once every
// item is updated, so the records are durable when it returns nil. On an
// error some items may be updated and others not; the processor's retry
// (or a replay from the checkpoint, with any batch boundaries) completes
// the others without counting anything twice.
func (w *writer) Write(ctx context.Context, recs []processor.Record) error {
	if w.closed {
		return errors.New("dynamodb: write: writer closed")
	}
	if len(recs) == 0 {
		return nil
	}
	plans, events := w.plan(recs)
	if err := w.apply(ctx, plans); err != nil {
		return err
	}
	w.s.nEvents.Add(events)
	w.durable = recs[len(recs)-1].SequenceNumber
	return nil
}

// Flush does nothing: Write applies everything before it returns.
func (w *writer) Flush(context.Context) error {
	if w.closed {
		return errors.New("dynamodb: flush: writer closed")
	}
	return nil
}

// Durable returns the last sequence number of the last successful Write.
func (w *writer) Durable() string { return w.durable }

// Close marks the writer closed; it holds nothing to drop.
func (w *writer) Close() error {
	w.closed = true
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

// apply updates every planned item, at most Parallelism at a time, and
// returns the errors of those that failed.
func (w *writer) apply(ctx context.Context, plans []*plan) error {
	work := make(chan int)
	errs := make([]error, len(plans))
	var wg sync.WaitGroup
	for range min(w.s.par, len(plans)) {
		wg.Go(func() {
			for i := range work {
				errs[i] = w.applyItem(ctx, plans[i])
			}
		})
	}
	for i := range plans {
		work <- i
	}
	close(work)
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	// Permanent only if every failure is: a transient one deserves the
	// processor's retry, which also completes the permanent ones' siblings.
	for _, e := range errs {
		if e != nil && !processor.IsPermanent(e) {
			return err
		}
	}
	return processor.Permanent(err)
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
	return append(out, p.recs[start:])
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
// item's watermark for this shard is below the run (the common case: no
// replay) and adds everything. If the condition fails, it reads the
// watermark and adds only the records above it, on condition that the
// watermark is still what it read, until that holds or nothing is left.
func (w *writer) applyChunk(ctx context.Context, it item, recs []recCount) error {
	key := map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: w.s.dims[it.dim].Name},
		attrSK: &types.AttributeValueMemberS{Value: dayKey(it.day)},
	}
	cond := "attribute_not_exists(#wm) OR #wm < :first"
	condValues := map[string]types.AttributeValue{":first": &types.AttributeValueMemberS{Value: recs[0].seq}}
	todo := recs
	for attempt := 1; ; attempt++ {
		in := w.update(key, todo)
		in.ConditionExpression = aws.String(cond)
		maps.Copy(in.ExpressionAttributeValues, condValues)
		w.s.nUpdates.Add(1)
		_, err := w.s.db.UpdateItem(ctx, in)
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
		seen, ok, err := w.watermark(ctx, key)
		if err != nil {
			return w.itemError("read watermark of", it, err)
		}
		todo = recs
		if ok {
			i := 0
			for i < len(todo) && todo[i].seq <= seen {
				i++
			}
			todo = todo[i:]
		}
		if len(todo) == 0 {
			return nil // applied before: a replay, or the SDK retried a call that had succeeded
		}
		if ok {
			cond = "#wm = :seen"
			condValues = map[string]types.AttributeValue{":seen": &types.AttributeValueMemberS{Value: seen}}
		} else {
			cond = "attribute_not_exists(#wm)"
			condValues = nil
		}
	}
}

// update builds the UpdateItem that adds recs to the item and moves the
// shard's watermark to the last of them; the caller sets the condition.
func (w *writer) update(key map[string]types.AttributeValue, recs []recCount) *dynamodb.UpdateItemInput {
	var events int64
	sums := map[string]int64{}
	for _, rc := range recs {
		events += rc.events
		for v, n := range rc.values {
			sums[v] += n
		}
	}
	names := map[string]string{"#wm": w.wmAttr, "#n": attrEvents}
	values := map[string]types.AttributeValue{
		":wm": &types.AttributeValueMemberS{Value: recs[len(recs)-1].seq},
		":n":  &types.AttributeValueMemberN{Value: strconv.FormatInt(events, 10)},
	}
	var expr strings.Builder
	expr.WriteString("SET #wm = :wm ADD #n :n")
	for i, v := range slices.Sorted(maps.Keys(sums)) {
		id := strconv.Itoa(i)
		names["#v"+id] = valuePrefix + v
		values[":v"+id] = &types.AttributeValueMemberN{Value: strconv.FormatInt(sums[v], 10)}
		expr.WriteString(", #v" + id + " :v" + id)
	}
	return &dynamodb.UpdateItemInput{
		TableName:                 aws.String(w.s.table),
		Key:                       key,
		UpdateExpression:          aws.String(expr.String()),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	}
}

// watermark reads the shard's watermark in the item, consistently: ok is
// false when the item or the attribute does not exist.
func (w *writer) watermark(ctx context.Context, key map[string]types.AttributeValue) (string, bool, error) {
	w.s.nReads.Add(1)
	out, err := w.s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(w.s.table),
		Key:                      key,
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#wm"),
		ExpressionAttributeNames: map[string]string{"#wm": w.wmAttr},
	})
	if err != nil {
		return "", false, err
	}
	v, ok := out.Item[w.wmAttr].(*types.AttributeValueMemberS)
	if !ok {
		return "", false, nil
	}
	return v.Value, true, nil
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
