package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// memDB is an in-memory DynamoDB that understands exactly the requests
// the sink makes (and panics on any other), so that the exactness
// scenarios run in plain `go test` too. Tables are created at once. It is
// safe for concurrent use; each request is atomic, as on DynamoDB.
type memDB struct {
	mu     sync.Mutex
	tables map[string]map[[2]string]map[string]types.AttributeValue
}

var (
	_ API      = (*memDB)(nil)
	_ QueryAPI = (*memDB)(nil)
)

func newMemDB() *memDB {
	return &memDB{tables: map[string]map[[2]string]map[string]types.AttributeValue{}}
}

func (m *memDB) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tables[aws.ToString(in.TableName)]; !ok {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no table")}
	}
	return &dynamodb.DescribeTableOutput{Table: &types.TableDescription{
		TableName:   in.TableName,
		TableStatus: types.TableStatusActive,
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
	}}, nil
}

func (m *memDB) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := aws.ToString(in.TableName)
	if _, ok := m.tables[name]; ok {
		return nil, &types.ResourceInUseException{Message: aws.String("exists")}
	}
	m.tables[name] = map[[2]string]map[string]types.AttributeValue{}
	return &dynamodb.CreateTableOutput{}, nil
}

func keyOf(k map[string]types.AttributeValue) [2]string {
	return [2]string{k[attrPK].(*types.AttributeValueMemberS).Value, k[attrSK].(*types.AttributeValueMemberS).Value}
}

func (m *memDB) table(name string) (map[[2]string]map[string]types.AttributeValue, error) {
	t, ok := m.tables[name]
	if !ok {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no table " + name)}
	}
	return t, nil
}

func (m *memDB) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(aws.ToString(in.TableName))
	if err != nil {
		return nil, err
	}
	return &dynamodb.GetItemOutput{Item: maps.Clone(t[keyOf(in.Key)])}, nil
}

// splitClauses splits an update expression at its SET, ADD and REMOVE
// keywords.
func splitClauses(expr string) []string {
	var out []string
	f := strings.Fields(expr)
	for _, w := range f {
		if w == "SET" || w == "ADD" || w == "REMOVE" {
			out = append(out, w)
			continue
		}
		if len(out) == 0 {
			panic("memDB: update " + expr)
		}
		out[len(out)-1] += " " + w
	}
	return out
}

// UpdateItem supports "SET a = :x, … ADD b :y, … REMOVE c, …" and conditions
// made of "attribute_not_exists(a)", "a < :x" and "a = :x" joined by OR.
func (m *memDB) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(aws.ToString(in.TableName))
	if err != nil {
		return nil, err
	}
	k := keyOf(in.Key)
	old := t[k]
	name := func(s string) string {
		n, ok := in.ExpressionAttributeNames[s]
		if !ok {
			panic("memDB: unknown name " + s)
		}
		return n
	}
	value := func(s string) types.AttributeValue {
		v, ok := in.ExpressionAttributeValues[s]
		if !ok {
			panic("memDB: unknown value " + s)
		}
		return v
	}
	if c := aws.ToString(in.ConditionExpression); c != "" {
		ok := false
		for clause := range strings.SplitSeq(c, " OR ") {
			if a, found := strings.CutPrefix(clause, "attribute_not_exists("); found {
				_, exists := old[name(strings.TrimSuffix(a, ")"))]
				ok = ok || !exists
				continue
			}
			f := strings.Fields(clause)
			if len(f) != 3 {
				panic("memDB: condition " + c)
			}
			have, exists := old[name(f[0])].(*types.AttributeValueMemberS)
			want := value(f[2]).(*types.AttributeValueMemberS).Value
			switch f[1] {
			case "<":
				ok = ok || exists && have.Value < want
			case "=":
				ok = ok || exists && have.Value == want
			default:
				panic("memDB: condition " + c)
			}
		}
		if !ok {
			return nil, &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
		}
	}
	item := maps.Clone(old)
	if item == nil {
		item = maps.Clone(in.Key)
	}
	expr := aws.ToString(in.UpdateExpression)
	for _, clause := range splitClauses(expr) {
		verb, body, _ := strings.Cut(clause, " ")
		for a := range strings.SplitSeq(body, ", ") {
			f := strings.Fields(a)
			switch {
			case verb == "SET" && len(f) == 3 && f[1] == "=":
				item[name(f[0])] = value(f[2])
			case verb == "REMOVE" && len(f) == 1:
				delete(item, name(f[0]))
			case verb == "ADD" && len(f) == 2:
				attr := name(f[0])
				inc, _ := strconv.ParseInt(value(f[1]).(*types.AttributeValueMemberN).Value, 10, 64)
				var cur int64
				if n, ok := item[attr].(*types.AttributeValueMemberN); ok {
					cur, _ = strconv.ParseInt(n.Value, 10, 64)
				}
				item[attr] = &types.AttributeValueMemberN{Value: strconv.FormatInt(cur+inc, 10)}
			default:
				panic("memDB: update " + expr)
			}
		}
	}
	t[k] = item
	return &dynamodb.UpdateItemOutput{}, nil
}

// Query supports "#pk = :pk AND #sk BETWEEN :lo AND :hi", in one page.
func (m *memDB) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(aws.ToString(in.TableName))
	if err != nil {
		return nil, err
	}
	if aws.ToString(in.KeyConditionExpression) != "#pk = :pk AND #sk BETWEEN :lo AND :hi" {
		panic("memDB: query " + aws.ToString(in.KeyConditionExpression))
	}
	s := func(k string) string { return in.ExpressionAttributeValues[k].(*types.AttributeValueMemberS).Value }
	pk, lo, hi := s(":pk"), s(":lo"), s(":hi")
	var keys [][2]string
	for k := range t {
		if k[0] == pk && k[1] >= lo && k[1] <= hi {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[1], b[1]) })
	out := &dynamodb.QueryOutput{}
	for _, k := range keys {
		out.Items = append(out.Items, maps.Clone(t[k]))
	}
	return out, nil
}

// errInjected is the failure flakyAPI injects.
var errInjected = errors.New("injected failure")

// flakyAPI passes the first `left` UpdateItem calls through and fails
// the rest, as a worker that crashes part way through a batch would
// stop. With lose, the failing calls are applied before they report the
// failure: a response lost on the way back, which the SDK retries.
type flakyAPI struct {
	API
	left atomic.Int64
	lose bool
}

func newFlaky(api API, left int64, lose bool) *flakyAPI {
	f := &flakyAPI{API: api, lose: lose}
	f.left.Store(left)
	return f
}

func (f *flakyAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if f.left.Add(-1) >= 0 {
		return f.API.UpdateItem(ctx, in, opts...)
	}
	if f.lose {
		if _, err := f.API.UpdateItem(ctx, in, opts...); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("update item: %w", errInjected)
}
