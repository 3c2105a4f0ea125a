package gateway

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/internal/testkit"
)

// fakeKinesis is a PutRecordsAPI whose behaviour each test sets. An unset
// function panics.
type fakeKinesis struct {
	putRecords func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error)
}

func (f *fakeKinesis) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	return f.putRecords(ctx, in)
}

// callLog records the entries of every PutRecords call, and which of them
// Kinesis accepted.
type callLog struct {
	mu       sync.Mutex
	calls    [][]types.PutRecordsRequestEntry
	accepted []types.PutRecordsRequestEntry
}

func (l *callLog) add(in *kinesis.PutRecordsInput) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, slices.Clone(in.Records))
	return len(l.calls) - 1
}

func (l *callLog) accept(es ...types.PutRecordsRequestEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted = append(l.accepted, es...)
}

func (l *callLog) snapshot() (calls [][]types.PutRecordsRequestEntry, accepted []types.PutRecordsRequestEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls), slices.Clone(l.accepted)
}

// respond answers a call: entries whose index is in fail get a throttling
// error, the others succeed and are logged as accepted.
func (l *callLog) respond(in *kinesis.PutRecordsInput, fail ...int) *kinesis.PutRecordsOutput {
	out := &kinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(int32(len(fail)))}
	for i, e := range in.Records {
		if slices.Contains(fail, i) {
			out.Records = append(out.Records, types.PutRecordsResultEntry{
				ErrorCode:    aws.String("ProvisionedThroughputExceededException"),
				ErrorMessage: aws.String("Rate exceeded for shard shardId-000000000001"),
			})
			continue
		}
		l.accept(e)
		out.Records = append(out.Records, types.PutRecordsResultEntry{
			SequenceNumber: aws.String(fmt.Sprint(i)),
			ShardId:        aws.String("shardId-000000000000"),
		})
	}
	return out
}

// okAPI accepts every entry.
func okAPI(l *callLog) *fakeKinesis {
	return &fakeKinesis{putRecords: func(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		l.add(in)
		return l.respond(in), nil
	}}
}

func newTestProducer(t *testing.T, api PutRecordsAPI, cfg ProducerConfig) *Producer {
	t.Helper()
	enc, err := event.NewRecordEncoder()
	if err != nil {
		t.Fatal(err)
	}
	cfg.StreamName = cmp.Or(cfg.StreamName, "telemetry")
	p, err := NewProducer(api, enc, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close: %v", err)
		}
		checkNoProducerGoroutines(t)
	})
	return p
}

// checkNoProducerGoroutines fails if a goroutine of the producer outlives
// Close. Goroutines that are returning may still be listed for a moment,
// hence the polling.
func checkNoProducerGoroutines(t testing.TB) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "gateway.(*Producer)") {
			return
		}
	}
	t.Errorf("producer goroutines left after Close:\n%s", stacks)
}

// waitFor polls cond until it holds; the test's own timeout bounds it.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, 10*time.Second, cond)
}

// msg returns a message whose Data is a JSON event of exactly size bytes
// (at least its messageId's) holding id.
func msg(id string, size int) Message {
	b, _ := json.Marshal(map[string]string{"messageId": id, "p": ""})
	pad := max(size-len(b), 0)
	b, _ = json.Marshal(map[string]string{"messageId": id, "p": strings.Repeat("x", pad)})
	return Message{ID: id, Data: b}
}

func msgs(prefix string, n, size int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = msg(fmt.Sprintf("%s-%04d", prefix, i), size)
	}
	return out
}

func bufferSize(ms []Message) int64 {
	var n int64
	for _, m := range ms {
		n += int64(len(m.Data))
	}
	return n
}

// decodedRecord is one entry taken apart again.
type decodedRecord struct {
	key    string
	ids    []string
	events [][]byte
	size   int // Data plus PartitionKey bytes
}

func decodeEntry(t testing.TB, dec *event.RecordDecoder, e types.PutRecordsRequestEntry) decodedRecord {
	t.Helper()
	events, err := dec.Decode(e.Data)
	if err != nil {
		t.Fatalf("decode record: %v", err)
	}
	r := decodedRecord{key: aws.ToString(e.PartitionKey), events: events, size: len(e.Data) + len(aws.ToString(e.PartitionKey))}
	for _, ev := range events {
		var v struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(ev, &v); err != nil {
			t.Fatalf("event %q is not JSON: %v", ev, err)
		}
		r.ids = append(r.ids, v.MessageID)
	}
	return r
}

