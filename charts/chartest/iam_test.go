package chartest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The IAM policies in deploy/iam grant each binary exactly the AWS actions
// its code can call, on the resources it calls them on. The calls are
// found in the Go source of every package the binary links (go list -deps),
// by the SDK types they name: an operation X of service S is called
// through S.XInput, S.NewXPaginator or a waiter, whichever way the code
// wraps the client. That also finds calls behind the small interfaces the
// style guide asks for, and the KCL library's own calls.

const (
	modulePath = "github.com/buildtelemetry/pipeline"
	sdkService = "github.com/aws/aws-sdk-go-v2/service/"
	kclWorker  = "github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
)

// resource is what an AWS call acts on, named by the environment variable
// that configures it (the same name is the policy's placeholder).
type resource struct {
	service string // kinesis, dynamodb, s3
	name    string // KINESIS_STREAM, WORKER_LEASE_TABLE, DEADLETTER_BUCKET
	// prefixes are, for S3, the variables naming the key prefixes the
	// package writes under: object actions are granted under those only.
	prefixes []string
}

var (
	stream     = resource{service: "kinesis", name: "KINESIS_STREAM"}
	leaseTable = resource{service: "dynamodb", name: "WORKER_LEASE_TABLE"}
	countTable = resource{service: "dynamodb", name: "DYNAMODB_COUNTS_TABLE"}
	deadLetter = resource{service: "s3", name: "DEADLETTER_BUCKET", prefixes: []string{"DEADLETTER_PREFIX"}}
	events     = resource{service: "s3", name: "S3_BUCKET", prefixes: []string{"S3_PREFIX", "S3_ERROR_PREFIX"}}
)

// packageResources says, for each package that calls AWS, on which
// resource each service's calls act. A package that calls AWS and is not
// here fails the test: say which resource it uses, and grant the actions
// the failure lists in the binary's policy.
var packageResources = map[string]map[string]resource{
	modulePath + "/cmd/gateway":         {"kinesis": stream},
	modulePath + "/cmd/worker":          {"kinesis": stream}, // the retention gauge
	modulePath + "/gateway":             {"kinesis": stream},
	modulePath + "/checkpoint":          {"kinesis": stream, "dynamodb": leaseTable},
	modulePath + "/deadletter":          {"s3": deadLetter},
	modulePath + "/internal/streamread": {"kinesis": stream}, // worker tail
	modulePath + "/sink/s3":             {"s3": events},
	modulePath + "/sink/dynamodb":       {"dynamodb": countTable},
	modulePath + "/counts":              {"dynamodb": countTable}, // worker counts
	modulePath + "/internal/kcladapter": {"kinesis": stream},      // ReadLimit adjusts the library's GetRecords
	kclWorker:                           {"kinesis": stream},
}

// sharedResources are packages whose calls act on whichever resource
// their callers name: each call needs its grant on every one of them.
var sharedResources = map[string]map[string][]resource{
	modulePath + "/internal/ddbtable": {"dynamodb": {leaseTable, countTable}}, // table setup of checkpoint and sink/dynamodb
}

// skipped are files and packages of the KCL library whose AWS calls the
// worker never makes, with the reason; each reason is checked below.
var (
	// Enhanced fan-out consumers (SubscribeToShard, RegisterStreamConsumer,
	// DescribeStream...): only with EnableEnhancedFanOutConsumer, which
	// cmd/worker never sets.
	// SubscribeToShard is also in the consumer interface the polling
	// consumer shares (common-shard-consumer.go), which calls only
	// GetShardIterator and GetRecords.
	kclFanOutFiles = []string{"worker-fan-out.go", "fan-out-shard-consumer.go"}
	kclFanOutOps   = []string{"SubscribeToShard"}
	// The library's DynamoDB checkpointer is replaced by ours
	// (WithCheckpointer), its CloudWatch metrics by our Prometheus adapter
	// (WithMonitoringService).
	kclReplaced = map[string]string{
		"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint":         "WithCheckpointer(",
		"github.com/vmware/vmware-go-kcl-v2/clientlibrary/metrics/cloudwatch": "WithMonitoringService(",
	}
)

