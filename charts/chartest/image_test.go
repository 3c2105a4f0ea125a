package chartest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// There is no container engine here, so the image is checked without one:
// the Dockerfile's own `go build` line runs in a copy of the build context
// (with .dockerignore applied), the binaries must come out static, and the
// final stage must put them where the chart's commands expect them and
// run as the user the chart's securityContext names. The binaries built
// this way are the ones the env and probe tests run.

// dockerfile is the parsed Dockerfile: its stages in order.
type dockerfile struct {
	stages []stage
}

type stage struct {
	from  string // image reference
	name  string // AS name
	instr []instruction
}

type instruction struct {
	cmd  string // upper case: RUN, COPY, ...
	args string // the rest, continuation lines joined
}

func parseDockerfile(t testing.TB) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	var df dockerfile
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			var st stage
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.name = f[i+1]
					i++
				case st.from == "":
					st.from = f[i]
				}
			}
			df.stages = append(df.stages, st)
			return
		}
		if len(df.stages) == 0 {
			return // ARG before the first FROM
		}
		s := &df.stages[len(df.stages)-1]
		s.instr = append(s.instr, in)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a builder and a final stage", len(df.stages))
	}
	return df
}

// args of the stage's ARG instructions with defaults.
func (s stage) argDefaults() map[string]string {
	m := map[string]string{}
	for _, in := range s.instr {
		if in.cmd == "ARG" {
			k, v, _ := strings.Cut(in.args, "=")
			m[k] = v
		}
	}
	return m
}

// shellWords splits a command line as sh would for the simple lines a
// Dockerfile RUN uses: blanks separate, quotes group and are removed.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c in %q", c, s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == ';' || c == '&' || c == '|' || c == '`' || c == '$' && i+1 < len(s) && s[i+1] == '(':
			return nil, fmt.Errorf("shell syntax %q in %q is beyond this test's parser: keep the go build line simple", c, s)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// goBuild is the builder stage's `go build` line.
type goBuild struct {
	env    []string // VAR=value before the command, ${ARG}s expanded
	args   []string // after "go build", with -o's value separate
	outDir string   // the -o directory
}

func dockerGoBuild(t testing.TB, df dockerfile) goBuild {
	t.Helper()
	build := df.stages[0]
	argVals := build.argDefaults()
	// BuildKit sets TARGETOS/TARGETARCH to the target platform; here the
	// target is this machine, so the binaries can run.
	argVals["TARGETOS"], argVals["TARGETARCH"] = runtime.GOOS, runtime.GOARCH
	var found []goBuild
	for _, in := range build.instr {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		words, err := shellWords(in.args)
		if err != nil {
			t.Fatalf("Dockerfile RUN: %v", err)
		}
		var gb goBuild
		i := 0
		for ; i < len(words) && strings.HasPrefix(words[i], "--"); i++ { // RUN --mount=...
		}
		envRE := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
		for ; i < len(words) && envRE.MatchString(words[i]); i++ {
			gb.env = append(gb.env, os.Expand(words[i], func(k string) string { return argVals[k] }))
		}
		if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
			t.Fatalf("Dockerfile RUN %q: want [VAR=value ...] go build ...", in.args)
		}
		for _, w := range words[i+2:] {
			gb.args = append(gb.args, os.Expand(w, func(k string) string { return argVals[k] }))
		}
		for j, a := range gb.args {
			if a == "-o" && j+1 < len(gb.args) {
				gb.outDir = gb.args[j+1]
			}
		}
		found = append(found, gb)
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: %d RUN lines with go build in the first stage, want 1", len(found))
	}
	return found[0]
}

// dockerignore reads .dockerignore. Only the pattern forms it uses are
// supported (path, dir, *, **/, no "!" exceptions); anything else fails
// the test instead of being matched wrongly.
func dockerignore(t testing.TB) []*regexp.Regexp {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatalf("read .dockerignore: %v", err)
	}
	var out []*regexp.Regexp
	for _, line := range strings.Split(string(b), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.ContainsAny(p, "![?\\") {
			t.Fatalf(".dockerignore pattern %q: this test supports only plain paths, * and **/", p)
		}
		p = path.Clean(strings.TrimPrefix(p, "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("$")
		out = append(out, regexp.MustCompile(re.String()))
	}
	return out
}

// ignored reports whether rel or one of its parent directories matches.
func ignored(patterns []*regexp.Regexp, rel string) bool {
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		for _, re := range patterns {
			if re.MatchString(p) {
				return true
			}
		}
	}
	return false
}

