package devstack

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// ForTest returns a stack for an integration test. When the DEVSTACK_*_ENDPOINT
// variables are set (make test starts one shared stack) it attaches to them; otherwise
// it starts a private stack that is closed in t.Cleanup. Tests sharing a stack must
// name their resources with UniqueName. It fails the test if the stack cannot start.
func ForTest(t testing.TB) *Stack {
	t.Helper()
	e, ok, err := EndpointsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		return Attach(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	defer cancel()
	s, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Main runs a package's tests against one stack, so that each ForTest call attaches to
// it instead of starting a node process per test. It starts the stack unless the
// DEVSTACK_*_ENDPOINT variables are already set, exports them, and returns m.Run's exit
// code. Use it in an integration-tagged file:
//
//	func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }
func Main(m *testing.M) int {
	if _, ok, err := EndpointsFromEnv(); err != nil || ok {
		return m.Run() // ForTest reports a partial environment
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	s, err := Start(ctx, Config{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, kv := range s.Endpoints().Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	code := m.Run()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = cmp.Or(code, 1)
	}
	return code
}

// maxNameLen is the shortest limit of the three kinds of name: S3 bucket names are
// 3-63 characters (Kinesis streams allow 128, DynamoDB tables 255).
const maxNameLen = 63

// UniqueName returns a name that is valid as a Kinesis stream, DynamoDB table and S3
// bucket name (lowercase letters, digits and hyphens, starting and ending with a letter
// or digit, at most 63 characters) and unique across tests sharing one stack: prefix
// and the test's name, shortened if needed, then a random suffix.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("devstack: read random suffix: %v", err)
	}
	suffix := "-" + hex.EncodeToString(b[:])
	base := sanitizeName(prefix + "-" + t.Name())
	switch {
	case base == "":
		base = "t" // the suffix alone would start with a hyphen
	case strings.HasPrefix(base, "xn--"), strings.HasPrefix(base, "sthree-"):
		base = "t-" + base // S3 reserves these prefixes
	}
	if len(base) > maxNameLen-len(suffix) {
		base = strings.TrimRight(base[:maxNameLen-len(suffix)], "-")
	}
	return base + suffix
}

// sanitizeName lowercases s, turns every run of other characters into one hyphen and
// trims hyphens at both ends.
func sanitizeName(s string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			hyphen = false
		} else if !hyphen {
			b.WriteByte('-')
			hyphen = true
		}
	}
	return strings.Trim(b.String(), "-")
}
