package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Polling of DescribeTable while the table is being created: fast for the
// emulator, backing off to stay far below DescribeTable's rate limit on
// AWS, where a new table takes seconds.
const (
	tablePollMin = 50 * time.Millisecond
	tablePollMax = 2 * time.Second
)

// EnsureTable makes sure the counters' table exists and is ACTIVE. A
// missing table (DescribeTable answers ResourceNotFoundException, and only
// that) is created PAY_PER_REQUEST with hash key pk (S) and range key sk
// (S). Several workers may call it at once: a CreateTable that loses the
// race (ResourceInUseException) is not an error. An existing table with
// another key schema is. It is idempotent and bounded by ctx.
func (s *Sink) EnsureTable(ctx context.Context) error {
	delay := tablePollMin
	for {
		out, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)})
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			// Also right after our own CreateTable: DescribeTable is
			// eventually consistent, and creating again is answered
			// ResourceInUseException while the first creation runs.
			if err := s.createTable(ctx); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("dynamodb: describe table %s: %w", s.table, err)
		case out.Table == nil:
			return fmt.Errorf("dynamodb: describe table %s: no table in response", s.table)
		default:
			if err := checkKeySchema(out.Table); err != nil {
				return fmt.Errorf("dynamodb: table %s: %w", s.table, err)
			}
			if out.Table.TableStatus == types.TableStatusActive {
				return nil
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("dynamodb: wait for table %s to be active: %w", s.table, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, tablePollMax)
	}
}

func (s *Sink) createTable(ctx context.Context) error {
	_, err := s.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(s.table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		// A few writes per batch, bursty with the stream: on demand.
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	switch {
	case errors.As(err, &inUse):
		return nil // created by another worker; the caller checks its schema
	case err != nil:
		return fmt.Errorf("dynamodb: create table %s: %w", s.table, err)
	}
	s.log.Info("created counters table")
	return nil
}

// checkKeySchema fails unless the key is hash pk and range sk: any other
// key would fail every update later with a less helpful message.
func checkKeySchema(d *types.TableDescription) error {
	var hash, rng string
	for _, k := range d.KeySchema {
		switch k.KeyType {
		case types.KeyTypeHash:
			hash = aws.ToString(k.AttributeName)
		case types.KeyTypeRange:
			rng = aws.ToString(k.AttributeName)
		}
	}
	if len(d.KeySchema) != 2 || hash != attrPK || rng != attrSK {
		return fmt.Errorf("key schema is hash %q range %q, want hash %q range %q", hash, rng, attrPK, attrSK)
	}
	return nil
}
