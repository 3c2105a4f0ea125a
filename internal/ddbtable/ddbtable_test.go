package ddbtable

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.uber.org/zap"
)

// fakeDB creates tables that become ACTIVE after two DescribeTable calls,
// as AWS's do after a few seconds; creating one that exists is answered
// ResourceInUseException.
type fakeDB struct {
	mu       sync.Mutex
	tables   map[string]*types.TableDescription
	describe map[string]int
	creates  int
}

func (f *fakeDB) DescribeTable(_ context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.tables[aws.ToString(in.TableName)]
	if d == nil {
		return nil, &types.ResourceNotFoundException{Message: aws.String("not found")}
	}
	f.describe[*in.TableName]++
	if f.describe[*in.TableName] > 2 {
		d.TableStatus = types.TableStatusActive
	}
	cp := *d // a response of its own, as the SDK's
	return &dynamodb.DescribeTableOutput{Table: &cp}, nil
}

func (f *fakeDB) CreateTable(_ context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tables[aws.ToString(in.TableName)] != nil {
		return nil, &types.ResourceInUseException{Message: aws.String("in use")}
	}
	if in.BillingMode != types.BillingModePayPerRequest {
		return nil, &types.ResourceInUseException{Message: aws.String("test wants on-demand billing")}
	}
	f.creates++
	f.tables[*in.TableName] = &types.TableDescription{TableName: in.TableName, KeySchema: in.KeySchema, TableStatus: types.TableStatusCreating}
	return &dynamodb.CreateTableOutput{}, nil
}

func TestEnsure(t *testing.T) {
	db := &fakeDB{tables: map[string]*types.TableDescription{}, describe: map[string]int{}}
	spec := Spec{Name: "counts", Hash: "pk", Range: "sk", What: "counters table"}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs { // workers starting together
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = Ensure(context.Background(), db, spec, zap.NewNop()) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if db.creates != 1 || db.tables["counts"].TableStatus != types.TableStatusActive {
		t.Errorf("%d creations, status %s; want one, ACTIVE", db.creates, db.tables["counts"].TableStatus)
	}
	// A table of the same name with another key is refused.
	err := Ensure(context.Background(), db, Spec{Name: "counts", Hash: "ShardID", What: "lease table"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "key schema") {
		t.Errorf("foreign key schema: %v, want a key schema error", err)
	}
	// A context that ends while waiting is reported.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	db.tables["slow"] = &types.TableDescription{TableName: aws.String("slow"), TableStatus: types.TableStatusCreating,
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}}}
	db.describe["slow"] = -100
	if err := Ensure(ctx, db, Spec{Name: "slow", Hash: "pk"}, zap.NewNop()); err == nil {
		t.Error("Ensure returned nil for a table that never became ACTIVE")
	}
}
