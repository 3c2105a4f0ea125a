package kclproc_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor/kclproc"
	pt "github.com/buildtelemetry/pipeline/processor/processortest"
	"github.com/buildtelemetry/pipeline/sink/dynamodb"
	"github.com/buildtelemetry/pipeline/sink/ga4"
	"github.com/buildtelemetry/pipeline/sink/segment"
)

// routedSink is a recording sink that honours integrations objects under
// a real sink's name.
type routedSink struct {
	*pt.Sink
	integration string
}

func (s *routedSink) IntegrationName() string { return s.integration }

// takerSink is a recording sink that files refused events' envelopes, as
// the S3 sink does.
type takerSink struct{ *pt.Sink }

func (takerSink) TakesRejected() bool { return true }

// Every sink honours the integrations object under its own name: All,
// per-destination keys, options objects; the S3 archive by default keeps
// everything. A record no event of which is left for a sink does not
// hold that sink's watermark, or the checkpoint, back.
func TestIntegrationsRouting(t *testing.T) {
	seg := &routedSink{&pt.Sink{SinkName: "segment"}, segment.IntegrationName}
	ga := &routedSink{&pt.Sink{SinkName: "ga4"}, ga4.IntegrationName}
	counts := &routedSink{&pt.Sink{SinkName: "dynamodb"}, dynamodb.IntegrationName}
	archive := takerSink{&pt.Sink{SinkName: "s3"}} // the default S3 sink routes nothing away (sink/s3's TestIntegrationName)
	file := &pt.Sink{SinkName: "file"}
	h := newHarnessWith(t, kclproc.Config{}, seg, ga, counts, archive, file)
	integrations := map[string]string{
		"consent": `{"All":false,"Segment.io":true}`,
		"no-ga4":  `{"Google Analytics 4":false}`,
		"counted": `{"All":false,"Build Counts":{"note":"options object: on"}}`,
		"plain":   ``,
		"none":    `{"All":false}`,
	}
	names := []string{"consent", "no-ga4", "counted", "plain", "none"}
	var recs []types.Record
	now := time.Now()
	for i, name := range names {
		body := fmt.Sprintf(`{"messageId":%q,"type":"track","event":"build","userId":"u"`, name)
		if in := integrations[name]; in != "" {
			body += `,"integrations":` + in
		}
		recs = append(recs, types.Record{SequenceNumber: aws.String(fmt.Sprint(i + 1)), Data: []byte(body + "}"), ApproximateArrivalTimestamp: &now})
	}
	// And the envelope of an event the gateway refused: the archive only.
	_, env := event.RejectedEvent(event.Rejection{Err: &event.ValidationError{Kind: event.Invalid, Reason: "missing userId and anonymousId"},
		Raw: []byte(`{"type":"track","event":"e"}`)}, event.Meta{Source: "s", ReceivedAt: now}, 1<<10)
	recs = append(recs, types.Record{SequenceNumber: aws.String("6"), Data: env, ApproximateArrivalTimestamp: &now})
	process(h.start("sh"), recs)
	got := func(s *pt.Sink) []string {
		var out []string
		for _, n := range names {
			if s.Delivered()[n] > 0 {
				out = append(out, n)
			}
		}
		return out
	}
	for _, tc := range []struct {
		sink *pt.Sink
		want []string
	}{
		{seg.Sink, []string{"consent", "no-ga4", "plain"}},
		{ga.Sink, []string{"plain"}},
		{counts.Sink, []string{"no-ga4", "counted", "plain"}},
		{archive.Sink, names},
		{file, names},
	} {
		if g := got(tc.sink); !slices.Equal(g, tc.want) {
			t.Errorf("%s got %v, want %v", tc.sink.SinkName, g, tc.want)
		}
	}
	for _, s := range []*pt.Sink{seg.Sink, ga.Sink, counts.Sink, archive.Sink, file} {
		envelopes := 0
		for id := range s.Delivered() {
			if strings.HasPrefix(id, "gw-rej-") {
				envelopes++
			}
		}
		if want := map[bool]int{true: 1}[s == archive.Sink]; envelopes != want {
			t.Errorf("%s got %d envelopes of refused events, want %d", s.SinkName, envelopes, want)
		}
	}
	if cp := h.store.Progress("sh").Checkpoint; cp != "6" {
		t.Errorf("checkpoint %q, want 6: records routed away from a sink are done for it", cp)
	}
}