// s3Actions maps S3 operations to IAM actions; bucket marks actions on the
// bucket ARN rather than on object ARNs.
var s3Actions = map[string]struct {
	actions []string
	bucket  bool
}{
	"PutObject":               {[]string{"s3:PutObject"}, false},
	"GetObject":               {[]string{"s3:GetObject"}, false},
	"HeadObject":              {[]string{"s3:GetObject"}, false},
	"DeleteObject":            {[]string{"s3:DeleteObject"}, false},
	"DeleteObjects":           {[]string{"s3:DeleteObject"}, false},
	"CopyObject":              {[]string{"s3:GetObject", "s3:PutObject"}, false},
	"CreateMultipartUpload":   {[]string{"s3:PutObject"}, false},
	"UploadPart":              {[]string{"s3:PutObject"}, false},
	"CompleteMultipartUpload": {[]string{"s3:PutObject"}, false},
	"AbortMultipartUpload":    {[]string{"s3:AbortMultipartUpload"}, false},
	"ListParts":               {[]string{"s3:ListMultipartUploadParts"}, false},
	"ListObjectsV2":           {[]string{"s3:ListBucket"}, true},
	"ListObjects":             {[]string{"s3:ListBucket"}, true},
	"HeadBucket":              {[]string{"s3:ListBucket"}, true},
	"ListMultipartUploads":    {[]string{"s3:ListBucketMultipartUploads"}, true},
}

// waiters name the operation each SDK waiter polls.
var waiters = map[string]string{
	"dynamodb.TableExists": "DescribeTable", "dynamodb.TableNotExists": "DescribeTable",
	"kinesis.StreamExists": "DescribeStream", "kinesis.StreamNotExists": "DescribeStream",
	"s3.ObjectExists": "HeadObject", "s3.ObjectNotExists": "HeadObject",
	"s3.BucketExists": "HeadBucket", "s3.BucketNotExists": "HeadBucket",
}

// grant is one action on one resource; the key of both sides of the check.
type grant struct {
	action string // kinesis:PutRecords
	arn    string // arn:aws:kinesis:${AWS_REGION}:${AWS_ACCOUNT_ID}:stream/${KINESIS_STREAM}
}

// arnsOf are the ARNs (with placeholders) an action on r acts on.
func arnsOf(r resource, bucketLevel bool) []string {
	switch r.service {
	case "kinesis":
		return []string{"arn:aws:kinesis:${AWS_REGION}:${AWS_ACCOUNT_ID}:stream/${" + r.name + "}"}
	case "dynamodb":
		return []string{"arn:aws:dynamodb:${AWS_REGION}:${AWS_ACCOUNT_ID}:table/${" + r.name + "}"}
	case "s3":
		if bucketLevel {
			return []string{"arn:aws:s3:::${" + r.name + "}"}
		}
		var out []string
		for _, p := range r.prefixes {
			out = append(out, "arn:aws:s3:::${"+r.name+"}/${"+p+"}*")
		}
		return out
	}
	return []string{"?"}
}

// call is one AWS operation named in the source.
type call struct {
	pkg, service, op, pos string
}

// awsCalls parses a package's files and returns the operations they name.
func awsCalls(pkg, dir string, files []string) ([]call, error) {
	var out []call
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		services := map[string]string{} // local import name -> service
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			svc, ok := strings.CutPrefix(p, sdkService)
			if !ok || strings.Contains(svc, "/") {
				continue
			}
			local := svc
			if imp.Name != nil {
				local = imp.Name.Name
			}
			services[local] = svc
		}
		if len(services) == 0 {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			svc, ok := services[id.Name]
			if !ok {
				return true
			}
			name := sel.Sel.Name
			var op string
			switch {
			case strings.HasSuffix(name, "Input") && len(name) > len("Input"):
				op = strings.TrimSuffix(name, "Input")
			case strings.HasPrefix(name, "New") && strings.HasSuffix(name, "Paginator"):
				op = strings.TrimSuffix(strings.TrimPrefix(name, "New"), "Paginator")
			case strings.HasPrefix(name, "New") && strings.HasSuffix(name, "Waiter"):
				w := svc + "." + strings.TrimSuffix(strings.TrimPrefix(name, "New"), "Waiter")
				if op = waiters[w]; op == "" {
					op = "unknown waiter " + w
				}
			default:
				return true
			}
			out = append(out, call{pkg: pkg, service: svc, op: op, pos: fset.Position(sel.Pos()).String()})
			return true
		})
	}
	return out, nil
}

