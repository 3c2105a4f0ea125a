//go:build integration

package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/internal/devstack/limits"
)

// results is everything read back after the run, the checks over it and
// the report.
type results struct {
	cfg                       config
	load                      *loadGen
	sent                      map[string]sentEvent
	truth                     *streamContent
	s3                        *s3Content
	counts                    *countsContent
	segment, ga4              map[string]int
	parkedBefore, parkedAfter map[string]*parked
	replays                   map[string]replayResult
	c                         *cluster
	loadTime, setup, drain    time.Duration
	total                     time.Duration

	problems []string

	acked, unacked, unackedInStream, unackedInS3 int
	streamDups, phantoms                         int
	lines                                        map[string]string // report line per sink
	limits                                       *limits.Proxy     // nil when off
	kpl                                          kplResult         // what the KPL producer wrote
}

func (r *results) fail(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// sinkDeliveries checks one SaaS sink's deliveries (by ID) against the
// stream: every event in the stream at least once, nothing else.
func (r *results) sinkDeliveries(name string, got map[string]int) (distinct, dups, missing int) {
	missingIDs := map[string]bool{}
	for id := range r.truth.count {
		if got[id] == 0 {
			missingIDs[id] = true
		}
	}
	phantom := map[string]bool{}
	for id, n := range got {
		distinct++
		dups += n - 1
		if r.truth.count[id] == 0 {
			phantom[id] = true
		}
	}
	if len(missingIDs) > 0 {
		ackedMissing := 0
		for id := range missingIDs {
			if r.sent[id].acked {
				ackedMissing++
			}
		}
		r.fail("%s: %d events of the stream never arrived (%d of them acknowledged), e.g. %s", name, len(missingIDs), ackedMissing, firstN(missingIDs, 5))
	}
	if len(phantom) > 0 {
		r.fail("%s: %d events arrived that are not in the stream, e.g. %s", name, len(phantom), firstN(phantom, 5))
	}
	return distinct, dups, len(missingIDs)
}

func (r *results) check() {
	r.c.mu.Lock()
	r.problems = append(r.problems, r.c.problems...)
	r.c.mu.Unlock()
	r.lines = map[string]string{}

	// The load's own bookkeeping: an event is acknowledged only when the
	// request that carried it got a 200.
	for id, e := range r.sent {
		if e.acked != (e.outcome == "200") {
			r.fail("load: event %s counted as acknowledged=%v with outcome %q", id, e.acked, e.outcome)
		}
		if e.acked {
			r.acked++
		} else {
			r.unacked++
			if r.truth.count[id] > 0 {
				r.unackedInStream++
			}
			if r.s3.count[id] > 0 {
				r.unackedInS3++
			}
		}
	}
	if r.acked == 0 {
		r.fail("no event was acknowledged: the run proved nothing")
	}

	// The stream: what the gateway wrote.
	for _, b := range r.truth.bad {
		r.fail("stream: %s", b)
	}
	lost := map[string]bool{}
	for id, e := range r.sent {
		if e.acked && r.truth.count[id] == 0 {
			lost[id] = true
		}
	}
	if len(lost) > 0 {
		r.fail("gateway: %d acknowledged events are not in the stream (LOST), e.g. %s", len(lost), firstN(lost, 5))
	}
	dupIDs, phantom := map[string]bool{}, map[string]bool{}
	for id, n := range r.truth.count {
		if n > 1 {
			dupIDs[id] = true
			r.streamDups += n - 1
		}
		if _, ok := r.sent[id]; !ok {
			phantom[id] = true
		}
	}
	r.phantoms = len(phantom)
	if len(dupIDs) > 0 {
		r.fail("gateway: %d events are in the stream more than once although no request was retried, e.g. %s", len(dupIDs), firstN(dupIDs, 5))
	}
	if len(phantom) > 0 {
		r.fail("stream: %d events that the load never sent, e.g. %s", len(phantom), firstN(phantom, 5))
	}

	// S3: each event of the stream exactly once over the distinct object
	// keys (a listing gives each key once; a rewrite overwrites).
	s3Lost, s3Dup, s3Phantom := map[string]bool{}, map[string]bool{}, map[string]bool{}
	s3Dups := 0
	for id, n := range r.truth.count {
		got := r.s3.count[id]
		switch {
		case got == 0:
			s3Lost[id] = true
		case got > n:
			s3Dup[id] = true
			s3Dups += got - n
		}
	}
	for id := range r.s3.count {
		if r.truth.count[id] == 0 {
			s3Phantom[id] = true
		}
	}
	ackedLostS3 := 0
	for id := range s3Lost {
		if r.sent[id].acked {
			ackedLostS3++
		}
	}
	if len(s3Lost) > 0 {
		r.fail("S3: %d events of the stream are in no object (LOST; %d acknowledged), e.g. %s", len(s3Lost), ackedLostS3, firstN(s3Lost, 5))
	}
	if len(s3Dup) > 0 {
		var ex []string
		for id := range s3Dup {
			if len(ex) == 3 {
				break
			}
			ex = append(ex, fmt.Sprintf("%s in %s", id, strings.Join(r.s3.objectsOf[id], " and ")))
		}
		sort.Strings(ex)
		r.fail("S3: %d events are in more than one line over distinct objects (%d extra lines), e.g. %s", len(s3Dup), s3Dups, strings.Join(ex, "; "))
	}
	if len(s3Phantom) > 0 {
		r.fail("S3: %d events that are not in the stream, e.g. %s", len(s3Phantom), firstN(s3Phantom, 5))
	}
	for _, b := range r.s3.bad {
		r.fail("S3: %s", b)
	}
	if len(r.s3.errorObjects) > 0 {
		r.fail("S3: %d objects under errors/, e.g. %s", len(r.s3.errorObjects), r.s3.errorObjects[0])
	}
	r.lines["s3"] = fmt.Sprintf("%d distinct in %d objects, %d lost, %d duplicates across objects", len(r.s3.count), r.s3.objects, len(s3Lost), s3Dups)

	// DynamoDB: the buildVersion counters, summed over days, equal the
	// stream's events per value, exactly.
	want := map[string]int64{}
	for id, n := range r.truth.count {
		want[r.truth.version[id]] += int64(n)
	}
	var diffs []string
	for v, n := range want {
		if r.counts.values[v] != n {
			diffs = append(diffs, fmt.Sprintf("%s: counted %d, stream %d", v, r.counts.values[v], n))
		}
	}
	for v, n := range r.counts.values {
		if _, ok := want[v]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: counted %d, not in the stream", v, n))
		}
	}
	sort.Strings(diffs)
	if r.counts.events != int64(r.truth.events) {
		r.fail("DynamoDB: %d builds counted, the stream holds %d", r.counts.events, r.truth.events)
	}
	if len(diffs) > 0 {
		r.fail("DynamoDB: buildVersion counts differ from the stream: %s", strings.Join(diffs, "; "))
	}
	if r.counts.events == int64(r.truth.events) && len(diffs) == 0 {
		r.lines["dynamodb"] = fmt.Sprintf("counts exact (%d builds, %d versions, %d days)", r.counts.events, len(want), r.counts.days)
	} else {
		r.lines["dynamodb"] = fmt.Sprintf("counts WRONG: %d builds counted for %d in the stream, %d versions differ", r.counts.events, r.truth.events, len(diffs))
	}

	// Segment and GA4: every event of the stream at least once.
	for _, s := range []struct {
		name, key string
		got       map[string]int
		rejected  int64
		lastBad   any
	}{
		{"Segment", "segment", r.segment, r.c.seg.rejected.Load(), r.c.seg.lastBad.Load()},
		{"GA4", "ga4", r.ga4, r.c.ga.rejected.Load(), r.c.ga.lastBad.Load()},
	} {
		distinct, dups, missing := r.sinkDeliveries(s.name, s.got)
		if s.rejected > 0 {
			r.fail("%s: the server refused %d requests as malformed, last: %v", s.name, s.rejected, s.lastBad)
		}
		rp := r.replays[s.key]
		r.lines[s.key] = fmt.Sprintf("%d distinct, %d duplicate deliveries, %d missing; %d replayed from dead letters", distinct, dups, missing, rp.events)
	}

	// Dead letters: everything parked for a sink was re-driven (records
	// that never decoded stay for a person; they are checked below).
	for _, sink := range sinkNames {
		if sink == "_decode" {
			continue
		}
		if p := r.parkedAfter[sink]; p != nil && p.letters > 0 {
			r.fail("dead letters: %d letters (%d events) of %s remain after the replay", p.letters, p.events, sink)
		}
		if rp, ok := r.replays[sink]; ok && (rp.failed > 0 || rp.rejected > 0 || rp.kept > 0) {
			r.fail("replay %s: %d letters failed, %d events rejected again, %d entries not replayable", sink, rp.failed, rp.rejected, rp.kept)
		}
	}
	// The KPL producer's poison records, and nothing else, are parked as
	// undecodable.
	decoded := 0
	if p := r.parkedBefore["_decode"]; p != nil {
		decoded = p.letters
	}
	if decoded != r.kpl.poison || r.truth.poison != r.kpl.poison {
		r.fail("dead letters: %d records parked as undecodable and %d poison records in the stream; the KPL producer wrote %d", decoded, r.truth.poison, r.kpl.poison)
	}
}