// checkAccepted checks that the accepted entries hold every message of
// want exactly once, and nothing else, with each record's partition key
// the ID of its first message.
func checkAccepted(t testing.TB, accepted []types.PutRecordsRequestEntry, want []Message) {
	t.Helper()
	dec, err := event.NewRecordDecoder()
	if err != nil {
		t.Fatal(err)
	}
	wantData := make(map[string][]byte, len(want))
	for _, m := range want {
		wantData[m.ID] = m.Data
	}
	seen := make(map[string]int, len(want))
	for _, e := range accepted {
		r := decodeEntry(t, dec, e)
		if len(r.ids) == 0 || r.key != r.ids[0] {
			t.Errorf("record with messages %v has partition key %q, want the first message's ID", r.ids, r.key)
		}
		for i, id := range r.ids {
			seen[id]++
			if d, ok := wantData[id]; !ok {
				t.Errorf("message %q was written but never sent", id)
			} else if !bytes.Equal(r.events[i], d) {
				t.Errorf("message %q: got data %q, want %q", id, r.events[i], d)
			}
		}
	}
	for _, m := range want {
		if n := seen[m.ID]; n != 1 {
			t.Errorf("message %q written %d times, want 1", m.ID, n)
		}
	}
}

func TestProducerConcurrentWrites(t *testing.T) {
	var log callLog
	api := okAPI(&log)
	api.putRecords = func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("PutRecords called without a deadline")
		}
		if got := aws.ToString(in.StreamName); got != "telemetry" {
			t.Errorf("got stream %q, want telemetry", got)
		}
		log.add(in)
		return log.respond(in), nil
	}
	p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond, MaxRecordBytes: 2048, MaxInFlight: 2})

	const writers, writes = 40, 25
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		all []Message
	)
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				batch := msgs(fmt.Sprintf("w%02d-%02d", w, i), 1+(w+i)%4, 100+(w*i)%400)
				if err := p.Write(context.Background(), batch); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
				mu.Lock()
				all = append(all, batch...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	calls, accepted := log.snapshot()
	checkAccepted(t, accepted, all)
	st := p.Stats()
	if st.Events != int64(len(all)) {
		t.Errorf("Stats().Events: got %d, want %d", st.Events, len(all))
	}
	if st.Records != int64(len(accepted)) || st.Calls != int64(len(calls)) {
		t.Errorf("Stats(): got %d records in %d calls, want %d in %d", st.Records, st.Calls, len(accepted), len(calls))
	}
	var size int64
	for _, e := range accepted {
		size += int64(len(e.Data) + len(aws.ToString(e.PartitionKey)))
	}
	if st.Bytes != size {
		t.Errorf("Stats().Bytes: got %d, want %d", st.Bytes, size)
	}
	if len(calls) >= writers*writes {
		t.Errorf("got %d calls for %d writes: nothing was grouped", len(calls), writers*writes)
	}
	if b := p.buffered.Load(); b != 0 {
		t.Errorf("buffered bytes after all writes: got %d, want 0", b)
	}
}

