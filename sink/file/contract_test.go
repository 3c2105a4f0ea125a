package file

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/buildtelemetry/pipeline/internal/testkit/sinktest"
	"github.com/buildtelemetry/pipeline/processor"
)

// The file sink keeps the Writer contract, against a real file. It
// refuses no single event, so there is no partial case.
func TestWriterContract(t *testing.T) {
	var path string
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) processor.Sink {
			path = filepath.Join(t.TempDir(), "events.ndjson")
			s, err := New(Config{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Delivered: func(t *testing.T) int {
			b, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				return 0
			}
			if err != nil {
				t.Fatal(err)
			}
			return bytes.Count(b, []byte("\n"))
		},
	})
}
