package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// QueryAPI is the part of the DynamoDB client ReadCounts uses.
// *dynamodb.Client implements it.
type QueryAPI interface {
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

var _ QueryAPI = (*dynamodb.Client)(nil)

// DayCounts are one dimension's counts on one day.
type DayCounts struct {
	// Day is the UTC day, in DayLayout.
	Day string
	// Events is the number of events counted that day, whether or not
	// they carried the dimension's property: the denominator of a share.
	Events int64
	// Values maps each value to the number of events that carried it.
	Values map[string]int64
}

// ReadCounts returns a dimension's counts for the days from through to
// (inclusive, in DayLayout; an empty bound is open), oldest first. Days
// without events are absent. It reads consistently, paging through one
// Query of the dimension's partition.
func ReadCounts(ctx context.Context, db QueryAPI, table, dimension, from, to string) ([]DayCounts, error) {
	if table == "" || dimension == "" {
		return nil, errors.New("dynamodb: read counts: table and dimension are required")
	}
	lo, hi := dayKey(from), dayKey(to)+shardSep+"\U0010FFFF" // every shard's item of the last day
	if to == "" {
		hi = dayPrefix + "\U0010FFFF" // after every day
	}
	in := &dynamodb.QueryInput{
		TableName:              aws.String(table),
		KeyConditionExpression: aws.String("#pk = :pk AND #sk BETWEEN :lo AND :hi"),
		ExpressionAttributeNames: map[string]string{
			"#pk": attrPK, "#sk": attrSK,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: dimension},
			":lo": &types.AttributeValueMemberS{Value: lo},
			":hi": &types.AttributeValueMemberS{Value: hi},
		},
		ConsistentRead: aws.Bool(true),
	}
	var out []DayCounts
	pages := dynamodb.NewQueryPaginator(db, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamodb: query counts of %s in %s: %w", dimension, table, err)
		}
		for _, it := range page.Items {
			dc, err := parseDay(it)
			if err != nil {
				return nil, fmt.Errorf("dynamodb: read counts of %s in %s: %w", dimension, table, err)
			}
			// Each shard has its own item of a day, and the sort keys put
			// a day's items together: sum them.
			if n := len(out); n > 0 && out[n-1].Day == dc.Day {
				out[n-1].Events += dc.Events
				for v, c := range dc.Values {
					out[n-1].Values[v] += c
				}
				continue
			}
			out = append(out, dc)
		}
	}
	return out, nil
}

// parseDay reads one counter item.
func parseDay(it map[string]types.AttributeValue) (DayCounts, error) {
	sk, _ := it[attrSK].(*types.AttributeValueMemberS)
	if sk == nil || !strings.HasPrefix(sk.Value, dayPrefix) {
		return DayCounts{}, fmt.Errorf("item without a day key: %v", it[attrSK])
	}
	dc := DayCounts{Day: dayOfKey(sk.Value), Values: map[string]int64{}}
	for name, av := range it {
		value, isValue := strings.CutPrefix(name, valuePrefix)
		if name != attrEvents && !isValue {
			continue // keys, watermark and holes
		}
		n, ok := av.(*types.AttributeValueMemberN)
		if !ok {
			return DayCounts{}, fmt.Errorf("day %s: attribute %q is not a number", dc.Day, name)
		}
		x, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			return DayCounts{}, fmt.Errorf("day %s: attribute %q: %w", dc.Day, name, err)
		}
		if isValue {
			dc.Values[value] = x
		} else {
			dc.Events = x
		}
	}
	return dc, nil
}