func TestProducerPacking(t *testing.T) {
	random := func(prefix string, n, size int) []Message {
		out := make([]Message, n)
		for i := range out {
			raw := make([]byte, size*3/4)
			rand.Read(raw)
			id := fmt.Sprintf("%s-%04d", prefix, i)
			b, _ := json.Marshal(map[string]string{"messageId": id, "p": base64.StdEncoding.EncodeToString(raw)})
			out[i] = Message{ID: id, Data: b}
		}
		return out
	}
	tests := []struct {
		name           string
		maxRecordBytes int
		msgs           []Message
		wantRecords    int   // 0: not checked
		wantCalls      []int // records per call, sorted; nil: not checked
		wantMinCalls   int
	}{
		{
			name:           "records cut at MaxRecordBytes",
			maxRecordBytes: 1000,
			msgs:           msgs("m", 300, 100),
			wantRecords:    34, // RecordSize(9, 900) = 960, RecordSize(10, 1000) = 1065: 33 of 9 and one of 3
			wantCalls:      []int{34},
		},
		{
			name:           "oversized event alone",
			maxRecordBytes: 1000,
			msgs:           []Message{msg("a", 100), msg("big", 3000), msg("c", 100), msg("d", 100)},
			wantRecords:    3,
			wantCalls:      []int{3},
		},
		{
			name:           "calls cut at 500 records",
			maxRecordBytes: 100,
			msgs:           msgs("m", 1200, 60), // one per record
			wantRecords:    1200,
			wantCalls:      []int{200, 500, 500},
		},
		{
			name:           "calls cut at 5 MiB",
			maxRecordBytes: DefaultMaxRecordBytes,
			msgs:           random("r", 200, 30000), // 6 MB that barely compresses
			wantMinCalls:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log callLog
			p := newTestProducer(t, okAPI(&log), ProducerConfig{Linger: time.Millisecond, MaxRecordBytes: tt.maxRecordBytes})
			if err := p.Write(context.Background(), tt.msgs); err != nil {
				t.Fatalf("Write: %v", err)
			}
			calls, accepted := log.snapshot()
			checkAccepted(t, accepted, tt.msgs)
			if tt.wantRecords != 0 && len(accepted) != tt.wantRecords {
				t.Errorf("got %d records, want %d", len(accepted), tt.wantRecords)
			}
			var perCall []int
			dec, _ := event.NewRecordDecoder()
			for _, c := range calls {
				perCall = append(perCall, len(c))
				size := 0
				var recs []decodedRecord
				for _, e := range c {
					r := decodeEntry(t, dec, e)
					recs = append(recs, r)
					size += r.size
				}
				if len(c) > 500 || size > 5<<20 {
					t.Errorf("call of %d records and %d bytes exceeds the PutRecords limits", len(c), size)
				}
				for i, r := range recs {
					raw := 0
					for _, ev := range r.events {
						raw += len(ev)
					}
					if len(r.events) > 1 && event.RecordSize(len(r.events), raw) > tt.maxRecordBytes {
						t.Errorf("record of %d events is %d bytes raw, over MaxRecordBytes %d", len(r.events), event.RecordSize(len(r.events), raw), tt.maxRecordBytes)
					}
					// Records are filled greedily: the next record's first event
					// did not fit in this one.
					if i+1 < len(recs) {
						next := len(recs[i+1].events[0])
						if event.RecordSize(len(r.events)+1, raw+next) <= tt.maxRecordBytes {
							t.Errorf("record %d cut early: %d events of %d bytes, and the next %d bytes would fit", i, len(r.events), raw, next)
						}
					}
				}
			}
			slices.Sort(perCall)
			if tt.wantCalls != nil && !slices.Equal(perCall, tt.wantCalls) {
				t.Errorf("got records per call %v, want %v", perCall, tt.wantCalls)
			}
			if len(calls) < tt.wantMinCalls {
				t.Errorf("got %d calls, want at least %d", len(calls), tt.wantMinCalls)
			}
		})
	}
}

// writeAll starts one Write per batch and waits until the producer holds
// all of them, so that they share a batch when Linger is long. It returns
// the Writes' results.
func writeAll(t *testing.T, p *Producer, batches ...[]Message) <-chan error {
	t.Helper()
	errc := make(chan error, len(batches))
	total := p.buffered.Load()
	for _, b := range batches {
		total += bufferSize(b)
		go func() { errc <- p.Write(context.Background(), b) }()
	}
	waitFor(t, "all writes to be buffered", func() bool { return p.buffered.Load() == total })
	return errc
}

