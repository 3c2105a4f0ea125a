//go:build integration

package checkpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"

	"github.com/buildtelemetry/pipeline/processor"
)

func balance(t *testing.T, cs ...*Checkpointer) {
	t.Helper()
	for _, c := range cs {
		if err := c.Balance(context.Background()); err != nil {
			t.Fatalf("%s: Balance: %v", c.cfg.WorkerID, err)
		}
	}
}

func refusedBecause(t *testing.T, c *Checkpointer, sh *par.ShardStatus, why string) {
	t.Helper()
	err := c.GetLease(sh, c.cfg.WorkerID)
	if !errors.As(err, &chk.ErrLeaseNotAcquired{}) || !strings.Contains(err.Error(), why) {
		t.Fatalf("%s: GetLease(%s) = %v, want ErrLeaseNotAcquired saying %q", c.cfg.WorkerID, sh.ID, err, why)
	}
}

// TestClaimAndHandoff: a joining worker claims half the shards of the
// one holding all; the holder's renewal sees each claim, its handoff
// releases the lease, and only the claimant can then take it.
func TestClaimAndHandoff(t *testing.T) {
	e := newEnv(t, 4)
	a, b, c := e.worker("a"), e.worker("b"), e.worker("c")
	var shards []*par.ShardStatus
	for _, id := range e.shardIDs() {
		sh := status(id, "")
		acquire(t, a, sh)
		shards = append(shards, sh)
	}
	balance(t, a, b, a) // a heartbeats; b sees a with 4, itself with 0: claims 2; a sees b
	claimed := map[string]bool{}
	for _, sh := range shards {
		r := e.row(sh.ID)
		if r.ClaimRequest == "b" {
			claimed[sh.ID] = true
			if !r.ClaimExpiry.After(e.clock.Now()) {
				t.Errorf("claim on %s expires at %v, not after now", sh.ID, r.ClaimExpiry)
			}
		}
	}
	if len(claimed) != 2 {
		t.Fatalf("b claimed %d shards, want 2 (half of 4)", len(claimed))
	}
	balance(t, b) // no claim twice
	n := 0
	for _, sh := range shards {
		if e.row(sh.ID).ClaimRequest == "b" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("after a second pass b has %d claims, want still 2", n)
	}

	for _, sh := range shards {
		if err := a.GetLease(sh, "a"); err != nil { // renewal
			t.Fatalf("renew %s: %v", sh.ID, err)
		}
		if got := a.HandoffRequested(sh.ID); got != claimed[sh.ID] {
			t.Errorf("HandoffRequested(%s) = %v, want %v", sh.ID, got, claimed[sh.ID])
		}
	}
	for _, sh := range shards {
		if !claimed[sh.ID] {
			continue
		}
		refusedBecause(t, b, sh, "held by a") // not before the handoff
		if err := a.Handoff(context.Background(), sh.ID); err != nil {
			t.Fatalf("Handoff(%s): %v", sh.ID, err)
		}
		if r := e.row(sh.ID); r.Owner != "" || r.ClaimRequest != "b" {
			t.Fatalf("after handoff: owner %q, claim %q; want none and b", r.Owner, r.ClaimRequest)
		}
		if err := a.GetLease(sh, "a"); !errors.As(err, &chk.ErrLeaseNotAcquired{}) {
			t.Fatalf("a's renewal after its handoff: %v, want ErrLeaseNotAcquired (the consumer must end)", err)
		}
		if err := a.SaveProgress(context.Background(), sh.ID, processor.Progress{Checkpoint: "9"}); !errors.Is(err, processor.ErrLeaseLost) {
			t.Fatalf("a's progress write after its handoff: %v, want ErrLeaseLost", err)
		}
		if err := a.RemoveLeaseOwner(sh.ID); err != nil { // the library, as the consumer exits
			t.Fatal(err)
		}
		refusedBecause(t, a, sh, "claimed by b")
		refusedBecause(t, c, sh, "claimed by b")
		acquire(t, b, sh)
		if r := e.row(sh.ID); r.Owner != "b" || r.ClaimRequest != "" {
			t.Fatalf("after b acquired: owner %q, claim %q; want b and none", r.Owner, r.ClaimRequest)
		}
	}
	balance(t, a, b)
	for _, sh := range shards {
		if r := e.row(sh.ID); r.ClaimRequest != "" {
			t.Errorf("balanced 2/2, yet %s is claimed by %s", sh.ID, r.ClaimRequest)
		}
	}
}