// copyContext copies the repo into dir as `docker build .` would send it.
func copyContext(t testing.TB, dir string) {
	t.Helper()
	patterns := dockerignore(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignored(patterns, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, dst)
		}
		return nil // symlinks, sockets: not part of a Go build
	})
	if err != nil {
		t.Fatalf("copy build context: %v", err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// built are the binaries, built once per test run by buildBinaries.
var built struct {
	once            sync.Once
	gateway, worker string
	err             error
	took            time.Duration
}

// binaries builds cmd/gateway and cmd/worker of the repo as the Dockerfile
// does, in a copy of the Docker build context, and returns their paths.
func binaries(t testing.TB) (gateway, worker string) {
	t.Helper()
	built.once.Do(func() {
		start := time.Now()
		defer func() { built.took = time.Since(start) }()
		// Until the end: a t.Fatal below ends this func early, and later
		// callers must not get empty paths.
		built.err = errors.New("building the binaries failed in an earlier test; see its log")
		gb := dockerGoBuild(t, parseDockerfile(t))
		ctxDir, err := os.MkdirTemp("", "chartest-context-")
		if err != nil {
			built.err = err
			return
		}
		// Not t.TempDir: the binaries outlive the first test that asks.
		defer os.RemoveAll(ctxDir)
		copyContext(t, ctxDir)
		out, err := os.MkdirTemp("", "chartest-bin-")
		if err != nil {
			built.err = err
			return
		}
		args := []string{"build"}
		for _, a := range gb.args {
			if a == gb.outDir {
				a = out + string(os.PathSeparator)
			}
			args = append(args, a)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = ctxDir
		cmd.Env = append(os.Environ(), gb.env...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(out)
			built.err = fmt.Errorf("the Dockerfile's build, %s go %s, in the build context (.dockerignore applied): %v\n%s",
				strings.Join(gb.env, " "), strings.Join(args, " "), err, msg)
			return
		}
		built.gateway, built.worker = filepath.Join(out, "gateway"), filepath.Join(out, "worker")
		built.err = nil
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.gateway, built.worker
}

func TestImageBinariesAreStatic(t *testing.T) {
	gw, wk := binaries(t)
	t.Logf("built both binaries as the Dockerfile does in %v", built.took.Round(time.Millisecond))
	for _, bin := range []string{gw, wk} {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s has a %v program header: not static, it would not start on distroless/static", filepath.Base(bin), p.Type)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", filepath.Base(bin), libs)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s has a symbol table: -ldflags -s did not apply", filepath.Base(bin))
		}
		f.Close()
	}
	df := parseDockerfile(t)
	gb := dockerGoBuild(t, df)
	if !slices.Contains(gb.env, "CGO_ENABLED=0") || !slices.Contains(gb.args, "-trimpath") {
		t.Errorf("Dockerfile go build: env %v args %v, want CGO_ENABLED=0 and -trimpath", gb.env, gb.args)
	}
	// The image's binaries say which build they are: the VERSION build
	// argument (scripts/image.sh passes the tag) is stamped into both.
	version := df.stages[0].argDefaults()["VERSION"]
	if version == "" {
		t.Fatal("Dockerfile: the build stage has no ARG VERSION=<default>")
	}
	for _, c := range []struct{ name, bin, flag string }{{"gateway", gw, "-version"}, {"worker", wk, "version"}} {
		out, err := exec.Command(c.bin, c.flag).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), c.name+" "+version+" (") {
			t.Errorf("%s %s = %q, %v; want %q first", c.name, c.flag, out, err, c.name+" "+version)
		}
	}
}

// TestImageFinalStage: the final stage is minimal and non-root, and holds
// the binaries where the chart's commands point, for the chart's user.
func TestImageFinalStage(t *testing.T) {
	df := parseDockerfile(t)
	final := df.stages[len(df.stages)-1]
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", final.from)
	}
	builder := df.stages[0]
	if !strings.HasPrefix(builder.from, "golang:") {
		t.Errorf("builder FROM %s, want golang:", builder.from)
	}
	gb := dockerGoBuild(t, df)
	files := map[string]bool{}
	var user string
	for _, in := range final.instr {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			var from string
			var paths []string
			for _, w := range f {
				if strings.HasPrefix(w, "--from=") {
					from = strings.TrimPrefix(w, "--from=")
				} else if !strings.HasPrefix(w, "--") {
					paths = append(paths, w)
				}
			}
			if from != builder.name || len(paths) < 2 {
				continue
			}
			dst := paths[len(paths)-1]
			for _, src := range paths[:len(paths)-1] {
				if path.Dir(src) != path.Clean(gb.outDir) {
					t.Errorf("COPY %s: not an output of the go build (-o %s)", src, gb.outDir)
				}
				if strings.HasSuffix(dst, "/") {
					files[path.Join(dst, path.Base(src))] = true
				} else {
					files[dst] = true
				}
			}
		case "USER":
			user = in.args
		}
	}
	r, ms := renderSet(t, valuesSets[0])
	_ = r
	for _, component := range []string{"gateway", "worker"} {
		d := deployment(t, ms, component)
		c := container(t, d, component)
		if !files[c.Command[0]] {
			t.Errorf("%s command %s is not in the image (final stage copies %v)", d.Name, c.Command[0], files)
		}
		uid := fmt.Sprint(*c.SecurityContext.RunAsUser)
		gid := fmt.Sprint(*c.SecurityContext.RunAsGroup)
		if user != uid+":"+gid && user != uid {
			t.Errorf("Dockerfile USER %q, but the chart runs %s as %s:%s", user, d.Name, uid, gid)
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("Dockerfile USER %q: want a numeric non-root user", user)
	}
}

func TestDockerignoreMatcher(t *testing.T) {
	patterns := dockerignore(t)
	for rel, want := range map[string]bool{
		"go.mod":                      false,
		"cmd/gateway/main.go":         false,
		"gateway/handler.go":          false,
		"gateway/handler_test.go":     true,
		".git/HEAD":                   true,
		"bin/gateway":                 true,
		"charts/telemetry/Chart.yaml": true,
		"internal/devstack/node/node_modules/x/index.js": true,
	} {
		if got := ignored(patterns, rel); got != want {
			t.Errorf("ignored(%s) = %v, want %v", rel, got, want)
		}
	}
}
