//go:build integration

package counts

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/devstack"
	"github.com/buildtelemetry/pipeline/processor"
	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// TestAdoptionFromSink counts known builds through the sink into dynalite,
// replaying part of them, and reads the report back.
func TestAdoptionFromSink(t *testing.T) {
	ctx := context.Background()
	stack := devstack.ForTest(t)
	table := devstack.UniqueName(t, "adoption")
	sink, err := ddbsink.New(stack.DynamoDB(), ddbsink.Config{Table: table}, nil)
	if err != nil {
		t.Fatal(err)
	}
	builds := []struct {
		day, version string
		n            int
	}{
		{"2026-11-25", "29.56.0", 2},
		{"2026-11-26", "29.57.3", 4},
		{"2026-11-26", "29.58.0", 1},
		{"2026-11-27", "29.58.0", 2},
		{"2026-11-27", "29.58.2", 3},
		{"2026-11-27", "", 1}, // a build without a version counts as a build
	}
	var recs []processor.Record
	for _, b := range builds {
		for range b.n {
			i := len(recs)
			props := `{"status":"success"}`
			if b.version != "" {
				props = fmt.Sprintf(`{"buildVersion":%q,"status":"success"}`, b.version)
			}
			e, err := event.Parse(fmt.Appendf(nil, `{"messageId":"m%d","type":"track","event":"build:ci_build_process_completed",`+
				`"timestamp":"%sT10:00:00.000Z","receivedAt":"%sT10:00:01.000Z","properties":%s}`, i, b.day, b.day, props))
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, processor.Record{SequenceNumber: fmt.Sprint(100 + i), Events: []*event.Event{e}})
		}
	}
	// Two batches, then a new lease replaying part of them; each writer
	// flushes its window as the processor does before a checkpoint.
	for _, batches := range [][][]processor.Record{{recs[:5], recs[5:]}, {recs[3:9]}} {
		w, err := sink.Open(ctx, processor.Shard{Stream: "s", ID: "shardId-000000000000", Worker: "w"})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range batches {
			if err := w.Write(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	r, err := Adoption(ctx, stack.DynamoDB(), table, "buildVersion", 2, now)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	checkLines(t, out.String(), []string{
		"buildVersion: last 2 days (UTC) to 2026-11-27; share of builds counted",
		"",
		"buildVersion  total  share  2026-11-27  share  2026-11-26  share",
		"29.58.2           3  23.1%           3  50.0%           -",
		"29.58.0           3  23.1%           2  33.3%           1  20.0%",
		"29.57.3           4  30.8%           -                  4  80.0%",
		"(1 older)         2  15.4%           -                  -",
		"builds           13                  6                  5",
	})

	r, err = Adoption(ctx, stack.DynamoDB(), table, "status", 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || r.Rows[0].Value != "success" || r.Rows[0].Total != 13 || r.Rows[0].Days[0] != 6 {
		t.Errorf("status report: %+v", r)
	}
}
