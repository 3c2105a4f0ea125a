package httpsink

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/processor"
)

func TestPostClassifiesAnswers(t *testing.T) {
	const secret = "s3cr/t"
	cases := []struct {
		name      string
		code      int
		header    map[string]string
		refused   bool
		wantDelay time.Duration
	}{
		{"2xx", 204, nil, false, 0},
		{"400 refused", 400, nil, true, 0},
		{"401 refused", 401, nil, true, 0},
		{"408 transient", 408, nil, false, 0},
		{"429 with Retry-After", 429, map[string]string{"Retry-After": "3"}, false, 3 * time.Second},
		{"503 without delay", 503, nil, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.code)
				_, _ = w.Write([]byte("echo " + r.URL.RawQuery)) // a careless server quoting the secret
			}))
			defer srv.Close()
			c, err := NewClient(Config{Package: "x", Sink: "x", Endpoint: srv.URL + "/", HTTPClient: srv.Client(), Secrets: []string{secret}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Post(context.Background(), c.Endpoint()+"/p?k="+strings.ReplaceAll(secret, "/", "%2F"), nil, []byte("{}"), 1)
			if tc.code < 300 {
				if err != nil {
					t.Fatalf("Post: %v, want nil", err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Fatalf("Post: %v, want a StatusError %d", err, tc.code)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3cr%2Ft") {
				t.Errorf("error %q quotes the secret", err)
			}
			if got := Refused(err); got != tc.refused {
				t.Errorf("Refused = %t, want %t", got, tc.refused)
			}
			if got := processor.RetryAfterOf(err); got != tc.wantDelay {
				t.Errorf("RetryAfterOf = %v, want %v", got, tc.wantDelay)
			}
		})
	}
}

func TestNewClientChecksSettings(t *testing.T) {
	for _, cfg := range []Config{
		{Package: "x", Endpoint: "ftp://host"},
		{Package: "x", Endpoint: "http://"},
		{Package: "x", Endpoint: "https://host", Timeout: -time.Second},
	} {
		if _, err := NewClient(cfg); err == nil || !strings.HasPrefix(err.Error(), "x: new sink: ") {
			t.Errorf("NewClient(%+v) = %v, want an error naming the setting", cfg, err)
		}
	}
	c, err := NewClient(Config{Package: "x", Endpoint: "https://host/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint() != "https://host" || c.Timeout() != DefaultTimeout {
		t.Errorf("Endpoint, Timeout = %q, %v; want https://host, %v", c.Endpoint(), c.Timeout(), DefaultTimeout)
	}
}

func TestWriterResumesOnlyTheSameRecords(t *testing.T) {
	errClosed := errors.New("closed")
	w := Writer[int]{ErrClosed: errClosed}
	recs := []processor.Record{{SequenceNumber: "1"}, {SequenceNumber: "2"}}
	p, retry, err := w.Resume(recs)
	if err != nil || retry {
		t.Fatalf("first Resume: retry %t, %v", retry, err)
	}
	*p = 7
	if p2, retry, _ := w.Resume(recs); !retry || *p2 != 7 {
		t.Errorf("Resume of the same records: retry %t, progress %d; want true, 7", retry, *p2)
	}
	if _, retry, _ := w.Resume(recs[:1]); retry {
		t.Error("Resume of other records resumed")
	}
	w.Settled(recs)
	if w.Durable() != "2" || w.Pending() != nil {
		t.Errorf("after Settled: Durable %q, Pending %v; want 2, nil", w.Durable(), w.Pending())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Resume(recs); err != errClosed {
		t.Errorf("Resume after Close: %v, want ErrClosed", err)
	}
	if err := w.Flush(context.Background()); err != errClosed {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
}