func TestProducerRetriesOnlyFailedEntries(t *testing.T) {
	var log callLog
	api := &fakeKinesis{putRecords: func(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		if log.add(in) == 0 {
			return log.respond(in, 1, 4), nil
		}
		return log.respond(in), nil
	}}
	p := newTestProducer(t, api, ProducerConfig{Linger: time.Hour, MaxRecordBytes: 100, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})

	batches := [][]Message{msgs("a", 2, 60), msgs("b", 2, 60), msgs("c", 2, 60)}
	errc := writeAll(t, p, batches...)
	// Close flushes the batch at once, whatever Linger says.
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range batches {
		if err := <-errc; err != nil {
			t.Errorf("Write: %v", err)
		}
	}

	calls, accepted := log.snapshot()
	if len(calls) != 2 {
		t.Fatalf("got %d calls, want 2", len(calls))
	}
	if len(calls[0]) != 6 {
		t.Fatalf("first call: got %d entries, want 6", len(calls[0]))
	}
	want := []types.PutRecordsRequestEntry{calls[0][1], calls[0][4]}
	if !sameEntries(calls[1], want) {
		t.Errorf("second call: got entries %v, want the failed ones %v", keys(calls[1]), keys(want))
	}
	checkAccepted(t, accepted, slices.Concat(batches...))
	if got := p.Stats().RetriedEntries; got != 2 {
		t.Errorf("Stats().RetriedEntries: got %d, want 2", got)
	}
}

func sameEntries(a, b []types.PutRecordsRequestEntry) bool {
	return slices.EqualFunc(a, b, func(x, y types.PutRecordsRequestEntry) bool {
		return bytes.Equal(x.Data, y.Data) && aws.ToString(x.PartitionKey) == aws.ToString(y.PartitionKey)
	})
}

func keys(es []types.PutRecordsRequestEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, aws.ToString(e.PartitionKey))
	}
	return out
}

func TestProducerRetriesCallErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"network error", errors.New("read tcp: connection reset by peer")},
		{"throttled", &smithy.GenericAPIError{Code: "LimitExceededException", Message: "Rate exceeded"}},
		{"timeout", context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log callLog
			api := &fakeKinesis{putRecords: func(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				if log.add(in) < 2 {
					return nil, tt.err
				}
				return log.respond(in), nil
			}}
			p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond, MaxRecordBytes: 100, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
			ms := msgs("m", 3, 60)
			if err := p.Write(context.Background(), ms); err != nil {
				t.Fatalf("Write: %v", err)
			}
			calls, accepted := log.snapshot()
			if len(calls) != 3 {
				t.Fatalf("got %d calls, want 3", len(calls))
			}
			for i := 1; i < len(calls); i++ {
				if !sameEntries(calls[i], calls[0]) {
					t.Errorf("call %d: got entries %v, want the whole first call %v", i, keys(calls[i]), keys(calls[0]))
				}
			}
			checkAccepted(t, accepted, ms)
		})
	}
}

func TestProducerGivesUp(t *testing.T) {
	tests := []struct {
		name      string
		respond   func(l *callLog, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error)
		wantCalls func(n int) bool
		wantOK    []string // messages that must still be written
		wantErr   error    // default ErrUnavailable
	}{
		{
			name: "call keeps failing",
			respond: func(_ *callLog, _ *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				return nil, errors.New("connection refused")
			},
			wantCalls: func(n int) bool { return n >= 2 },
		},
		{
			name: "entries keep failing",
			respond: func(l *callLog, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				var fail []int
				for i, e := range in.Records {
					if strings.HasPrefix(aws.ToString(e.PartitionKey), "bad") {
						fail = append(fail, i)
					}
				}
				return l.respond(in, fail...), nil
			},
			wantCalls: func(n int) bool { return n >= 2 },
			wantOK:    []string{"good"},
			// Refused at the shards' limits: the stream is full, not down.
			wantErr: ErrThrottled,
		},
		{
			name: "permanent error",
			respond: func(_ *callLog, _ *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				return nil, &smithy.GenericAPIError{Code: "ValidationException", Message: "1 validation error detected"}
			},
			wantCalls: func(n int) bool { return n == 1 },
		},
		{
			name: "results do not match entries",
			respond: func(_ *callLog, _ *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				return &kinesis.PutRecordsOutput{}, nil
			},
			wantCalls: func(n int) bool { return n >= 2 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log callLog
			api := &fakeKinesis{putRecords: func(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				log.add(in)
				return tt.respond(&log, in)
			}}
			p := newTestProducer(t, api, ProducerConfig{
				Linger: time.Millisecond, MaxRecordBytes: 100,
				RetryTimeout: 30 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
			})
			// One record succeeds in the "entries keep failing" case, yet the
			// Write fails: it needs all of its records.
			ms := []Message{msg("good", 60), msg("bad-1", 60), msg("bad-2", 60)}
			err := p.Write(context.Background(), ms)
			wantErr := tt.wantErr
			if wantErr == nil {
				wantErr = ErrUnavailable
			}
			if !errors.Is(err, wantErr) {
				t.Fatalf("Write: got %v, want %v", err, wantErr)
			}
			// The Write returns at the first give-up; the counters follow.
			waitFor(t, "the buffer to empty", func() bool { return p.buffered.Load() == 0 })
			calls, accepted := log.snapshot()
			if !tt.wantCalls(len(calls)) {
				t.Errorf("got %d calls", len(calls))
			}
			var want []Message
			for _, m := range ms {
				if slices.Contains(tt.wantOK, m.ID) {
					want = append(want, m)
				}
			}
			checkAccepted(t, accepted, want)
			if got, want := p.Stats().GaveUp, int64(len(ms)-len(want)); got != want {
				t.Errorf("Stats().GaveUp: got %d, want %d", got, want)
			}
		})
	}
}

