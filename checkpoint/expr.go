package checkpoint

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// update builds one UpdateItem: its SET and REMOVE clauses, condition, and
// the placeholders they use. Every attribute name goes through a #name
// placeholder, so sink names never collide with DynamoDB's reserved words
// or need escaping.
type update struct {
	set, remove []string
	cond        string
	names       map[string]string
	values      map[string]types.AttributeValue
}

func newUpdate() *update {
	return &update{names: map[string]string{}, values: map[string]types.AttributeValue{}}
}

// name registers placeholder #ph for attribute (or map key) name.
func (u *update) name(ph, name string) string {
	u.names["#"+ph] = name
	return "#" + ph
}

// value registers placeholder :ph for v.
func (u *update) value(ph string, v types.AttributeValue) string {
	u.values[":"+ph] = v
	return ":" + ph
}

// expression returns the UpdateExpression.
func (u *update) expression() string {
	var b strings.Builder
	if len(u.set) > 0 {
		b.WriteString("SET ")
		b.WriteString(strings.Join(u.set, ", "))
	}
	if len(u.remove) > 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("REMOVE ")
		b.WriteString(strings.Join(u.remove, ", "))
	}
	return b.String()
}

// input returns the UpdateItemInput for shardID's row in table.
func (u *update) input(table, shardID string) *dynamodb.UpdateItemInput {
	in := &dynamodb.UpdateItemInput{
		TableName:                aws.String(table),
		Key:                      key(shardID),
		UpdateExpression:         aws.String(u.expression()),
		ExpressionAttributeNames: u.names,
	}
	if u.cond != "" {
		in.ConditionExpression = aws.String(u.cond)
	}
	if len(u.values) > 0 {
		in.ExpressionAttributeValues = u.values
	}
	return in
}
