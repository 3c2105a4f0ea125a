package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/buildtelemetry/pipeline/processor"
)

// LoadProgress returns shardID's checkpoint and per-sink progress, read
// consistently. A shard with no row has an empty Progress. It implements
// processor.ProgressStore.
func (c *Checkpointer) LoadProgress(ctx context.Context, shardID string) (processor.Progress, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	r, found, err := c.getRowCtx(ctx, shardID)
	if err != nil || !found {
		return processor.Progress{}, err
	}
	p := processor.Progress{Checkpoint: r.Checkpoint}
	if len(r.Watermarks)+len(r.State) > 0 {
		p.Sinks = make(map[string]processor.SinkProgress)
	}
	for sink, w := range r.Watermarks {
		sp := p.Sinks[sink]
		sp.Watermark = w
		p.Sinks[sink] = sp
	}
	for sink, st := range r.State {
		sp := p.Sinks[sink]
		sp.State = st
		p.Sinks[sink] = sp
	}
	return p, nil
}

// SaveProgress writes, in one UpdateItem fenced by the lease, p.Checkpoint
// (unless empty), the watermark of every sink in p (unless empty) and the
// state of every sink whose State is non-nil (an empty non-nil State
// removes the sink's state). Entries of sinks not in p are kept. It
// implements processor.ProgressStore: once this worker no longer holds the
// lease it returns an error wrapping processor.ErrLeaseLost and changes
// nothing.
//
// Each sink's entry is SET by its nested path (SinkWatermarks.#sink), so
// there is no read-modify-write and no other sink's entry can be lost;
// the parent maps exist because acquisition creates them.
func (c *Checkpointer) SaveProgress(ctx context.Context, shardID string, p processor.Progress) error {
	u, err := progressUpdate(p)
	if err != nil {
		return fmt.Errorf("checkpoint: save progress of shard %s: %w", shardID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return c.fencedUpdate(ctx, shardID, "save progress", u)
}

// SaveSinkState writes one sink's state (an empty state removes it),
// fenced by the lease like SaveProgress. It implements
// processor.ProgressStore.
func (c *Checkpointer) SaveSinkState(ctx context.Context, shardID, sink string, state []byte) error {
	if sink == "" {
		return fmt.Errorf("checkpoint: save state of shard %s: empty sink name", shardID)
	}
	u := newUpdate()
	setSinkState(u, "s0", sink, state)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return c.fencedUpdate(ctx, shardID, "save state of sink "+strconv.Quote(sink), u)
}

// progressUpdate returns the update for SaveProgress, without the fence.
// Sinks are visited in name order so the expression is deterministic.
func progressUpdate(p processor.Progress) (*update, error) {
	u := newUpdate()
	if p.Checkpoint != "" {
		u.set = append(u.set, u.name("cp", attrCheckpoint)+" = "+u.value("cp", sAttr(p.Checkpoint)))
	}
	names := make([]string, 0, len(p.Sinks))
	for name := range p.Sinks {
		if name == "" {
			return nil, errors.New("empty sink name")
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		sp := p.Sinks[name]
		ph := "s" + strconv.Itoa(i)
		if sp.Watermark != "" {
			u.set = append(u.set, u.name("wm", attrSinkWatermarks)+"."+u.name(ph, name)+" = "+u.value("w"+strconv.Itoa(i), sAttr(sp.Watermark)))
		}
		if sp.State != nil {
			setSinkState(u, ph, name, sp.State)
		}
	}
	if len(u.set) == 0 && len(u.remove) == 0 {
		// Nothing to write: rewrite the token with itself, so the call
		// still reports a lost lease.
		u.set = append(u.set, u.name("token", attrToken)+" = :tok")
	}
	return u, nil
}

// setSinkState adds the SET (or, for an empty state, REMOVE) of one sink's
// state to u; ph is the placeholder for the sink's name.
func setSinkState(u *update, ph, sink string, state []byte) {
	path := u.name("st", attrSinkState) + "." + u.name(ph, sink)
	if len(state) == 0 {
		// Nothing to keep; removing also avoids storing an empty binary,
		// which older DynamoDB versions and emulators reject.
		u.remove = append(u.remove, path)
		return
	}
	u.set = append(u.set, path+" = "+u.value("b"+ph, &types.AttributeValueMemberB{Value: state}))
}
