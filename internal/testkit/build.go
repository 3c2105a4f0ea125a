package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// builds caches the binaries Binary built, per test process: tests of a
// package that start the same binary many times should compile it once.
// It is the one package-level variable here, because a test binary is
// the cache's natural lifetime.
var builds sync.Map // build → func() (string, error)

type build struct {
	dir  string
	race bool
}

// Binary builds the main package at dir (relative to the calling test's
// package, as go build takes it) once per test process, with the race
// detector if race, and returns the binary's path. The binary lives in a
// temporary directory for the rest of the process.
func Binary(t testing.TB, dir string, race bool) string {
	t.Helper()
	f, _ := builds.LoadOrStore(build{dir, race}, sync.OnceValues(func() (string, error) {
		out, err := os.MkdirTemp("", "testkit-bin")
		if err != nil {
			return "", err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		bin := filepath.Join(out, filepath.Base(abs))
		args := []string{"build", "-o", bin}
		if race {
			args = append(args, "-race")
		}
		if b, err := exec.Command("go", append(args, dir)...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %v\n%s", dir, err, b)
		}
		return bin, nil
	}))
	bin, err := f.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
