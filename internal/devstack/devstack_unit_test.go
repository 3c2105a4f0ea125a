package devstack

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

func TestUniqueName(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
	}{
		{"plain", "stream"},
		{"empty prefix", ""},
		{"punctuation and case", "My_Stream.v2/Ü"},
		{"reserved xn prefix", "xn--abc"},
		{"reserved sthree prefix", "sthree-x"},
		{"very long", strings.Repeat("long-prefix-", 20)},
		{"only symbols", "___"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := UniqueName(t, tc.prefix), UniqueName(t, tc.prefix)
			for _, n := range []string{a, b} {
				if !validName.MatchString(n) {
					t.Errorf("UniqueName(%q) = %q: got an invalid name, want %s", tc.prefix, n, validName)
				}
				if strings.HasPrefix(n, "xn--") || strings.HasPrefix(n, "sthree-") {
					t.Errorf("UniqueName(%q) = %q: got a reserved S3 prefix", tc.prefix, n)
				}
			}
			if a == b {
				t.Errorf("UniqueName(%q) twice: got %q both times, want different names", tc.prefix, a)
			}
		})
	}
}

func TestLoopbackDialerRefuses(t *testing.T) {
	dial := loopbackDialer(&net.Dialer{Timeout: time.Second})
	for _, addr := range []string{
		"kinesis.us-east-1.amazonaws.com:443",
		"169.254.169.254:80", // IMDS
		"10.0.0.1:4567",
		"[2001:db8::1]:443",
		"127.example.com:80",
	} {
		t.Run(addr, func(t *testing.T) {
			conn, err := dial(context.Background(), "tcp", addr)
			if conn != nil {
				conn.Close()
			}
			var nl *NonLoopbackError
			if !errors.As(err, &nl) {
				t.Fatalf("dial %s: got %v, want *NonLoopbackError", addr, err)
			}
			if want := `refusing non-loopback address "` + addr + `"`; err.Error() != want {
				t.Errorf("error: got %q, want %q", err, want)
			}
		})
	}
}

func TestLoopbackDialerAllows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dial := loopbackDialer(&net.Dialer{Timeout: time.Second})
	for _, host := range []string{"127.0.0.1", "localhost", "LOCALHOST", "::ffff:127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			conn, err := dial(context.Background(), "tcp", net.JoinHostPort(host, port))
			if err != nil {
				t.Fatalf("dial %s: got %v, want a connection", host, err)
			}
			conn.Close()
		})
	}
}

// TestAWSConfigRefusesRealAWS checks that a client without an endpoint fails at once
// instead of reaching real AWS: no DNS lookup, no connection, no retries.
func TestAWSConfigRefusesRealAWS(t *testing.T) {
	// Not read by NewAWSConfig; set to prove it.
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:1")
	t.Setenv("AWS_REGION", "eu-west-1")
	cfg := NewAWSConfig("")
	if cfg.Region != DefaultRegion {
		t.Errorf("Region: got %q, want %q", cfg.Region, DefaultRegion)
	}
	kc := kinesis.NewFromConfig(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	var nl *NonLoopbackError
	if !errors.As(err, &nl) {
		t.Fatalf("ListStreams without endpoint: got %v, want *NonLoopbackError", err)
	}
	if want := "kinesis.us-east-1.amazonaws.com:443"; nl.Addr != want {
		t.Errorf("refused address: got %q, want %q", nl.Addr, want)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ListStreams took %s, want an immediate failure (no retries)", d)
	}
}

func TestEndpointsFromEnv(t *testing.T) {
	e := Endpoints{Kinesis: "http://127.0.0.1:1", DynamoDB: "http://127.0.0.1:2", S3: "http://127.0.0.1:3"}
	tests := []struct {
		name    string
		env     []string
		wantOK  bool
		wantErr bool
	}{
		{"none", nil, false, false},
		{"all", e.Env(), true, false},
		{"partial", e.Env()[:2], false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{EnvKinesisEndpoint, EnvDynamoDBEndpoint, EnvS3Endpoint} {
				t.Setenv(k, "")
			}
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			got, ok, err := EndpointsFromEnv()
			if ok != tc.wantOK || (err != nil) != tc.wantErr {
				t.Fatalf("got ok=%v err=%v, want ok=%v err=%v", ok, err, tc.wantOK, tc.wantErr)
			}
			if ok && got != e {
				t.Errorf("got %+v, want %+v", got, e)
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	e := Endpoints{Kinesis: "http://127.0.0.1:1", DynamoDB: "http://127.0.0.1:2", S3: "http://127.0.0.1:3"}
	got := map[string]string{}
	for _, kv := range e.ChildEnv() {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for k, want := range map[string]string{
		EnvKinesisEndpoint:          e.Kinesis,
		"AWS_ENDPOINT_URL_KINESIS":  e.Kinesis,
		"AWS_ENDPOINT_URL_DYNAMODB": e.DynamoDB,
		"AWS_ENDPOINT_URL_S3":       e.S3,
		"AWS_ACCESS_KEY_ID":         "S3RVER",
		"AWS_SECRET_ACCESS_KEY":     "S3RVER",
		"AWS_REGION":                "us-east-1",
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		if got[k] != want {
			t.Errorf("%s: got %q, want %q", k, got[k], want)
		}
	}
}

func TestStartWithoutNodeModules(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "emulators.js"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{NodeDir: dir})
	if err == nil || !strings.Contains(err.Error(), "npm ci --prefix internal/devstack/node") {
		t.Fatalf("Start without node_modules: got %v, want an error naming npm ci", err)
	}
}

func TestLineWriter(t *testing.T) {
	var rest strings.Builder
	w := &lineWriter{line: make(chan []byte, 1), rest: &rest}
	for _, chunk := range []string{`{"kin`, `esis":1}`, "\nafter ", "more\n"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := string(<-w.line), `{"kinesis":1}`; got != want {
		t.Errorf("line: got %q, want %q", got, want)
	}
	if got, want := rest.String(), "after more\n"; got != want {
		t.Errorf("rest: got %q, want %q", got, want)
	}
}
