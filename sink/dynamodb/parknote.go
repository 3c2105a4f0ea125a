package dynamodb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/buildtelemetry/pipeline/processor"
)

var _ processor.ParkNoter = (*Sink)(nil)

// ParkNote returns the note of a range the processor parked for this
// sink: the items its records would have updated, and the range's
// identity. Recording it marks, in each such item, the range as a hole
// that a replay of its letter fills.
func (s *Sink) ParkNote(shard string, id processor.LetterID, recs []processor.Record) processor.ParkNote {
	seen := map[item]bool{}
	for _, r := range recs {
		for _, e := range r.Events {
			if s.counts(e) {
				day := dayOf(e, r.ArrivalTime)
				for i := range s.dims {
					seen[item{i, day}] = true
				}
			}
		}
	}
	items := make([]item, 0, len(seen))
	for it := range seen {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.dim, b.dim), strings.Compare(a.day, b.day))
	})
	return &parkNote{s: s, shard: shard, id: id, items: items}
}

// parkNote is a parked range to record as a hole in its items.
type parkNote struct {
	s     *Sink
	shard string
	id    processor.LetterID
	items []item
}

// Record records the hole in every item. In each, on condition that the
// watermark is what it read, it sets the hole to the watermark (what the
// item counted of the shard so far, or noneCounted) and moves the
// watermark to the range's last record, so that the live writer never
// counts the range and a replay of its letter counts exactly the part
// above the hole. An item whose watermark is already at or past the range
// counted it all (the records were delivered live after a crash, or a
// window that had updated it was parked whole): no hole. An item that
// holds the hole already was recorded before.
func (n *parkNote) Record(ctx context.Context) error {
	last := processor.PadSeq(n.id.LastSeq)
	hole := holePrefix + n.id.Key()
	return n.s.each(len(n.items), func(i int) error {
		it := n.items[i]
		key := itemKeyAttrs(n.s.dims[it.dim].Name, it.day, n.shard)
		for range maxAttempts {
			got, err := n.s.read(ctx, key, attrWatermark, hole)
			if err != nil {
				return n.err(it, err)
			}
			seen, ok := got[attrWatermark]
			if _, noted := got[hole]; noted || (ok && seen >= last) {
				return nil
			}
			from := noneCounted
			if ok {
				from = seen
			}
			u := newUpdate(n.s.table, key)
			u.set("#wm", attrWatermark, last)
			u.set("#h", hole, from)
			cond, vals := casWatermark(seen, ok)
			u.in.ConditionExpression = aws.String(cond)
			for k, v := range vals {
				u.in.ExpressionAttributeValues[k] = v
			}
			err = n.s.update(ctx, u.build())
			var ccf *types.ConditionalCheckFailedException
			if errors.As(err, &ccf) {
				n.s.nFailures.Add(1)
				continue
			}
			if err != nil {
				return n.err(it, err)
			}
			n.s.nHoles.Add(1)
			return nil
		}
		return n.err(it, ErrContention)
	})
}

func (n *parkNote) err(it item, err error) error {
	return fmt.Errorf("dynamodb: record parked range %s..%s in counter %s/%s for %s: %w",
		n.id.FirstSeq, n.id.LastSeq, n.s.dims[it.dim].Name, it.day, n.shard, err)
}
