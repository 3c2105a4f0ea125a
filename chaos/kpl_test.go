//go:build integration

package chaos

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/corpus"
)

// kplResult is what the KPL producer wrote.
type kplResult struct {
	aggregates, events, poison int
}

// produceKPL writes KPL aggregates straight to the stream beside the
// gateway, as a second producer (the KPL, Fluent Bit) would: every 2 s an
// aggregate of 10 normalised events, and every 10 s two poison records,
// one whose protobuf does not decode and one whose user record names a
// partition key outside its table. The events it wrote are recorded in
// load as acknowledged: Kinesis took them.
func produceKPL(ctx context.Context, kc *kinesis.Client, stream string, load *loadGen) kplResult {
	var res kplResult
	g := corpus.NewNetlify(99)
	poison := func(body []byte) []byte {
		out := append([]byte{0xF3, 0x89, 0x9A, 0xC2}, body...)
		sum := md5.Sum(body)
		return append(out, sum[:]...)
	}
	put := func(data []byte, key string) bool {
		_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), Data: data, PartitionKey: aws.String(key)})
		return err == nil
	}
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return res
		case <-time.After(2 * time.Second):
		}
		var users [][]byte
		var ids, versions []string
		now := time.Now().UTC().Format(time.RFC3339Nano)
		for j := 0; j < 10; j++ {
			tr := g.Next()
			id := fmt.Sprintf("kpl-%d-%d", tick, j)
			props, _ := json.Marshal(tr.Properties)
			// properties.eid = messageId, as the load generator's events
			// carry it (the GA4 test server maps it to a parameter).
			props = append(fmt.Appendf(nil, `{"eid":%q,`, id), props[1:]...)
			users = append(users, fmt.Appendf(nil, `{"messageId":%q,"type":"track","userId":%q,"event":%q,"timestamp":%q,"receivedAt":%q,"properties":%s}`,
				id, tr.UserID, tr.Event, now, now, props))
			ids = append(ids, id)
			versions = append(versions, tr.Properties.BuildVersion)
		}
		if put(event.EncodeKPL([]string{ids[0], ids[5]}, users), ids[0]) {
			load.direct(ids, versions)
			res.aggregates++
			res.events += len(ids)
		}
		if tick%5 == 4 {
			if put(poison([]byte{0x1a, 0x7f, 0x08}), fmt.Sprintf("poison-proto-%d", tick)) {
				res.poison++
			}
			if put(poison([]byte{0x0a, 0x01, 'k', 0x1a, 0x07, 0x08, 0x09, 0x1a, 0x03, '{', '}', ' '}), fmt.Sprintf("poison-index-%d", tick)) {
				res.poison++
			}
		}
	}
}

// direct records events written to the stream by another producer as
// sent and acknowledged.
func (g *loadGen) direct(ids, versions []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, id := range ids {
		// "200": acknowledged, as a 200 from the gateway is.
		g.events[id] = &sentEvent{buildVersion: versions[i], acked: true, outcome: "200"}
	}
}
