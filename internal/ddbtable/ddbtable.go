// Package ddbtable creates a DynamoDB table when it is missing and waits
// until it is ACTIVE: what the lease table (checkpoint) and the counters
// table (sink/dynamodb) both need at a worker's start.
package ddbtable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.uber.org/zap"
)

// Polling of DescribeTable while the table is being created: fast for the
// emulator, backing off to stay far below DescribeTable's rate limit on
// AWS, where a new table takes seconds.
const (
	pollMin = 50 * time.Millisecond
	pollMax = 2 * time.Second
)

// API is the part of the DynamoDB client Ensure uses.
type API interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}

// Spec is the table wanted: string keys, on-demand billing.
type Spec struct {
	Name string
	// Hash and Range are the key attributes (type S); Range may be empty.
	Hash, Range string
	// What names the table in logs: "lease table", "counters table".
	What string
	// CallTimeout bounds each call; 0: only ctx.
	CallTimeout time.Duration
}

// Ensure makes sure the table exists with the key schema of spec and is
// ACTIVE. A missing table (DescribeTable answers ResourceNotFoundException,
// and only that) is created PAY_PER_REQUEST: writes come in bursts with
// the stream. Several workers may call it at once: a CreateTable that loses
// the race (ResourceInUseException) is not an error. An existing table
// with another key schema is, since every later operation would fail with
// a less helpful message. It is idempotent and bounded by ctx.
func Ensure(ctx context.Context, db API, spec Spec, log *zap.Logger) error {
	delay := pollMin
	for {
		desc, err := describe(ctx, db, spec)
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			// Also right after our own CreateTable: DescribeTable is
			// eventually consistent, and creating again is answered
			// ResourceInUseException while the first creation runs.
			if err := create(ctx, db, spec, log); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := checkKeySchema(desc, spec); err != nil {
				return fmt.Errorf("table %s: %w", spec.Name, err)
			}
			if desc.TableStatus == types.TableStatusActive {
				return nil
			}
			log.Debug("waiting for "+spec.What, zap.String("status", string(desc.TableStatus)))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for table %s to be active: %w", spec.Name, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, pollMax)
	}
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func describe(ctx context.Context, db API, spec Spec) (*types.TableDescription, error) {
	cctx, cancel := withTimeout(ctx, spec.CallTimeout)
	defer cancel()
	out, err := db.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: aws.String(spec.Name)})
	if err != nil {
		return nil, fmt.Errorf("describe table %s: %w", spec.Name, err)
	}
	if out.Table == nil {
		return nil, fmt.Errorf("describe table %s: no table in response", spec.Name)
	}
	return out.Table, nil
}

func create(ctx context.Context, db API, spec Spec, log *zap.Logger) error {
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(spec.Name),
		BillingMode: types.BillingModePayPerRequest,
	}
	for _, k := range []struct {
		name string
		typ  types.KeyType
	}{{spec.Hash, types.KeyTypeHash}, {spec.Range, types.KeyTypeRange}} {
		if k.name == "" {
			continue
		}
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(k.name), AttributeType: types.ScalarAttributeTypeS})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String(k.name), KeyType: k.typ})
	}
	cctx, cancel := withTimeout(ctx, spec.CallTimeout)
	defer cancel()
	_, err := db.CreateTable(cctx, in)
	var inUse *types.ResourceInUseException
	switch {
	case errors.As(err, &inUse):
		// Another worker created it meanwhile; Ensure checks its schema.
		log.Debug(spec.What + " created concurrently by another worker")
		return nil
	case err != nil:
		return fmt.Errorf("create table %s: %w", spec.Name, err)
	}
	log.Info("created " + spec.What)
	return nil
}

// checkKeySchema fails unless the table's key is exactly spec's.
func checkKeySchema(d *types.TableDescription, spec Spec) error {
	var hash, rng string
	for _, k := range d.KeySchema {
		switch k.KeyType {
		case types.KeyTypeHash:
			hash = aws.ToString(k.AttributeName)
		case types.KeyTypeRange:
			rng = aws.ToString(k.AttributeName)
		}
	}
	want := 1
	if spec.Range != "" {
		want = 2
	}
	if len(d.KeySchema) != want || hash != spec.Hash || rng != spec.Range {
		return fmt.Errorf("key schema is %s, want hash %q range %q", describeKeys(d.KeySchema), spec.Hash, spec.Range)
	}
	return nil
}

func describeKeys(ks []types.KeySchemaElement) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = aws.ToString(k.AttributeName) + ":" + string(k.KeyType)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
