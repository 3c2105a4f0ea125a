//go:build integration

package chaos

import (
	"strings"
	"testing"
	"time"
)

// TestChaosChecksCatchFaults feeds the checks of TestChaos with made-up
// sink contents, one fault at a time, so that a passing chaos run means
// something: each fault must be reported, and a clean run must not.
func TestChaosChecksCatchFaults(t *testing.T) {
	t.Parallel()
	clean := func() *results {
		sent := map[string]sentEvent{
			"a": {buildVersion: "29.1.0", acked: true, outcome: "200"},
			"b": {buildVersion: "29.1.0", acked: true, outcome: "200"},
			"c": {buildVersion: "29.2.0", acked: true, outcome: "200"},
			"d": {buildVersion: "29.2.0", acked: false, outcome: "eof"},     // in the stream anyway
			"e": {buildVersion: "29.2.0", acked: false, outcome: "refused"}, // not in the stream
		}
		ids := []string{"a", "b", "c", "d"}
		truth := &streamContent{records: 2, events: 4, count: map[string]int{}, version: map[string]string{}, lastSeq: map[string]string{}}
		s3c := &s3Content{objects: 2, lines: 4, count: map[string]int{}, version: map[string]string{}, objectsOf: map[string][]string{}}
		seg, ga := map[string]int{}, map[string]int{}
		for _, id := range ids {
			truth.count[id], truth.version[id] = 1, sent[id].buildVersion
			s3c.count[id], s3c.version[id] = 1, sent[id].buildVersion
			s3c.objectsOf[id] = []string{"events/k1"}
			seg[id], ga[id] = 1, 2 // a duplicate delivery is allowed
		}
		parkedNone := map[string]*parked{}
		for _, s := range sinkNames {
			parkedNone[s] = &parked{ids: map[string]int{}, reasons: map[string]int{}}
		}
		return &results{
			cfg: config{form: "short", shards: 1, workers: 3}, load: newLoadGen("", "", "", 1, 1), sent: sent, truth: truth, s3: s3c,
			counts:  &countsContent{events: 4, values: map[string]int64{"29.1.0": 2, "29.2.0": 2}, days: 1},
			segment: seg, ga4: ga, parkedBefore: parkedNone, parkedAfter: parkedNone, replays: map[string]replayResult{},
			c: &cluster{seg: &segmentServer{}, ga: &ga4Server{}, tl: &timeline{}}, loadTime: time.Minute,
		}
	}
	r := clean()
	r.check()
	if len(r.problems) != 0 {
		t.Fatalf("clean run: got problems %q, want none", r.problems)
	}
	if r.acked != 3 || r.unacked != 2 || r.unackedInStream != 1 || r.unackedInS3 != 1 {
		t.Errorf("clean run: acked %d unacked %d (in stream %d, in S3 %d), want 3, 2 (1, 1)", r.acked, r.unacked, r.unackedInStream, r.unackedInS3)
	}
	if rep := r.report(); !strings.Contains(rep, "RESULT: PASS") {
		t.Errorf("clean run report:\n%s\nwant RESULT: PASS", rep)
	}

	for _, tc := range []struct {
		name, want string
		fault      func(r *results)
	}{
		{"acked event not in the stream", "not in the stream (LOST)", func(r *results) {
			delete(r.truth.count, "a")
			r.truth.events--
			r.counts.events--
			r.counts.values["29.1.0"]--
		}},
		{"stream duplicate", "in the stream more than once", func(r *results) { r.truth.count["a"] = 2 }},
		{"event missing from S3", "are in no object (LOST; 1 acknowledged)", func(r *results) { delete(r.s3.count, "b") }},
		{"event twice in S3", "in more than one line", func(r *results) { r.s3.count["c"] = 2 }},
		{"unacked event twice in S3", "in more than one line", func(r *results) { r.s3.count["d"] = 2 }},
		{"S3 error object", "under errors/", func(r *results) { r.s3.errorObjects = []string{"errors/x"} }},
		{"count total off", "builds counted, the stream holds", func(r *results) { r.counts.events++ }},
		{"count per value off", "buildVersion counts differ", func(r *results) {
			r.counts.values["29.1.0"]--
			r.counts.values["29.2.0"]++
		}},
		{"Segment missed an unacked event of the stream", "Segment: 1 events of the stream never arrived (0 of them acknowledged)", func(r *results) { delete(r.segment, "d") }},
		{"GA4 missed an event", "GA4: 1 events of the stream never arrived (1 of them acknowledged)", func(r *results) { delete(r.ga4, "a") }},
		{"Segment got a foreign event", "not in the stream", func(r *results) { r.segment["zzz"] = 1 }},
		{"Segment refused a request", "refused 1 requests", func(r *results) { r.c.seg.rejected.Add(1) }},
		{"letters left", "remain after the replay", func(r *results) {
			r.parkedAfter = map[string]*parked{"segment": {letters: 1, events: 3}}
		}},
		{"process problem", "exited on its own", func(r *results) { r.c.problems = []string{"worker w1.1 exited on its own"} }},
		{"load bookkeeping", "counted as acknowledged", func(r *results) { r.sent["e"] = sentEvent{acked: true, outcome: "503"} }},
	} {
		r := clean()
		tc.fault(r)
		r.check()
		found := false
		for _, p := range r.problems {
			found = found || strings.Contains(p, tc.want)
		}
		if !found {
			t.Errorf("%s: got problems %q, want one containing %q", tc.name, r.problems, tc.want)
		}
		if rep := r.report(); !strings.Contains(rep, "RESULT: FAIL") {
			t.Errorf("%s: report does not say FAIL:\n%s", tc.name, rep)
		}
	}
}