// listDeps is `go list -deps` of a main package, as built for the image.
func listDeps(t testing.TB, mainPkg string) [][4]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if not .Standard}}{{.ImportPath}}{{"\t"}}{{.Dir}}{{"\t"}}{{join .GoFiles " "}}{{"\t"}}{{with .Module}}{{.Path}}{{end}}{{end}}`,
		mainPkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", mainPkg, err, stderr.String())
	}
	var pkgs [][4]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		pkgs = append(pkgs, [4]string{f[0], f[1], f[2], f[3]})
	}
	return pkgs
}

// codeGrants is every (action, ARN) the binary's code can call, with where.
func codeGrants(t *testing.T, mainPkg string) map[grant][]string {
	t.Helper()
	want := map[grant][]string{}
	for _, p := range listDeps(t, mainPkg) {
		importPath, dir, files, module := p[0], p[1], strings.Fields(p[2]), p[3]
		if strings.HasPrefix(module, "github.com/aws/") {
			continue // the SDK itself
		}
		if importPath == modulePath+"/internal/devstack" {
			t.Errorf("%s links internal/devstack, the emulator launcher", mainPkg)
		}
		if importPath == kclWorker {
			files = slices.DeleteFunc(files, func(f string) bool { return slices.Contains(kclFanOutFiles, f) })
		}
		calls, err := awsCalls(importPath, dir, files)
		if err != nil {
			t.Fatalf("parse %s: %v", importPath, err)
		}
		if importPath == kclWorker {
			calls = slices.DeleteFunc(calls, func(c call) bool { return slices.Contains(kclFanOutOps, c.op) })
		}
		if len(calls) == 0 {
			continue
		}
		if marker, ok := kclReplaced[importPath]; ok {
			if !sourceContains(t, filepath.Join(repoRoot, "cmd", "worker"), marker) {
				t.Errorf("%s calls AWS and cmd/worker no longer calls %s to replace it: its calls now count", importPath, marker)
			} else {
				continue
			}
		}
		resources, known := packageResources[importPath]
		var unmapped []string
		for _, c := range calls {
			rs := sharedResources[importPath][c.service]
			if r, ok := resources[c.service]; known && ok {
				rs = append(rs, r)
			}
			if len(rs) == 0 {
				if op := c.service + " " + c.op; !slices.Contains(unmapped, op) {
					unmapped = append(unmapped, op)
				}
				continue
			}
			var actions []string
			bucketLevel := false
			switch c.service {
			case "kinesis", "dynamodb":
				if strings.HasPrefix(c.op, "Transact") || strings.HasPrefix(c.op, "unknown") {
					t.Errorf("%s: %s %s: map it to IAM actions in iam_test.go", c.pos, c.service, c.op)
					continue
				}
				actions = []string{c.service + ":" + c.op}
			case "s3":
				m, ok := s3Actions[c.op]
				if !ok {
					t.Errorf("%s: s3 %s: add its IAM actions to s3Actions in iam_test.go", c.pos, c.op)
					continue
				}
				actions, bucketLevel = m.actions, m.bucket
			default:
				t.Errorf("%s: service %s: teach iam_test.go its ARNs and actions", c.pos, c.service)
				continue
			}
			for _, r := range rs {
				for _, a := range actions {
					for _, arn := range arnsOf(r, bucketLevel) {
						g := grant{a, arn}
						want[g] = append(want[g], c.pos)
					}
				}
			}
		}
		if len(unmapped) > 0 {
			sort.Strings(unmapped)
			t.Errorf("%s calls %s, but packageResources in iam_test.go does not say on which resource (stream, table, bucket): add it, then the test names the grants deploy/iam needs",
				importPath, strings.Join(unmapped, ", "))
		}
	}
	if !sourceContains(t, filepath.Join(repoRoot, "cmd", "worker"), "WithCheckpointer(") || sourceContains(t, filepath.Join(repoRoot, "cmd", "worker"), "EnhancedFanOut") {
		t.Errorf("cmd/worker must replace the KCL checkpointer and never enable enhanced fan-out, or the skipped KCL calls count")
	}
	return want
}

func sourceContains(t testing.TB, dir, s string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// policy is an IAM policy document; fields outside this set are an error
// (no NotAction, no Principal in an identity policy).
type policy struct {
	Version   string `json:"Version"`
	Statement []struct {
		Sid       string                    `json:"Sid"`
		Effect    string                    `json:"Effect"`
		Action    []string                  `json:"Action"`
		Resource  stringList                `json:"Resource"`
		Condition map[string]map[string]any `json:"Condition,omitempty"`
	} `json:"Statement"`
}

type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

// readPolicy returns every (action, resource) the policy allows.
func readPolicy(t testing.TB, name string) map[grant]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "iam", name))
	if err != nil {
		t.Fatalf("read policy: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p policy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("%s: Version %q, want 2012-10-17", name, p.Version)
	}
	granted := map[grant]string{}
	for _, st := range p.Statement {
		if st.Effect != "Allow" {
			t.Errorf("%s %s: Effect %q; only Allow statements are expected", name, st.Sid, st.Effect)
		}
		for _, a := range st.Action {
			if strings.Contains(a, "*") {
				t.Errorf("%s %s: wildcard action %s", name, st.Sid, a)
			}
			for _, r := range st.Resource {
				if r == "*" {
					t.Errorf("%s %s: Resource *", name, st.Sid)
				}
				g := grant{a, r}
				if _, dup := granted[g]; dup {
					t.Errorf("%s: %s on %s granted twice", name, a, r)
				}
				granted[g] = st.Sid
			}
		}
	}
	return granted
}

// placeholders are the ${...} names of a policy.
var placeholderRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

func TestIAMPoliciesMatchCode(t *testing.T) {
	reads := binaryEnv(t)
	for _, b := range []struct {
		component, mainPkg, policy string
	}{
		{"gateway", "./cmd/gateway", "gateway-policy.json"},
		{"worker", "./cmd/worker", "worker-policy.json"},
	} {
		t.Run(b.component, func(t *testing.T) {
			want := codeGrants(t, b.mainPkg)
			got := readPolicy(t, b.policy)
			var missing, unused, used []string
			for g, where := range want {
				if _, ok := got[g]; !ok {
					missing = append(missing, fmt.Sprintf("%s on %s (called at %s)", g.action, g.arn, strings.Join(where, ", ")))
				} else {
					used = append(used, g.action+" "+g.arn)
				}
			}
			for g, sid := range got {
				if _, ok := want[g]; !ok {
					unused = append(unused, fmt.Sprintf("%s on %s (statement %s)", g.action, g.arn, sid))
				}
			}
			sort.Strings(missing)
			sort.Strings(unused)
			sort.Strings(used)
			for _, m := range missing {
				t.Errorf("deploy/iam/%s does not grant %s", b.policy, m)
			}
			for _, u := range unused {
				t.Errorf("deploy/iam/%s grants %s, which the %s never calls: remove it", b.policy, u, b.component)
			}
			t.Logf("%s calls and is granted:\n  %s", b.component, strings.Join(used, "\n  "))

			// Every placeholder is configuration the binary reads, so the
			// policy and the chart name the same stream, table and bucket.
			text, _ := os.ReadFile(filepath.Join(repoRoot, "deploy", "iam", b.policy))
			for _, m := range placeholderRE.FindAllStringSubmatch(string(text), -1) {
				if m[1] != "AWS_ACCOUNT_ID" && !slices.Contains(reads[b.component], m[1]) {
					t.Errorf("%s: placeholder ${%s} is not a variable the %s reads", b.policy, m[1], b.component)
				}
			}
		})
	}
}

// TestIAMKedaScalerPolicy: KEDA's aws-kinesis-stream scaler calls
// DescribeStreamSummary (for OpenShardCount) and nothing else
// (kedacore/keda pkg/scalers/aws_kinesis_stream_scaler.go).
func TestIAMKedaScalerPolicy(t *testing.T) {
	got := readPolicy(t, "keda-scaler-policy.json")
	want := grant{"kinesis:DescribeStreamSummary", arnsOf(stream, false)[0]}
	if len(got) != 1 || got[want] == "" {
		t.Errorf("keda-scaler-policy.json grants %v, want only %v", got, want)
	}
}

func TestAWSCallScanner(t *testing.T) {
	dir := t.TempDir()
	src := `package x
import (
	"github.com/aws/aws-sdk-go-v2/service/s3"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)
type api interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}
func f(c *ddb.Client) {
	_ = s3.NewListObjectsV2Paginator(nil, nil)
	_ = ddb.NewTableExistsWaiter(c)
	_ = types.PutRecordsRequestEntry{}
}
`
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, err := awsCalls("x", dir, []string{"x.go"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls {
		got = append(got, c.service+":"+c.op)
	}
	sort.Strings(got)
	want := []string{"dynamodb:DescribeTable", "s3:ListObjectsV2", "s3:PutObject"}
	if !slices.Equal(got, want) {
		t.Errorf("scanner found %v, want %v", got, want)
	}
}
