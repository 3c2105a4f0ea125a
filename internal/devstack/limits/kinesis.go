package limits

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// kinesisProxy enforces the per-shard limits in front of kinesalite.
type kinesisProxy struct {
	upstream

	mu      sync.Mutex
	streams map[string]*shardMap  // by stream name
	shards  map[string]*shardLims // by stream + "/" + shard
	iters   map[string]iterShard  // shard iterator -> its shard
}

type shardLims struct {
	writeBytes, writeRecords, readCalls, readBytes *bucket
}

type iterShard struct {
	key  string // stream + "/" + shard
	seen time.Time
}

// shardMap is a stream's open shards and their hash key ranges.
type shardMap struct {
	at     time.Time
	shards []shardRange
}

type shardRange struct {
	id         string
	start, end *big.Int
}

func newKinesisProxy(upstream string, cfg Config, stats *counter) *kinesisProxy {
	return &kinesisProxy{
		upstream: newUpstream(upstream, cfg, stats),
		streams:  map[string]*shardMap{}, shards: map[string]*shardLims{}, iters: map[string]iterShard{},
	}
}

func (p *kinesisProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readAll(r)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndexByte(op, '.')+1:]
	switch op {
	case "PutRecords":
		p.putRecords(w, r, body)
	case "PutRecord":
		p.putRecord(w, r, body)
	case "GetShardIterator":
		p.getShardIterator(w, r, body)
	case "GetRecords":
		p.getRecords(w, r, body)
	default:
		p.pass(w, r, body)
	}
}

func reply(w http.ResponseWriter, resp *http.Response, b []byte) {
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	if resp.Header.Get("X-Amz-Crc32") != "" {
		// DynamoDB's body checksum, which the SDK verifies: the body may
		// have been changed here (ConsumedCapacity taken out), and a
		// mismatch makes the SDK retry a write that already happened.
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(b)), 10))
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
}

// throttled writes the JSON-protocol error AWS answers over a limit.
func throttled(w http.ResponseWriter, contentType, typ, msg string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

const kinesisJSON = "application/x-amz-json-1.1"

func rateExceeded(stream, shard string) string {
	return fmt.Sprintf("Rate exceeded for shard %s in stream %s under account 000000000000.", shard, stream)
}

type putEntry struct {
	Data            []byte `json:"Data"`
	PartitionKey    string `json:"PartitionKey"`
	ExplicitHashKey string `json:"ExplicitHashKey,omitempty"`
}

type putResult struct {
	SequenceNumber string `json:"SequenceNumber,omitempty"`
	ShardId        string `json:"ShardId,omitempty"`
	ErrorCode      string `json:"ErrorCode,omitempty"`
	ErrorMessage   string `json:"ErrorMessage,omitempty"`
}

// writeTarget decodes a write request into in and returns its stream and
// the stream's shards. When either fails it passes the request to the
// emulator, which explains what is wrong, and reports false.
func (p *kinesisProxy) writeTarget(w http.ResponseWriter, r *http.Request, body []byte, in any, names func() (string, string)) (string, *shardMap, bool) {
	if err := json.Unmarshal(body, in); err != nil {
		p.pass(w, r, body)
		return "", nil, false
	}
	stream := streamName(names())
	shards, err := p.shardsOf(r, stream)
	if err != nil {
		p.pass(w, r, body)
		return "", nil, false
	}
	return stream, shards, true
}

// putRecords lets through the entries their shards have room for and
// fails the rest, per entry, as Kinesis does.
func (p *kinesisProxy) putRecords(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		StreamName string     `json:"StreamName,omitempty"`
		StreamARN  string     `json:"StreamARN,omitempty"`
		Records    []putEntry `json:"Records"`
	}
	stream, shards, ok := p.writeTarget(w, r, body, &in, func() (string, string) { return in.StreamName, in.StreamARN })
	if !ok {
		return
	}
	results := make([]putResult, len(in.Records))
	var pass []putEntry
	var passIdx []int
	now := p.now()
	p.mu.Lock()
	for i, e := range in.Records {
		shard := shards.find(e.PartitionKey, e.ExplicitHashKey)
		if !p.admitWrite(p.lims(stream, shard, now), shard, float64(len(e.Data)+len(e.PartitionKey))) {
			results[i] = putResult{ErrorCode: "ProvisionedThroughputExceededException", ErrorMessage: rateExceeded(stream, shard)}
			continue
		}
		pass = append(pass, e)
		passIdx = append(passIdx, i)
	}
	p.mu.Unlock()
	failed := len(in.Records) - len(pass)
	p.stats.add(func(s *Stats) { s.WriteThrottled += int64(failed) })
	if len(pass) > 0 {
		fwd, _ := json.Marshal(struct {
			StreamName string     `json:"StreamName,omitempty"`
			StreamARN  string     `json:"StreamARN,omitempty"`
			Records    []putEntry `json:"Records"`
		}{in.StreamName, in.StreamARN, pass})
		resp, b, ok := p.call(w, r, fwd)
		if !ok {
			return
		}
		var out struct {
			FailedRecordCount int
			Records           []putResult
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || len(out.Records) != len(pass) {
			reply(w, resp, b) // a whole-call error: as the emulator said
			return
		}
		for j, res := range out.Records {
			results[passIdx[j]] = res
			if res.ErrorCode != "" {
				failed++
			} else {
				p.stats.wrote(res.ShardId, 1)
			}
		}
	}
	w.Header().Set("Content-Type", kinesisJSON)
	json.NewEncoder(w).Encode(struct {
		FailedRecordCount int         `json:"FailedRecordCount"`
		Records           []putResult `json:"Records"`
	}{failed, results})
}

func (p *kinesisProxy) putRecord(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		StreamName, StreamARN, PartitionKey, ExplicitHashKey string
		Data                                                 []byte
	}
	stream, shards, ok := p.writeTarget(w, r, body, &in, func() (string, string) { return in.StreamName, in.StreamARN })
	if !ok {
		return
	}
	shard := shards.find(in.PartitionKey, in.ExplicitHashKey)
	size := float64(len(in.Data) + len(in.PartitionKey))
	p.mu.Lock()
	admitted := p.admitWrite(p.lims(stream, shard, p.now()), shard, size)
	p.mu.Unlock()
	if !admitted {
		p.stats.add(func(s *Stats) { s.WriteThrottled++ })
		throttled(w, kinesisJSON, "ProvisionedThroughputExceededException", rateExceeded(stream, shard))
		return
	}
	resp, b, ok := p.call(w, r, body)
	if !ok {
		return
	}
	if resp.StatusCode == http.StatusOK {
		p.stats.wrote(shard, 1)
	}
	reply(w, resp, b)
}