func TestProducerWriteWaitsForAllCalls(t *testing.T) {
	tests := []struct {
		name    string
		last    error // answer to the call holding the Write's last message
		wantErr error
	}{
		{"all succeed", nil, nil},
		{"last call fails", &smithy.GenericAPIError{Code: "ValidationException"}, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log callLog
			firstDone, blocked, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
			api := &fakeKinesis{putRecords: func(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				log.add(in)
				if len(in.Records) == 500 {
					defer close(firstDone)
					return log.respond(in), nil
				}
				close(blocked)
				<-release
				if tt.last != nil {
					return nil, tt.last
				}
				return log.respond(in), nil
			}}
			p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond, MaxRecordBytes: 100})
			ms := msgs("m", 501, 60) // two calls: 500 records and 1
			errc := make(chan error, 1)
			go func() { errc <- p.Write(context.Background(), ms) }()
			<-firstDone
			<-blocked
			select {
			case err := <-errc:
				t.Fatalf("Write returned %v before its last record was written", err)
			default:
			}
			close(release)
			if err := <-errc; !errors.Is(err, tt.wantErr) {
				t.Errorf("Write: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestProducerBufferFull(t *testing.T) {
	var log callLog
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	api := &fakeKinesis{putRecords: func(_ context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		log.add(in)
		once.Do(func() { close(started) })
		<-release
		return log.respond(in), nil
	}}
	reg := prometheus.NewRegistry()
	p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond, MaxBufferBytes: 1000, Registerer: reg})

	a := []Message{msg("a-1", 300), msg("a-2", 300)}
	errA := make(chan error, 1)
	go func() { errA <- p.Write(context.Background(), a) }()
	<-started // a is being written: 600 bytes buffered

	// b's first message would fit, its second not: none of it is taken.
	b := []Message{msg("b-1", 200), msg("b-2", 300)}
	if err := p.Write(context.Background(), b); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("Write over the limit: got %v, want ErrBufferFull", err)
	}
	if got := p.buffered.Load(); got != 600 {
		t.Errorf("buffered after a refused Write: got %d, want 600", got)
	}
	c := []Message{msg("c-1", 400)} // exactly fills the buffer
	errC := writeAll(t, p, c)
	if got := p.buffered.Load(); got != 1000 {
		t.Errorf("buffered: got %d, want 1000", got)
	}
	close(release)
	if err := <-errA; err != nil {
		t.Errorf("Write a: %v", err)
	}
	if err := <-errC; err != nil {
		t.Errorf("Write c: %v", err)
	}
	_, accepted := log.snapshot()
	checkAccepted(t, accepted, slices.Concat(a, c))
	if got := metricValue(t, reg, "gateway_producer_buffer_full_total"); got != 1 {
		t.Errorf("gateway_producer_buffer_full_total: got %v, want 1", got)
	}
	if got := metricValue(t, reg, "gateway_producer_buffered_bytes"); got != 0 {
		t.Errorf("gateway_producer_buffered_bytes: got %v, want 0", got)
	}
}

