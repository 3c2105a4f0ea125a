//go:build integration

package chaos

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/buildtelemetry/pipeline/deadletter"
	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/streamread"
	ddbsink "github.com/buildtelemetry/pipeline/sink/dynamodb"
)

// idLine is the part of an event line the checks read.
type idLine struct {
	MessageID  string `json:"messageId"`
	Properties struct {
		BuildVersion string `json:"buildVersion"`
	} `json:"properties"`
}

// streamContent is what the stream holds: the ground truth every sink is
// checked against.
type streamContent struct {
	records int
	events  int
	count   map[string]int    // messageId -> copies in the stream
	version map[string]string // messageId -> properties.buildVersion
	lastSeq map[string]string // shard -> sequence number of its last record
	bad     []string          // records or events that do not decode
	poison  int               // KPL aggregates that do not decode
}

func readStream(ctx context.Context, kc *kinesis.Client, stream string) (*streamContent, error) {
	dec, err := event.NewRecordDecoder()
	if err != nil {
		return nil, err
	}
	sc := &streamContent{count: map[string]int{}, version: map[string]string{}, lastSeq: map[string]string{}}
	shards, err := streamread.Shards(ctx, kc, stream)
	if err != nil {
		return nil, err
	}
	for _, shard := range shards {
		err := streamread.Follow(ctx, kc, stream, shard, kinesistypes.ShardIteratorTypeTrimHorizon, false, func(recs []kinesistypes.Record) error {
			for _, r := range recs {
				sc.records++
				sc.lastSeq[shard] = aws.ToString(r.SequenceNumber)
				evs, err := dec.Decode(r.Data)
				if errors.Is(err, event.ErrBadAggregate) {
					sc.poison++ // the KPL producer's, on purpose
					continue
				}
				if err != nil {
					sc.bad = append(sc.bad, fmt.Sprintf("%s/%s: %v", shard, aws.ToString(r.SequenceNumber), err))
					continue
				}
				for _, raw := range evs {
					var l idLine
					if err := json.Unmarshal(raw, &l); err != nil || l.MessageID == "" {
						sc.bad = append(sc.bad, fmt.Sprintf("%s/%s: event without messageId", shard, aws.ToString(r.SequenceNumber)))
						continue
					}
					sc.events++
					sc.count[l.MessageID]++
					sc.version[l.MessageID] = l.Properties.BuildVersion
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// lease is one row of the lease table.
type lease struct {
	owner, checkpoint string
}

func readLeases(ctx context.Context, db *dynamodb.Client, table string) (map[string]lease, error) {
	out := map[string]lease{}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for {
		page, err := db.Scan(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			str := func(k string) string {
				if v, ok := it[k].(*ddbtypes.AttributeValueMemberS); ok {
					return v.Value
				}
				return ""
			}
			if strings.HasPrefix(str("ShardID"), "worker/") {
				continue // a worker's heartbeat row, not a shard
			}
			out[str("ShardID")] = lease{owner: str("AssignedTo"), checkpoint: str("Checkpoint")}
		}
		if page.LastEvaluatedKey == nil {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// behind lists the shards whose checkpoint has not reached the last
// record of the stream, as "shard (checkpoint)".
func behind(leases map[string]lease, lastSeq map[string]string) []string {
	var out []string
	for shard, last := range lastSeq {
		cp := leases[shard].checkpoint
		c, ok1 := new(big.Int).SetString(cp, 10)
		l, ok2 := new(big.Int).SetString(last, 10)
		if !ok1 || !ok2 || c.Cmp(l) < 0 {
			cp = cmp.Or(cp, "none")
			out = append(out, fmt.Sprintf("%s (checkpoint %s, owner %q)", shard, abbrevSeq(cp), leases[shard].owner))
		}
	}
	sort.Strings(out)
	return out
}

func abbrevSeq(s string) string {
	if len(s) > 12 {
		return "…" + s[len(s)-8:]
	}
	return s
}

// s3Content is what the S3 sink wrote: every object under the events
// prefix, each listed once (a rewrite of the same key overwrites it).
type s3Content struct {
	objects      int
	lines        int
	count        map[string]int // messageId -> lines over all objects
	version      map[string]string
	objectsOf    map[string][]string // messageId -> keys, for duplicates
	errorObjects []string
	bad          []string
}

func readS3(ctx context.Context, sc *s3.Client, bucket string) (*s3Content, error) {
	c := &s3Content{count: map[string]int{}, version: map[string]string{}, objectsOf: map[string][]string{}}
	keys, err := listKeys(ctx, sc, bucket, "events/")
	if err != nil {
		return nil, err
	}
	if c.errorObjects, err = listKeys(ctx, sc, bucket, "errors/"); err != nil {
		return nil, err
	}
	for _, key := range keys {
		c.objects++
		obj, err := sc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		zr, err := gzip.NewReader(obj.Body)
		if err != nil {
			obj.Body.Close()
			c.bad = append(c.bad, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		s := bufio.NewScanner(zr)
		s.Buffer(make([]byte, 1<<20), 4<<20)
		for s.Scan() {
			var l idLine
			if err := json.Unmarshal(s.Bytes(), &l); err != nil || l.MessageID == "" {
				c.bad = append(c.bad, fmt.Sprintf("%s: line without messageId", key))
				continue
			}
			c.lines++
			c.count[l.MessageID]++
			c.version[l.MessageID] = l.Properties.BuildVersion
			c.objectsOf[l.MessageID] = append(c.objectsOf[l.MessageID], key)
		}
		if err := s.Err(); err != nil {
			c.bad = append(c.bad, fmt.Sprintf("%s: %v", key, err))
		}
		obj.Body.Close()
	}
	return c, nil
}

func listKeys(ctx context.Context, sc *s3.Client, bucket, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(sc, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// counts sums the buildVersion counters over every day.
type countsContent struct {
	events int64
	values map[string]int64
	days   int
}

func readCounts(ctx context.Context, db *dynamodb.Client, table string) (*countsContent, error) {
	days, err := ddbsink.ReadCounts(ctx, db, table, "buildVersion", "", "")
	if err != nil {
		return nil, err
	}
	c := &countsContent{values: map[string]int64{}, days: len(days)}
	for _, d := range days {
		c.events += d.Events
		for v, n := range d.Values {
			c.values[v] += n
		}
	}
	return c, nil
}

// parked is what the dead-letter store holds for one sink.
type parked struct {
	corrupt int // objects an interrupted upload left undecodable
	letters int
	events  int
	ids     map[string]int
	reasons map[string]int // letters by reason
}

// sinkNames are the sinks a letter can belong to ("_decode": records
// that did not decode).
var sinkNames = []string{"s3", "dynamodb", "segment", "ga4", "file", "_decode"}

func readDeadLetters(ctx context.Context, store *deadletter.Store) (map[string]*parked, error) {
	out := map[string]*parked{}
	for _, sink := range sinkNames {
		keys, err := store.List(ctx, sink, "")
		if err != nil {
			return nil, err
		}
		p := &parked{ids: map[string]int{}, reasons: map[string]int{}}
		out[sink] = p
		for _, key := range keys {
			l, err := store.Read(ctx, key)
			if errors.Is(err, deadletter.ErrCorruptLetter) {
				p.corrupt++
				continue
			}
			if err != nil {
				return nil, err
			}
			p.letters++
			p.reasons[l.Reason]++
			for _, e := range l.Entries {
				p.events++
				var il idLine
				if json.Unmarshal(e.Event, &il) == nil && il.MessageID != "" {
					p.ids[il.MessageID]++
				}
			}
		}
	}
	return out, nil
}

func (p *parked) String() string {
	if p == nil || p.letters == 0 {
		return "nothing parked"
	}
	var rs []string
	for r, n := range p.reasons {
		rs = append(rs, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(rs)
	out := fmt.Sprintf("parked %d events (%d distinct) in %d letters (%s)", p.events, len(p.ids), p.letters, strings.Join(rs, ", "))
	if p.corrupt > 0 {
		out += fmt.Sprintf("; %d objects cut off by a killed worker (records parked again)", p.corrupt)
	}
	return out
}

// firstN lists up to n items of a set, sorted, for error messages.
func firstN[V any](m map[string]V, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	more := ""
	if len(keys) > n {
		more = fmt.Sprintf(" and %d more", len(keys)-n)
		keys = keys[:n]
	}
	return strings.Join(keys, ", ") + more
}
