package kcladapter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// kinesisServer answers GetRecords with n records of size bytes each and
// remembers the Limit of each request.
type kinesisServer struct {
	mu     sync.Mutex
	limits []int
	size   int
}

func (s *kinesisServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct{ Limit int }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".GetRecords") {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.limits = append(s.limits, in.Limit)
	size := s.size
	s.mu.Unlock()
	data := base64.StdEncoding.EncodeToString(make([]byte, size))
	var recs []string
	for i := 0; i < in.Limit; i++ {
		recs = append(recs, fmt.Sprintf(`{"Data":%q,"PartitionKey":"k","SequenceNumber":"%d"}`, data, i+1))
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	fmt.Fprintf(w, `{"Records":[%s],"NextShardIterator":"it","MillisBehindLatest":0}`, strings.Join(recs, ","))
}

// TestReadLimitFitsBudget: the first call assumes 1 MiB records; later
// calls ask for as many records as the shard's part of the budget holds
// at the size seen, never more than the library asked for.
func TestReadLimitFitsBudget(t *testing.T) {
	srv := &kinesisServer{size: 10 << 10}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	shards := 4
	l := &ReadLimit{Budget: 4 << 20, Shards: func() int { return shards }}
	kc := kinesis.New(kinesis.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, l.Option())
	get := func() {
		t.Helper()
		if _, err := kc.GetRecords(context.Background(), &kinesis.GetRecordsInput{ShardIterator: aws.String("it"), Limit: aws.Int32(2500)}); err != nil {
			t.Fatal(err)
		}
	}
	get()
	get()
	get()
	srv.mu.Lock()
	srv.size = 100 << 10 // a producer of larger records
	srv.mu.Unlock()
	get()
	get()
	get()
	srv.mu.Lock()
	lim := srv.limits
	srv.mu.Unlock()
	if lim[0] != 1 {
		t.Errorf("first call asked for %d records, want 1 (1 MiB per shard at the assumed 1 MiB each)", lim[0])
	}
	if lim[1] < 90 || lim[1] > 103 {
		t.Errorf("after 10 KiB records the call asked for %d, want about 100 (1 MiB / 10 KiB)", lim[1])
	}
	// Once larger records arrive the limit falls towards 10.
	if last := lim[len(lim)-1]; last > 10 {
		t.Errorf("after 100 KiB records the call asked for %d, want at most 10 (1 MiB / 100 KiB)", last)
	}
	for i, n := range lim {
		if n > 2500 || n < 1 {
			t.Errorf("call %d asked for %d records, outside 1..2500", i, n)
		}
	}
	t.Logf("limits asked: %v", lim)
}
