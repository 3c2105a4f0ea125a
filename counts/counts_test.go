package counts

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
)

var now = time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)

func knownDays() []ddbsink.DayCounts {
	return []ddbsink.DayCounts{
		{Day: "2026-11-27", Events: 300, Values: map[string]int64{"29.58.2": 30, "29.58.0": 200, "29.57.3": 69}},
		{Day: "2026-11-20", Events: 10, Values: map[string]int64{"29.50.1": 6, "29.41.2": 4}},
		{Day: "2026-11-25", Events: 100, Values: map[string]int64{"29.57.3": 60, "29.56.0": 40}},
		{Day: "2026-11-26", Events: 2000, Values: map[string]int64{"29.58.0": 500, "29.57.3": 1400, "29.56.0": 100}},
		{Day: "2026-11-28", Events: 7, Values: map[string]int64{"29.59.0": 7}}, // after now: left out
	}
}

// checkLines compares the report's lines, trailing spaces aside.
func checkLines(t *testing.T, got string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if !slices.Equal(lines, want) {
		t.Errorf("got report\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestBuildAndPrint(t *testing.T) {
	r := Build("buildVersion", knownDays(), 3, now)
	if r.TotalEvents != 2410 || !slices.Equal(r.Days, []string{"2026-11-27", "2026-11-26", "2026-11-25"}) {
		t.Errorf("got %d events over %v", r.TotalEvents, r.Days)
	}
	var b strings.Builder
	if err := r.Print(&b); err != nil {
		t.Fatal(err)
	}
	checkLines(t, b.String(), []string{
		"buildVersion: last 3 days (UTC) to 2026-11-27; share of builds counted",
		"",
		"buildVersion  total  share  2026-11-27  share  2026-11-26  share  2026-11-25  share",
		"29.58.2          30   1.2%          30  10.0%           -                  -",
		"29.58.0         700  29.0%         200  66.7%         500  25.0%           -",
		"29.57.3       1,529  63.4%          69  23.0%       1,400  70.0%          60  60.0%",
		"29.56.0         140   5.8%           -                100   5.0%          40  40.0%",
		"(2 older)        10   0.4%           -                  -                  -",
		"builds        2,410                300              2,000                100",
	})
}

func TestAllTime(t *testing.T) {
	var b strings.Builder
	if err := Build("buildVersion", knownDays(), 0, now).Print(&b); err != nil {
		t.Fatal(err)
	}
	checkLines(t, b.String(), []string{
		"buildVersion: all time; share of builds counted",
		"",
		"buildVersion  total  share",
		"29.58.2          30   1.2%",
		"29.58.0         700  29.0%",
		"29.57.3       1,529  63.4%",
		"29.56.0         140   5.8%",
		"29.50.1           6   0.2%",
		"29.41.2           4   0.2%",
		"builds        2,410",
	})
}

func TestEmpty(t *testing.T) {
	var b strings.Builder
	if err := Build("framework", nil, 1, now).Print(&b); err != nil {
		t.Fatal(err)
	}
	checkLines(t, b.String(), []string{
		"framework: 2026-11-27 (UTC); share of builds counted",
		"",
		"(no values counted)",
		"framework  total  share  2026-11-27  share",
		"builds         -                  -",
	})
}

func TestCompareVersions(t *testing.T) {
	// Newest first, as a report lists them.
	want := []string{
		"29.58.10", "29.58.2", "v29.58.1", "29.58.1-rc.2", "29.58.1-rc.1", "29.58.1-beta", "29.9", "3.0.0+build", "2",
		"astro", "next", "unknown",
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortStableFunc(got, func(a, b string) int { return CompareVersions(b, a) })
	if !slices.Equal(got, want) {
		t.Errorf("got order %q, want %q", got, want)
	}
	plugins := []string{"@netlify/plugin-nextjs@5.10.0", "@netlify/plugin-nextjs@5.8.1", "netlify-plugin-cache@1.0.3"}
	got = []string{plugins[2], plugins[1], plugins[0]}
	slices.SortStableFunc(got, func(a, b string) int { return CompareVersions(b, a) })
	if !slices.Equal(got, plugins) {
		t.Errorf("got order %q, want %q", got, plugins)
	}
}

// queryFunc is a QueryAPI of one function.
type queryFunc func(*dynamodb.QueryInput) (*dynamodb.QueryOutput, error)

func (f queryFunc) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return f(in)
}

func TestAdoptionPages(t *testing.T) {
	// Each shard has its own item of a day: the report sums them, across
	// pages too.
	item := func(day, shard, n string, vals ...string) map[string]types.AttributeValue {
		it := map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "buildVersion"},
			"sk": &types.AttributeValueMemberS{Value: "day#" + day + "#" + shard},
			"n":  &types.AttributeValueMemberN{Value: n},
			"wm": &types.AttributeValueMemberS{Value: "0042"},
		}
		for i := 0; i < len(vals); i += 2 {
			it["v#"+vals[i]] = &types.AttributeValueMemberN{Value: vals[i+1]}
		}
		return it
	}
	calls := 0
	db := queryFunc(func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
		calls++
		if got := in.ExpressionAttributeValues[":hi"].(*types.AttributeValueMemberS).Value; got != "day#2026-11-27#\U0010FFFF" {
			t.Errorf("query up to %q, want every shard's item of 2026-11-27", got)
		}
		if calls == 1 {
			return &dynamodb.QueryOutput{
				Items:            []map[string]types.AttributeValue{item("2026-11-26", "shardId-000000000000", "3", "1.0.0", "3")},
				LastEvaluatedKey: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "x"}},
			}, nil
		}
		if in.ExclusiveStartKey == nil {
			t.Error("second page asked without ExclusiveStartKey")
		}
		return &dynamodb.QueryOutput{Items: []map[string]types.AttributeValue{
			item("2026-11-26", "shardId-000000000001", "1", "1.0.0", "1"),
			item("2026-11-27", "shardId-000000000000", "2", "1.0.0", "1", "1.1.0", "1"),
			item("2026-11-27", "shardId-000000000001", "4", "1.0.0", "1", "1.1.0", "3"),
		}}, nil
	})
	r, err := Adoption(context.Background(), db, "t", "", 2, now)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || r.Dimension != "buildVersion" || r.TotalEvents != 10 || len(r.Rows) != 2 ||
		r.Rows[0].Value != "1.1.0" || r.Rows[1].Total != 6 || !slices.Equal(r.Rows[1].Days, []int64{2, 4}) {
		t.Errorf("%d queries, report %+v", calls, r)
	}
	if _, err := Adoption(context.Background(), db, "t", "", -1, now); err == nil {
		t.Error("negative days accepted")
	}
}