func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	return strings.Join(parts, "/") + " s"
}

// report is the one-screen summary.
func (r *results) report() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	p("chaos report (%s, %.0f s of load, %d shards, %d workers; %.0f s in all: setup %.0f s, drain %.1f s)",
		r.cfg.form, r.loadTime.Seconds(), r.cfg.shards, r.cfg.workers, r.total.Seconds(), r.setup.Seconds(), r.drain.Seconds())
	r.load.mu.Lock()
	p("  load      %d requests (%d batches, %d single): %s", r.load.requests, r.load.batches, r.load.requests-r.load.batches, strings.Join(outcomeParts(r.load.outcomes), ", "))
	r.load.mu.Unlock()
	p("  events    sent %d  acknowledged %d  unacknowledged %d (of which in the stream: %d, in S3: %d)  %.1f acked/s",
		len(r.sent), r.acked, r.unacked, r.unackedInStream, r.unackedInS3, float64(r.acked)/r.loadTime.Seconds())
	p("  stream    %d events in %d records, %d duplicated, %d not from the load", r.truth.events, r.truth.records, r.streamDups, r.phantoms)
	p("  KPL       %d aggregates of %d events written beside the gateway, %d poison records (all parked, none delivered)", r.kpl.aggregates, r.kpl.events, r.kpl.poison)
	p("  S3        %s", r.lines["s3"])
	p("  DynamoDB  %s", r.lines["dynamodb"])
	p("  Segment   %s", r.lines["segment"])
	p("  GA4       %s; %d requests answered 500", r.lines["ga4"], c.ga.answered500.Load())
	for _, sink := range []string{"segment", "ga4", "s3", "dynamodb"} {
		if pk := r.parkedBefore[sink]; pk != nil && pk.letters > 0 {
			p("  parked    %-8s %s", sink, pk)
		}
	}
	left := 0
	for _, pk := range r.parkedAfter {
		left += pk.letters
	}
	p("  dead letters left after replay: %d; automatic re-drive completed %.1f s after the drain", left, c.redriveTook.Seconds())
	p("  disruptions: workers %d SIGKILL, %d SIGTERM (exit in %s); Segment down %d× %.0f s; GA4 500 %d× %.0f s",
		c.sigkills, c.sigterms, durations(c.sigtermExit), c.segOutages, c.segDown.Seconds(), c.ga4Outages, c.ga4Failing.Seconds())
	p("               gateway restarts %d after SIGTERM, %d after SIGKILL (down %s)", c.gwTerms, c.gwKills, durations(c.gwDown))
	claims, handoffs := 0, 0
	for _, pr := range c.all {
		if strings.HasPrefix(pr.name, "worker ") {
			logs := pr.logs()
			claims += strings.Count(logs, "lease claimed for handoff")
			handoffs += strings.Count(logs, "lease handed off")
		}
	}
	if r.limits != nil {
		st := r.limits.Stats()
		p("               AWS limits on: %d Kinesis entries and %d GetRecords calls throttled, %d DynamoDB writes throttled",
			st.WriteThrottled, st.ReadThrottled, st.DynamoDBThrottled)
	} else {
		p("               limits off (%s=off)", devstack.EnvLimits)
	}
	p("               balancing: %d leases claimed, %d handed off gracefully (the duplicates above include any they caused)", claims, handoffs)
	if len(r.problems) == 0 {
		p("  RESULT: PASS: 0 acknowledged events lost, every event in S3 exactly once, counts exact, Segment and GA4 complete")
	} else {
		p("  RESULT: FAIL: %d problems (listed below)", len(r.problems))
	}
	return b.String()
}

func outcomeParts(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return out
}