// getShardIterator remembers which shard the iterator reads.
func (p *kinesisProxy) getShardIterator(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct{ StreamName, StreamARN, ShardId string }
	_ = json.Unmarshal(body, &in)
	resp, b, ok := p.call(w, r, body)
	if !ok {
		return
	}
	var out struct{ ShardIterator string }
	if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &out) == nil && out.ShardIterator != "" {
		p.remember(out.ShardIterator, streamName(in.StreamName, in.StreamARN)+"/"+in.ShardId)
	}
	reply(w, resp, b)
}

func (p *kinesisProxy) remember(iter, key string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.iters[iter] = iterShard{key: key, seen: now}
	if len(p.iters) > 100000 {
		// Iterators expire after five minutes; forget older ones.
		for k, v := range p.iters {
			if now.Sub(v.seen) > 5*time.Minute {
				delete(p.iters, k)
			}
		}
	}
}

// getRecords admits a call while the shard has calls and bytes left,
// and charges the bytes it returns.
func (p *kinesisProxy) getRecords(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct{ ShardIterator string }
	_ = json.Unmarshal(body, &in)
	now := p.now()
	p.mu.Lock()
	it, known := p.iters[in.ShardIterator]
	var l *shardLims
	ok := true
	if known {
		stream, shard, _ := strings.Cut(it.key, "/")
		l = p.lims(stream, shard, now)
		ok = l.readCalls.has(1) && l.readBytes.positive()
		if ok {
			l.readCalls.take(1)
		}
	}
	p.mu.Unlock()
	if !ok {
		stream, shard, _ := strings.Cut(it.key, "/")
		p.stats.add(func(s *Stats) { s.ReadThrottled++ })
		throttled(w, kinesisJSON, "ProvisionedThroughputExceededException", rateExceeded(stream, shard))
		return
	}
	resp, b, ok := p.call(w, r, body)
	if !ok {
		return
	}
	var out struct {
		Records []struct {
			Data         string
			PartitionKey string
		}
		NextShardIterator string
	}
	if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &out) == nil && known {
		n := 0
		for _, rec := range out.Records {
			n += base64.StdEncoding.DecodedLen(len(rec.Data)) - strings.Count(rec.Data[max(0, len(rec.Data)-2):], "=")
		}
		p.mu.Lock()
		l.readBytes.take(float64(n))
		p.mu.Unlock()
		p.stats.read(it.key, now)
		if out.NextShardIterator != "" {
			p.remember(out.NextShardIterator, it.key)
		}
	}
	reply(w, resp, b)
}

