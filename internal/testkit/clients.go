package testkit

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// ClientPayload returns testdata/clients/name, a payload a real client
// sent (Netlify Build, the Segment SDKs), from the repository root
// whichever package's test asks.
func ClientPayload(t testing.TB, name string) []byte {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testkit: cannot locate the repository")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "clients", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