// TestClaimIsFenced: a claim names the holder's token; a claim written
// from a stale view of the lease fails, and so does a second claim.
func TestClaimIsFenced(t *testing.T) {
	e := newEnv(t, 1)
	id := e.shardIDs()[0]
	a, b, c := e.worker("a"), e.worker("b"), e.worker("c")
	acquire(t, a, status(id, ""))
	ctx := context.Background()
	now := e.clock.Now()
	if err := b.claim(ctx, id, "a", "not-the-token", "b", now); !errors.As(err, &chk.ErrLeaseNotAcquired{}) {
		t.Fatalf("claim with a stale token: %v, want ErrLeaseNotAcquired", err)
	}
	tok := e.row(id).Token
	if err := b.claim(ctx, id, "a", tok, "b", now); err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := c.claim(ctx, id, "a", tok, "c", now); !errors.As(err, &chk.ErrLeaseNotAcquired{}) {
		t.Fatalf("second claim: %v, want ErrLeaseNotAcquired", err)
	}
	// Once the first claim expired, a new one may be written.
	e.clock.Advance(testLease / 2)
	if err := a.GetLease(status(id, ""), "a"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testLease/2 + 2*time.Millisecond) // expiries have millisecond precision
	if err := c.claim(ctx, id, "a", tok, "c", e.clock.Now()); err != nil {
		t.Fatalf("claim after the first expired: %v", err)
	}
}

// TestDeadClaimantIsIgnored: a claimant whose heartbeat is gone does not
// hold the shard: the holder stops handing it over and may take it back
// after a handoff.
func TestDeadClaimantIsIgnored(t *testing.T) {
	e := newEnv(t, 2)
	a, b := e.worker("a"), e.worker("b")
	ids := e.shardIDs()
	sh := []*par.ShardStatus{status(ids[0], ""), status(ids[1], "")}
	acquire(t, a, sh[0])
	acquire(t, a, sh[1])
	balance(t, a, b)
	var victim *par.ShardStatus
	for _, s := range sh {
		if e.row(s.ID).ClaimRequest == "b" {
			victim = s
		}
	}
	if victim == nil {
		t.Fatal("b claimed nothing")
	}
	balance(t, a) // a's view now has b
	if err := a.GetLease(victim, "a"); err != nil {
		t.Fatal(err)
	}
	if !a.HandoffRequested(victim.ID) {
		t.Fatal("handoff not requested")
	}
	if err := a.Handoff(context.Background(), victim.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveLeaseOwner(victim.ID); err != nil {
		t.Fatal(err)
	}
	// b dies: its heartbeat goes (here: it deregisters; a killed worker's
	// expires after WorkerTTL).
	if err := b.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	balance(t, a)
	acquire(t, a, victim) // the claim of a worker that is gone is void
}

// TestShareLimitsAcquisition: with two live workers and four shards,
// neither acquires a third free shard.
func TestShareLimitsAcquisition(t *testing.T) {
	e := newEnv(t, 4)
	a, b := e.worker("a"), e.worker("b")
	balance(t, a, b, a)
	ids := e.shardIDs()
	acquire(t, a, status(ids[0], ""))
	acquire(t, a, status(ids[1], ""))
	refusedBecause(t, a, status(ids[2], ""), "its share of 4 shards over 2 workers")
	acquire(t, b, status(ids[2], ""))
	acquire(t, b, status(ids[3], ""))
	if err := a.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	if why := a.admit(false); !strings.Contains(why, "shutting down") {
		t.Errorf("after Deregister: admit says %q, want shutting down", why)
	}
}

// TestListActiveWorkersAndClaimShard: the library's stealing API, for
// completeness: live workers with no lease are listed, an unowned shard
// does not abort the listing, and ClaimShard writes a fenced claim.
func TestListActiveWorkersAndClaimShard(t *testing.T) {
	e := newEnv(t, 3)
	a, b := e.worker("a"), e.worker("b")
	ids := e.shardIDs()
	statuses := map[string]*par.ShardStatus{}
	for _, id := range ids {
		statuses[id] = status(id, "")
	}
	acquire(t, a, statuses[ids[0]])
	acquire(t, a, statuses[ids[1]]) // ids[2] stays unowned
	balance(t, a, b)
	workers, err := a.ListActiveWorkers(statuses)
	if err != nil {
		t.Fatalf("ListActiveWorkers with an unowned shard: %v", err)
	}
	if len(workers["a"]) != 2 || workers["a"][0] != statuses[workers["a"][0].ID] {
		t.Errorf("a's shards: %v, want the caller's two ShardStatus values", workers["a"])
	}
	if got, ok := workers["b"]; !ok || len(got) != 0 {
		t.Errorf("b listed as %v, %v; want present with no shards", got, ok)
	}
	if err := b.ClaimShard(statuses[ids[2]], "b"); !errors.As(err, &chk.ErrLeaseNotAcquired{}) {
		t.Errorf("ClaimShard of an unowned shard: %v, want ErrLeaseNotAcquired", err)
	}
	if err := b.ClaimShard(statuses[ids[0]], "b"); err != nil {
		t.Fatalf("ClaimShard: %v", err)
	}
	if got := e.row(ids[0]).ClaimRequest; got != "b" || statuses[ids[0]].ClaimRequest != "b" {
		t.Errorf("claim in row %q and status %q, want b", got, statuses[ids[0]].ClaimRequest)
	}
	if err := a.FetchCheckpoint(statuses[ids[0]]); err != nil || statuses[ids[0]].ClaimRequest != "b" {
		t.Errorf("FetchCheckpoint loads ClaimRequest %q (%v), want b", statuses[ids[0]].ClaimRequest, err)
	}
}
