//go:build integration

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// producer writes events to the stream in the background, 10 per
// record, until stopped, and remembers every messageId written.
type producer struct {
	e    *env
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	ids  []string
	err  error
}

func (e *env) produce(prefix string, every time.Duration, perTick int) *producer {
	p := &producer{e: e, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for tick := 0; ; tick++ {
			select {
			case <-p.stop:
				return
			case <-time.After(every):
			}
			ids, err := e.putEvents(fmt.Sprintf("%s-%d", prefix, tick), perTick)
			p.mu.Lock()
			p.ids = append(p.ids, ids...)
			if err != nil && p.err == nil {
				p.err = err
			}
			p.mu.Unlock()
		}
	}()
	e.t.Cleanup(func() { p.halt() })
	return p
}

// halt stops the producer and returns every messageId it wrote.
func (p *producer) halt() []string {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		p.e.t.Errorf("producer: %v", p.err)
	}
	return append([]string(nil), p.ids...)
}

// putEvents is put for a goroutine: it returns its error.
func (e *env) putEvents(prefix string, n int) ([]string, error) {
	var ids []string
	var entries []types.PutRecordsRequestEntry
	for i := 0; i < n; i += 10 {
		var evs [][]byte
		for j := i; j < i+10 && j < n; j++ {
			id := fmt.Sprintf("%s-%d", prefix, j)
			ids = append(ids, id)
			evs = append(evs, fmt.Appendf(nil, `{"messageId":%q,"type":"track","event":"build","userId":"u","timestamp":"2026-11-27T12:00:00.000Z","receivedAt":"2026-11-27T12:00:00.000Z"}`, id))
		}
		entries = append(entries, types.PutRecordsRequestEntry{Data: e.enc.Encode(nil, evs), PartitionKey: aws.String(fmt.Sprintf("%s-%d", prefix, i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devstack.PutRecords(ctx, e.s.Kinesis(), e.stream, entries); err != nil {
		return nil, err
	}
	return ids, nil
}

// leaseCounts returns the open shards held per owner ("" for free).
func (e *env) leaseCounts() map[string]int {
	owners, cps := e.leases()
	got := map[string]int{}
	for shard, o := range owners {
		if strings.HasPrefix(shard, "worker/") || cps[shard] == "SHARD_END" {
			continue
		}
		got[o]++
	}
	return got
}

// fair reports whether the shards are all held by the named workers,
// each holding floor or ceil of shards over workers.
func (e *env) fair(shards int, ids ...string) func() bool {
	return func() bool {
		got := e.leaseCounts()
		lo, hi := shards/len(ids), (shards+len(ids)-1)/len(ids)
		total := 0
		for _, id := range ids {
			n := got[id]
			if n < lo || n > hi {
				return false
			}
			total += n
		}
		return total == shards
	}
}

// checkExactlyOnce fails the test for every id not delivered exactly once
// across the workers' file sinks, and returns the duplicate count.
func checkExactlyOnce(t *testing.T, ids []string, workers ...*worker) {
	t.Helper()
	got, _ := delivered(t, workers...)
	lost, dups := 0, 0
	for _, id := range ids {
		switch n := got[id]; {
		case n == 0:
			lost++
		case n > 1:
			dups += n - 1
		}
	}
	if lost > 0 || dups > 0 {
		t.Errorf("%d events: %d lost, %d delivered twice; want every event exactly once", len(ids), lost, dups)
	}
	t.Logf("%d events, each delivered exactly once", len(ids))
}

func (w *worker) sigterm(t *testing.T) {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		w.done <- err
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", w.id, err)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("%s did not exit within 40 s of SIGTERM", w.id)
	}
}

// TestBalanceJoinAndScaleDown: one worker holding all 8 shards gives a
// joining worker half of them, a third joins and gets its share, and
// when it leaves the other two take its shards back; events flow all
// along, and the handoffs deliver none of them twice.
func TestBalanceJoinAndScaleDown(t *testing.T) {
	e := newEnv(t, 8)
	a := e.startWorker("wa")
	waitFor(t, "wa to hold all 8 shards", 60*time.Second, e.ownedBy(8, "wa"))
	prod := e.produce("bal", 100*time.Millisecond, 20)

	b := e.startWorker("wb")
	join := waitFor(t, "wa and wb to hold 4 each", 60*time.Second, e.fair(8, "wa", "wb"))
	t.Logf("second worker: 4/4 %v after it started", join.Round(time.Millisecond))

	c := e.startWorker("wc")
	third := waitFor(t, "3/3/2", 60*time.Second, e.fair(8, "wa", "wb", "wc"))
	t.Logf("third worker: %v %v after it started", e.leaseCounts(), third.Round(time.Millisecond))

	c.sigterm(t)
	down := waitFor(t, "wa and wb to hold 4 each again", 60*time.Second, e.fair(8, "wa", "wb"))
	t.Logf("scale-down: 4/4 %v after the third worker exited", down.Round(time.Millisecond))

	ids := prod.halt()
	waitFor(t, "every event delivered", 60*time.Second, allDelivered(t, ids, a, b, c))
	checkExactlyOnce(t, ids, a, b, c)
	for _, w := range []*worker{a, b} {
		if !strings.Contains(w.logs.String(), "lease handed off") && !strings.Contains(w.logs.String(), "lease claimed for handoff") {
			t.Errorf("%s neither handed off nor claimed a lease", w.id)
		}
	}
}

// TestBalanceRollingRestart: three workers on 12 shards are restarted one
// by one, as a rolling deploy does; after each step the live workers hold
// 4 each, and no event is lost or delivered twice.
func TestBalanceRollingRestart(t *testing.T) {
	e := newEnv(t, 12)
	ws := []*worker{e.startWorker("r1"), e.startWorker("r2"), e.startWorker("r3")}
	waitFor(t, "4/4/4", 60*time.Second, e.fair(12, "r1", "r2", "r3"))
	prod := e.produce("roll", 100*time.Millisecond, 20)
	all := append([]*worker(nil), ws...)
	for i := range ws {
		ws[i].sigterm(t)
		ws[i] = e.startWorker(ws[i].id + "b")
		all = append(all, ws[i])
		ids := []string{ws[0].id, ws[1].id, ws[2].id}
		took := waitFor(t, fmt.Sprintf("4/4/4 after restarting worker %d", i+1), 60*time.Second, e.fair(12, ids...))
		t.Logf("restart %d: %v %v after the new worker started", i+1, e.leaseCounts(), took.Round(time.Millisecond))
	}
	ids := prod.halt()
	waitFor(t, "every event delivered", 60*time.Second, allDelivered(t, ids, all...))
	checkExactlyOnce(t, ids, all...)
}

// claims returns shard -> claimant of the rows whose lease is held by
// holder and claimed by someone else.
func (e *env) claims(holder string) map[string]string {
	out := map[string]string{}
	in := &dynamodb.ScanInput{TableName: aws.String(e.app), ConsistentRead: aws.Bool(true)}
	res, err := e.s.DynamoDB().Scan(context.Background(), in)
	if err != nil {
		return out
	}
	for _, it := range res.Items {
		owner, _ := it["AssignedTo"].(*ddbtypes.AttributeValueMemberS)
		claim, _ := it["ClaimRequest"].(*ddbtypes.AttributeValueMemberS)
		id, _ := it["ShardID"].(*ddbtypes.AttributeValueMemberS)
		if owner != nil && claim != nil && owner.Value == holder && claim.Value != holder {
			out[id.Value] = claim.Value
		}
	}
	return out
}

// TestHandoffClaimantKilled: the joining worker claims shards and is
// SIGKILLed before it can take any (its shard-sync tick is made long, so
// it never acquires). The holder hands the claimed shards over and, once
// the dead claimant's heartbeat and claims expire, takes them back:
// every shard is processed again and nothing is lost or duplicated.
func TestHandoffClaimantKilled(t *testing.T) {
	e := newEnv(t, 4)
	a := e.startWorker("ka")
	waitFor(t, "ka to hold all 4 shards", 60*time.Second, e.ownedBy(4, "ka"))
	first := e.put("before", 200)
	waitFor(t, "first events", 60*time.Second, allDelivered(t, first, a))

	b := e.startWorker("kb", "WORKER_SHARD_SYNC_INTERVAL=60s")
	// The claim is in the table as soon as its write lands, and in kb's
	// log only once kb has the answer: wait for both before the kill.
	waitFor(t, "kb to claim a shard of ka", 60*time.Second, func() bool {
		return len(e.claims("ka")) > 0 && strings.Contains(b.logs.String(), "lease claimed for handoff")
	})
	b.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	if strings.Contains(b.logs.String(), "lease acquired") {
		t.Fatal("kb acquired a lease before it was killed; the test wants it to die holding only claims")
	}

	later := e.put("after", 200)
	waitFor(t, "ka to hand a claimed shard over", 60*time.Second, func() bool {
		return strings.Contains(a.logs.String(), "lease handed off")
	})
	waitFor(t, "ka to hold all 4 shards again", 60*time.Second, e.ownedBy(4, "ka"))
	t.Logf("ka holds every shard again %v after the claimant was killed", time.Since(killed).Round(time.Millisecond))
	waitFor(t, "later events", 60*time.Second, allDelivered(t, later, a))
	checkExactlyOnce(t, append(first, later...), a, b)
}

// TestHandoffVictimKilled: the holder of a claimed shard is SIGKILLed in
// the middle of its handoff (its Segment sink is slow, so the flush
// takes seconds). The claimant takes the shards once the dead holder's
// leases expire: no event is lost, and Segment, which deduplicates on
// messageId, receives every event. The file sink may see the events of
// the interrupted batch again: that is the at-least-once replay of a
// crash, not of the handoff.
func TestHandoffVictimKilled(t *testing.T) {
	e := newEnv(t, 2)
	seg := newSegmentServer(t, "seg-key")
	var slow atomic.Bool
	inner := seg.srv.Config.Handler
	seg.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(4 * time.Second)
		}
		inner.ServeHTTP(w, r)
	})
	segEnv := []string{"SEGMENT_WRITE_KEY=seg-key", "SEGMENT_ENDPOINT=" + seg.srv.URL}
	a := e.startWorker("va", segEnv...)
	waitFor(t, "va to hold both shards", 60*time.Second, e.ownedBy(2, "va"))
	first := e.put("first", 100)
	waitFor(t, "first events", 60*time.Second, allDelivered(t, first, a))

	slow.Store(true)
	prod := e.produce("mid", 200*time.Millisecond, 10)
	b := e.startWorker("vb", segEnv...)
	waitFor(t, "va to start a handoff", 60*time.Second, func() bool {
		return strings.Contains(a.logs.String(), "handoff requested")
	})
	a.cmd.Process.Signal(syscall.SIGKILL)
	slow.Store(false)
	waitFor(t, "vb to hold both shards", 60*time.Second, e.ownedBy(2, "vb"))
	ids := append(first, prod.halt()...)
	waitFor(t, "every event in the file sinks", 60*time.Second, allDelivered(t, ids, a, b))
	waitFor(t, "every event at Segment", 60*time.Second, func() bool {
		got := seg.received()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	got, _ := delivered(t, a, b)
	dups := 0
	for _, id := range ids {
		dups += got[id] - 1
	}
	t.Logf("%d events, none lost; %d replayed to the file sink after the crash", len(ids), dups)
}