// admitWrite takes one record of size bytes from the shard's write
// buckets if both have room, and reports whether they had. A record whose
// shard is unknown passes. p.mu is held.
func (p *kinesisProxy) admitWrite(l *shardLims, shard string, size float64) bool {
	if shard == "" {
		return true
	}
	if !l.writeBytes.has(size) || !l.writeRecords.has(1) {
		return false
	}
	l.writeBytes.take(size)
	l.writeRecords.take(1)
	return true
}

// lims returns the buckets of a shard, refilled to now. p.mu is held.
func (p *kinesisProxy) lims(stream, shard string, now time.Time) *shardLims {
	k := stream + "/" + shard
	l, ok := p.shards[k]
	if !ok {
		l = &shardLims{
			writeBytes:   p.cfg.bucket(p.cfg.ShardWriteBytes, now),
			writeRecords: p.cfg.bucket(p.cfg.ShardWriteRecords, now),
			readCalls:    p.cfg.bucket(p.cfg.ShardReadCalls, now),
			readBytes:    p.cfg.bucket(p.cfg.ShardReadBytes, now),
		}
		p.shards[k] = l
	}
	for _, b := range []*bucket{l.writeBytes, l.writeRecords, l.readCalls, l.readBytes} {
		b.refill(now)
	}
	return l
}

// shardsOf returns the stream's open shards, listed at most a second ago.
func (p *kinesisProxy) shardsOf(r *http.Request, stream string) (*shardMap, error) {
	now := p.now()
	p.mu.Lock()
	m, ok := p.streams[stream]
	p.mu.Unlock()
	if ok && now.Sub(m.at) < time.Second {
		return m, nil
	}
	m = &shardMap{at: now}
	next := ""
	for {
		req := map[string]any{"StreamName": stream}
		if next != "" {
			req = map[string]any{"NextToken": next}
		}
		body, _ := json.Marshal(req)
		resp, b, err := p.forward(r, "Kinesis_20131202.ListShards", body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("list shards of %s: %s", stream, b)
		}
		var out struct {
			Shards []struct {
				ShardId      string
				HashKeyRange struct{ StartingHashKey, EndingHashKey string }
				// An ending sequence number marks a closed shard.
				SequenceNumberRange struct{ EndingSequenceNumber string }
			}
			NextToken string
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, err
		}
		for _, s := range out.Shards {
			if s.SequenceNumberRange.EndingSequenceNumber != "" {
				continue
			}
			start, ok1 := new(big.Int).SetString(s.HashKeyRange.StartingHashKey, 10)
			end, ok2 := new(big.Int).SetString(s.HashKeyRange.EndingHashKey, 10)
			if ok1 && ok2 {
				m.shards = append(m.shards, shardRange{id: s.ShardId, start: start, end: end})
			}
		}
		if out.NextToken == "" {
			break
		}
		next = out.NextToken
	}
	p.mu.Lock()
	p.streams[stream] = m
	p.mu.Unlock()
	return m, nil
}

// find returns the open shard a record goes to: the one whose hash key
// range holds the MD5 of its partition key, read as a 128-bit number, or
// its explicit hash key.
func (m *shardMap) find(partitionKey, explicit string) string {
	h := new(big.Int)
	if explicit != "" {
		if _, ok := h.SetString(explicit, 10); !ok {
			return ""
		}
	} else {
		sum := md5.Sum([]byte(partitionKey))
		h.SetBytes(sum[:])
	}
	for _, s := range m.shards {
		if h.Cmp(s.start) >= 0 && h.Cmp(s.end) <= 0 {
			return s.id
		}
	}
	return ""
}

func streamName(name, arn string) string {
	if name != "" {
		return name
	}
	_, after, _ := strings.Cut(arn, ":stream/")
	return after
}
