package limits

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// dynamoProxy enforces the per-item write limit in front of dynalite.
type dynamoProxy struct {
	upstream

	mu      sync.Mutex
	keys    map[string]*bucket  // by table + item key
	schemas map[string][]string // key attribute names by table
	swept   time.Time
}

func newDynamoProxy(upstream string, cfg Config, stats *counter) *dynamoProxy {
	return &dynamoProxy{
		upstream: newUpstream(upstream, cfg, stats),
		keys:     map[string]*bucket{}, schemas: map[string][]string{},
	}
}

const dynamoJSON = "application/x-amz-json-1.0"

func (p *dynamoProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readAll(r)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op := target[strings.LastIndexByte(target, '.')+1:]
	if p.cfg.KeyWriteUnits <= 0 || (op != "UpdateItem" && op != "PutItem" && op != "DeleteItem") {
		p.pass(w, r, body)
		return
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		p.pass(w, r, body)
		return
	}
	var table string
	_ = json.Unmarshal(in["TableName"], &table)
	key, ok := p.itemKey(r, table, op, in)
	if !ok {
		p.pass(w, r, body)
		return
	}
	now := p.now()
	p.mu.Lock()
	b := p.bucket(table+"\x00"+key, now)
	admit := b.positive()
	p.mu.Unlock()
	if !admit {
		p.stats.add(func(s *Stats) { s.DynamoDBThrottled++ })
		throttled(w, dynamoJSON, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
			"Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html")
		return
	}
	// Ask the emulator what the write cost, unless the caller did.
	asked := len(in["ReturnConsumedCapacity"]) > 0 && string(in["ReturnConsumedCapacity"]) != `"NONE"`
	if !asked {
		in["ReturnConsumedCapacity"] = json.RawMessage(`"TOTAL"`)
		body, _ = json.Marshal(in)
	}
	resp, out, err := p.forward(r, "", body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	units := 1.0
	var res map[string]json.RawMessage
	if json.Unmarshal(out, &res) == nil {
		var cc struct{ CapacityUnits float64 }
		if json.Unmarshal(res["ConsumedCapacity"], &cc) == nil && cc.CapacityUnits > 0 {
			units = cc.CapacityUnits
		}
		if !asked && resp.StatusCode == http.StatusOK {
			delete(res, "ConsumedCapacity")
			out, _ = json.Marshal(res)
		}
	}
	// A failed condition still costs its write units, as in DynamoDB.
	p.mu.Lock()
	b.take(units)
	p.mu.Unlock()
	p.stats.add(func(s *Stats) { s.DynamoDBWrites++ })
	reply(w, resp, out)
}

// itemKey returns a canonical form of the item key a write names.
func (p *dynamoProxy) itemKey(r *http.Request, table, op string, in map[string]json.RawMessage) (string, bool) {
	var attrs map[string]json.RawMessage
	if op == "PutItem" {
		var item map[string]json.RawMessage
		if json.Unmarshal(in["Item"], &item) != nil {
			return "", false
		}
		names, ok := p.keySchema(r, table)
		if !ok {
			return "", false
		}
		attrs = map[string]json.RawMessage{}
		for _, n := range names {
			attrs[n] = item[n]
		}
	} else if json.Unmarshal(in["Key"], &attrs) != nil {
		return "", false
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		var c bytes.Buffer
		if json.Compact(&c, attrs[n]) != nil {
			return "", false
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.Write(c.Bytes())
		b.WriteByte(';')
	}
	return b.String(), true
}

// keySchema returns the table's key attribute names, from DescribeTable.
func (p *dynamoProxy) keySchema(r *http.Request, table string) ([]string, bool) {
	p.mu.Lock()
	names, ok := p.schemas[table]
	p.mu.Unlock()
	if ok {
		return names, true
	}
	body, _ := json.Marshal(map[string]string{"TableName": table})
	resp, b, err := p.forward(r, "DynamoDB_20120810.DescribeTable", body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, false
	}
	var out struct {
		Table struct {
			KeySchema []struct{ AttributeName string }
		}
	}
	if json.Unmarshal(b, &out) != nil {
		return nil, false
	}
	for _, k := range out.Table.KeySchema {
		names = append(names, k.AttributeName)
	}
	p.mu.Lock()
	p.schemas[table] = names
	p.mu.Unlock()
	return names, true
}

// bucket returns an item key's bucket, refilled to now. p.mu is held.
func (p *dynamoProxy) bucket(k string, now time.Time) *bucket {
	if now.Sub(p.swept) > time.Minute {
		// Forget keys that have been quiet long enough to refill.
		for key, b := range p.keys {
			if b.refill(now); b.tokens >= b.size {
				delete(p.keys, key)
			}
		}
		p.swept = now
	}
	b, ok := p.keys[k]
	if !ok {
		b = p.cfg.bucket(p.cfg.KeyWriteUnits, now)
		p.keys[k] = b
	}
	b.refill(now)
	return b
}