func TestProducerClose(t *testing.T) {
	var log callLog
	p := newTestProducer(t, okAPI(&log), ProducerConfig{Linger: time.Hour})
	var batches [][]Message
	for i := range 5 {
		batches = append(batches, msgs(fmt.Sprintf("w%d", i), 3, 200))
	}
	errc := writeAll(t, p, batches...)
	if calls, _ := log.snapshot(); len(calls) != 0 {
		t.Fatalf("got %d calls before Close, want none within Linger", len(calls))
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range batches {
		if err := <-errc; err != nil {
			t.Errorf("Write: %v", err)
		}
	}
	_, accepted := log.snapshot()
	checkAccepted(t, accepted, slices.Concat(batches...))

	if err := p.Write(context.Background(), msgs("late", 1, 100)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: got %v, want ErrClosed", err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestProducerCloseTimeout(t *testing.T) {
	called := make(chan struct{})
	api := &fakeKinesis{putRecords: func(ctx context.Context, _ *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		close(called)
		<-ctx.Done() // a hung Kinesis
		return nil, ctx.Err()
	}}
	p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond})
	errc := make(chan error, 1)
	go func() { errc <- p.Write(context.Background(), msgs("m", 2, 100)) }()
	<-called
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: got %v, want context.DeadlineExceeded", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Write: got %v, want ErrClosed", err)
	}
	checkNoProducerGoroutines(t)
}

func TestProducerWriteCancelled(t *testing.T) {
	var log callLog
	called, release := make(chan struct{}), make(chan struct{})
	var callCtxErr error
	api := &fakeKinesis{putRecords: func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		log.add(in)
		close(called)
		<-release
		callCtxErr = ctx.Err()
		return log.respond(in), nil
	}}
	p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	ms := msgs("m", 3, 100)
	errc := make(chan error, 1)
	go func() { errc <- p.Write(ctx, ms) }()
	<-called
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Write: got %v, want context.Canceled", err)
	}
	close(release)
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if callCtxErr != nil {
		t.Errorf("PutRecords context ended with the writer's: %v", callCtxErr)
	}
	_, accepted := log.snapshot()
	checkAccepted(t, accepted, ms)
	if got := p.Stats().Events; got != 3 {
		t.Errorf("Stats().Events: got %d, want 3", got)
	}
}

// Why a Write's wait ran out decides its error: while the shards refuse
// entries, the stream is at capacity (ErrThrottled: 429 for the client);
// while calls fail, Kinesis is down (a plain deadline: 503); when calls
// only take long, the producer is at capacity (ErrBufferFull: 429).
func TestProducerWriteTimeoutCause(t *testing.T) {
	for _, tc := range []struct {
		name string
		put  func(l *callLog, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error)
		want error // besides the deadline; nil: the deadline alone
	}{
		{"throttled", func(l *callLog, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
			fail := make([]int, len(in.Records))
			for i := range fail {
				fail[i] = i
			}
			return l.respond(in, fail...), nil
		}, ErrThrottled},
		{"failing", func(l *callLog, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
			return nil, errors.New("connection reset")
		}, nil},
		{"slow", func(l *callLog, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
			time.Sleep(time.Second) // longer than the wait
			return l.respond(in), nil
		}, ErrBufferFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log callLog
			api := &fakeKinesis{putRecords: func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
				log.add(in)
				return tc.put(&log, in)
			}}
			p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond, RetryTimeout: 2 * time.Second,
				MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := p.Write(ctx, msgs("m", 2, 100))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Write: %v, want the deadline", err)
			}
			for _, e := range []error{ErrThrottled, ErrBufferFull, ErrUnavailable} {
				if errors.Is(err, e) != (e == tc.want) {
					t.Errorf("Write: %v; errors.Is %v = %v", err, e, errors.Is(err, e))
				}
			}
		})
	}
}

// A producer that is not keeping up (its oldest unsent batch waited longer
// than half the retry timeout) refuses new writes with ErrBufferFull at
// once, whatever the cause, rather than admit what would time out; the
// writes it admitted still complete.
func TestProducerRefusesWhileBehind(t *testing.T) {
	var log callLog
	release := make(chan struct{})
	api := &fakeKinesis{putRecords: func(ctx context.Context, in *kinesis.PutRecordsInput) (*kinesis.PutRecordsOutput, error) {
		log.add(in)
		<-release // a stalled call: the next batch queues behind it
		return log.respond(in), nil
	}}
	p := newTestProducer(t, api, ProducerConfig{Linger: time.Millisecond, MaxInFlight: 1, RetryTimeout: 2 * time.Second})
	errc := make(chan error, 2)
	go func() { errc <- p.Write(context.Background(), msgs("a", 1, 100)) }()
	waitFor(t, "the first call", func() bool { calls, _ := log.snapshot(); return len(calls) == 1 })
	go func() { errc <- p.Write(context.Background(), msgs("b", 1, 100)) }()
	waitFor(t, "the second write queued", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.batches) == 1
	})
	time.Sleep(1100 * time.Millisecond) // past max(RetryTimeout/2, 1s)
	if err := p.Write(context.Background(), msgs("c", 1, 100)); !errors.Is(err, ErrBufferFull) {
		t.Errorf("Write while behind: %v, want ErrBufferFull", err)
	}
	close(release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("an admitted write failed: %v", err)
		}
	}
	if err := p.Write(context.Background(), msgs("d", 1, 100)); err != nil {
		t.Errorf("Write after catching up: %v", err)
	}
}

func TestProducerInvalidMessage(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
	}{
		{"empty ID", Message{ID: "", Data: []byte(`{}`)}},
		{"ID too long", Message{ID: strings.Repeat("x", 257), Data: []byte(`{}`)}},
		{"ID not UTF-8", Message{ID: "\xff", Data: []byte(`{}`)}},
		{"data over the record limit", Message{ID: "x", Data: make([]byte, 1<<20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProducer(t, &fakeKinesis{}, ProducerConfig{})
			err := p.Write(context.Background(), []Message{msg("ok", 100), tt.msg})
			if !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("Write: got %v, want ErrInvalidMessage", err)
			}
			if got := p.buffered.Load(); got != 0 {
				t.Errorf("buffered: got %d, want 0", got)
			}
		})
	}
}

func TestProducerEmptyAndDoneWrites(t *testing.T) {
	p := newTestProducer(t, &fakeKinesis{}, ProducerConfig{})
	if err := p.Write(context.Background(), nil); err != nil {
		t.Errorf("empty Write: got %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Write(ctx, msgs("m", 1, 100)); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a done ctx: got %v, want context.Canceled", err)
	}
	if got := p.buffered.Load(); got != 0 {
		t.Errorf("buffered: got %d, want 0", got)
	}
}

func TestNewProducerConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ProducerConfig
		wantErr string // "" = valid
	}{
		{"defaults", ProducerConfig{StreamName: "s"}, ""},
		{"no stream", ProducerConfig{}, "StreamName"},
		{"negative linger", ProducerConfig{StreamName: "s", Linger: -1}, "Linger"},
		{"record too large", ProducerConfig{StreamName: "s", MaxRecordBytes: 1 << 20}, "MaxRecordBytes"},
		{"backoff inverted", ProducerConfig{StreamName: "s", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{"negative in flight", ProducerConfig{StreamName: "s", MaxInFlight: -1}, "MaxInFlight"},
	}
	enc, err := event.NewRecordEncoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProducer(&fakeKinesis{}, enc, tt.cfg, nil)
			if err == nil {
				if cerr := p.Close(context.Background()); cerr != nil {
					t.Errorf("Close: %v", cerr)
				}
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestProducerMetrics(t *testing.T) {
	var log callLog
	reg := prometheus.NewRegistry()
	p := newTestProducer(t, okAPI(&log), ProducerConfig{Linger: time.Millisecond, Registerer: reg})
	if err := p.Write(context.Background(), msgs("m", 10, 200)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	st := p.Stats()
	for name, want := range map[string]float64{
		"gateway_producer_events_written_total":    10,
		"gateway_producer_records_written_total":   float64(st.Records),
		"gateway_producer_bytes_written_total":     float64(st.Bytes),
		"gateway_producer_put_records_calls_total": float64(st.Calls),
		"gateway_producer_buffered_bytes":          0,
		"gateway_producer_give_ups_total":          0,
	} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	enc, _ := event.NewRecordEncoder()
	if _, err := NewProducer(&fakeKinesis{}, enc, ProducerConfig{StreamName: "s", Registerer: reg}, nil); err == nil {
		t.Error("second producer on the same registry: got no error, want a registration error")
	}
}

// metricValue sums the values of a counter or gauge over its labels.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
