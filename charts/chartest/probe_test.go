package chartest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestProbesHitRealEndpoints runs each binary as its pod would: the
// rendered ConfigMap and env as the environment, the existing Secret's
// files where the pod mounts them, the container's command. Then it sends
// the liveness and readiness probes, the metrics scrape and NOTES.txt's
// first event to the ports the chart names, and SIGTERMs the process: it
// must stop within terminationGracePeriodSeconds.
//
// Two things differ from a pod, on purpose: listeners bind 127.0.0.1
// instead of all interfaces (":8080" becomes "127.0.0.1:8080"), and AWS is
// a fake on loopback that answers the calls the binaries make at start
// (AWS_ENDPOINT_URL and static credentials stand in for IRSA). The chart's
// ports are free ports chosen here, so that nothing else on the machine
// is in the way.
func TestProbesHitRealEndpoints(t *testing.T) {
	gwBin, wkBin := binaries(t)
	p := freePorts(t, 4)
	vs := valuesSet{name: "probes", yaml: fmt.Sprintf(`
existingSecret: {name: telemetry-credentials}
gateway: {ports: {http: %d, metrics: %d}}
worker: {ports: {health: %d, metrics: %d}}
`, p[0], p[1], p[2], p[3])}
	r, ms := renderSet(t, vs)
	secret := map[string]string{
		stringValue(r, "existingSecret.gatewayWriteKeysKey"): "chartest-write-key=chartest\n",
	}

	for _, c := range []struct {
		component, bin string
	}{{"gateway", gwBin}, {"worker", wkBin}} {
		t.Run(c.component, func(t *testing.T) {
			t.Parallel()
			d := deployment(t, ms, c.component)
			ctr := container(t, d, c.component)
			aws := newFakeAWS(t) // one per binary: calls are attributed
			env := podEnv(t, ms, d, ctr, secret, aws.srv.URL)
			if filepath.Base(ctr.Command[0]) != c.component {
				t.Fatalf("container command %q is not the %s binary", ctr.Command, c.component)
			}
			proc := startBinary(t, c.bin, append(ctr.Command[1:], ctr.Args...), env)

			// Liveness: 200 as soon as the process serves.
			live := ctr.LivenessProbe.HTTPGet
			livePort, _ := probePort(ctr, ctr.LivenessProbe)
			waitStatus(t, proc, livePort, live.Path, http.StatusOK, 30*time.Second)
			// Readiness: 200 once the binary reached AWS (the fake).
			ready := ctr.ReadinessProbe.HTTPGet
			readyPort, _ := probePort(ctr, ctr.ReadinessProbe)
			waitStatus(t, proc, readyPort, ready.Path, http.StatusOK, 30*time.Second)
			// The probe ports are not catch-alls.
			if code, _ := get(livePort, "/chartest-no-such-path"); code != http.StatusNotFound {
				t.Errorf("GET :%d/chartest-no-such-path = %d, want 404", livePort, code)
			}
			// Metrics where the scrape annotations point.
			ann := d.Spec.Template.Annotations
			mport, _ := strconv.Atoi(ann["prometheus.io/port"])
			code, body := get(int32(mport), ann["prometheus.io/path"])
			if code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
				t.Errorf("scrape :%d%s = %d, want 200 with Go metrics", mport, ann["prometheus.io/path"], code)
			}

			if c.component == "gateway" {
				sendFirstEvent(t, r, ms, ctr, secret)
			}

			// SIGTERM: a gateway drains (readiness fails at once), and both
			// exit well within the grace period.
			start := time.Now()
			if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if c.component == "gateway" {
				// Within the drain delay, readiness fails so that the
				// endpoints controller and load balancers stop sending.
				drainFailed := false
				for time.Since(start) < 3*time.Second && !drainFailed {
					code, _ := get(readyPort, ready.Path)
					drainFailed = code != http.StatusOK
					time.Sleep(50 * time.Millisecond)
				}
				if !drainFailed {
					t.Errorf("readiness %s still answered 200 3s after SIGTERM", ready.Path)
				}
			}
			grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			select {
			case <-proc.done:
			case <-time.After(grace):
				t.Fatalf("%s still running %v after SIGTERM (terminationGracePeriodSeconds): the kubelet would SIGKILL it\n%s", c.component, grace, proc.out.String())
			}
			took := time.Since(start)
			if err := proc.cmd.ProcessState; !err.Success() {
				t.Errorf("%s exited with %v after SIGTERM\n%s", c.component, proc.cmd.ProcessState, proc.out.String())
			}
			t.Logf("%s: probes %s:%d and %s:%d, metrics :%d; SIGTERM -> exit in %v (grace %v)",
				c.component, live.Path, livePort, ready.Path, readyPort, mport, took.Round(10*time.Millisecond), grace)
			checkObservedCalls(t, configMap(t, ms, fullname+"-"+c.component), aws, c.component+"-policy.json")
		})
	}
}

// sendFirstEvent posts the event NOTES.txt tells the operator to send, to
// the port the Service targets, with a key from the mounted write-keys file.
func sendFirstEvent(t *testing.T, r *rendered, ms manifests, ctr *corev1.Container, secret map[string]string) {
	t.Helper()
	m := regexp.MustCompile(`-d '([^']+)' \\\s+"\$URL(/[^"]+)"`).FindStringSubmatch(r.notes)
	if m == nil {
		t.Fatalf("NOTES.txt has no curl -d '<body>' \"$URL/<path>\" to send a first event:\n%s", r.notes)
	}
	body, path := m[1], m[2]
	svc := ms.find("Service", fullname+"-gateway").obj.(*corev1.Service)
	var port int32
	for _, cp := range ctr.Ports {
		if cp.Name == svc.Spec.Ports[0].TargetPort.StrVal {
			port = cp.ContainerPort
		}
	}
	key, _, _ := strings.Cut(secret[stringValue(r, "existingSecret.gatewayWriteKeysKey")], "=")
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), strings.NewReader(body))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("NOTES.txt's first event: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("NOTES.txt's first event: POST %s = %d %s, want 200", path, resp.StatusCode, b)
	}
}

// podEnv is the container's environment as the kubelet would set it, with
// the Secret's files written where the pod mounts them.
func podEnv(t *testing.T, ms manifests, d *appsv1.Deployment, c *corev1.Container, secret map[string]string, awsURL string) []string {
	t.Helper()
	env, problems := containerEnv(t, ms, c)
	for _, p := range problems {
		t.Error(p)
	}
	// Secret volumes, written to a directory standing in for the mount.
	remap := map[string]string{}
	for _, m := range c.VolumeMounts {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			dir := t.TempDir()
			for _, it := range v.Secret.Items {
				data, ok := secret[it.Key]
				if !ok {
					t.Fatalf("volume %s wants key %s of Secret %s", v.Name, it.Key, v.Secret.SecretName)
				}
				if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(data), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			remap[strings.TrimSuffix(m.MountPath, "/")+"/"] = dir + "/"
		}
	}
	out := []string{
		"AWS_ENDPOINT_URL=" + awsURL,
		"AWS_ACCESS_KEY_ID=AKIDCHARTEST", "AWS_SECRET_ACCESS_KEY=chartest",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"HOME=" + t.TempDir(),
	}
	for name, src := range env {
		if strings.HasPrefix(name, "AWS_ENDPOINT_URL") || strings.HasPrefix(name, "AWS_ACCESS_KEY") {
			t.Errorf("the chart sets %s", name)
		}
		v := src.value
		if src.secretRef != nil {
			var ok bool
			if v, ok = secret[src.secretRef.Key]; !ok {
				continue // optional key absent: the variable is unset
			}
		}
		if strings.HasSuffix(name, "_ADDR") && strings.HasPrefix(v, ":") {
			v = "127.0.0.1" + v
		}
		for from, to := range remap {
			if strings.HasPrefix(v, from) {
				v = to + strings.TrimPrefix(v, from)
			}
		}
		out = append(out, name+"="+v)
	}
	return out
}

type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startBinary(t *testing.T, bin string, args, env []string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out.String())
		}
	})
	return p
}

func get(port int32, path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls until GET answers want, the process dies, or timeout.
func waitStatus(t *testing.T, p *process, port int32, path string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var code int
	var body string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before GET :%d%s answered %d\n%s", p.cmd.ProcessState, port, path, want, p.out.String())
		default:
		}
		if code, body = get(port, path); code == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET :%d%s = %d %q after %v, want %d", port, path, code, body, timeout, want)
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// fakeAWS answers, on loopback, the Kinesis and DynamoDB JSON calls the
// binaries make at start and for one event, and records each call with the
// stream or table it names.
type fakeAWS struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[[3]string]int // service, operation, resource name
}

func newFakeAWS(t *testing.T) *fakeAWS {
	f := &fakeAWS{calls: map[[3]string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAWS) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	prefix, op, _ := strings.Cut(target, ".")
	var in struct {
		StreamName string
		TableName  string
		Records    []json.RawMessage
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	service := map[string]string{"Kinesis_20131202": "kinesis", "DynamoDB_20120810": "dynamodb"}[prefix]
	service = cmp.Or(service, "s3?"+r.Method+" "+r.URL.Path)
	f.mu.Lock()
	f.calls[[3]string{service, op, in.StreamName + in.TableName}]++
	f.mu.Unlock()

	ctype := map[string]string{"kinesis": "application/x-amz-json-1.1", "dynamodb": "application/x-amz-json-1.0"}[service]
	w.Header().Set("Content-Type", ctype)
	var resp any
	switch service + "." + op {
	case "kinesis.DescribeStreamSummary":
		resp = map[string]any{"StreamDescriptionSummary": map[string]any{
			"StreamName": in.StreamName, "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/" + in.StreamName,
			"StreamStatus": "ACTIVE", "RetentionPeriodHours": 24, "StreamCreationTimestamp": 1.7e9,
			"EnhancedMonitoring": []any{}, "OpenShardCount": 1,
		}}
	case "kinesis.ListShards":
		resp = map[string]any{"Shards": []any{}}
	case "kinesis.PutRecords":
		recs := make([]any, len(in.Records))
		for i := range recs {
			recs[i] = map[string]any{"SequenceNumber": strconv.Itoa(i + 1), "ShardId": "shardId-000000000000"}
		}
		resp = map[string]any{"FailedRecordCount": 0, "Records": recs}
	case "dynamodb.DescribeTable":
		resp = map[string]any{"Table": map[string]any{
			"TableName": in.TableName, "TableStatus": "ACTIVE",
			"KeySchema":            []any{map[string]any{"AttributeName": "ShardID", "KeyType": "HASH"}},
			"AttributeDefinitions": []any{map[string]any{"AttributeName": "ShardID", "AttributeType": "S"}},
		}}
	case "dynamodb.Scan":
		resp = map[string]any{"Items": []any{}, "Count": 0, "ScannedCount": 0}
	default:
		w.WriteHeader(http.StatusBadRequest)
		resp = map[string]any{"__type": "ValidationException", "message": "chartest fake AWS does not serve " + target}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// checkObservedCalls: every call a binary made is granted by its policy on
// the ARN of the resource it named, once the policy's placeholders are
// filled from the binary's ConfigMap. This ties the chart's names, the
// policy's placeholders and the code together at run time.
func checkObservedCalls(t *testing.T, cm *corev1.ConfigMap, f *fakeAWS, policy string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	fill := func(s string) string {
		return placeholderRE.ReplaceAllStringFunc(s, func(p string) string {
			name := placeholderRE.FindStringSubmatch(p)[1]
			if name == "AWS_ACCOUNT_ID" {
				return "000000000000"
			}
			return cm.Data[name]
		})
	}
	granted := map[string]bool{}
	for g := range readPolicy(t, policy) {
		granted[g.action+" "+fill(g.arn)] = true
	}
	if len(f.calls) == 0 {
		t.Errorf("no AWS call seen")
	}
	var seen []string
	for k, n := range f.calls {
		service, op, name := k[0], k[1], k[2]
		var arn string
		switch {
		case service == "kinesis" && name == cm.Data["KINESIS_STREAM"]:
			arn = fill(arnsOf(stream, false)[0])
		case service == "dynamodb" && name != "" && name == cm.Data["WORKER_LEASE_TABLE"]:
			arn = fill(arnsOf(leaseTable, false)[0])
		default:
			t.Errorf("AWS call %s %s on %q (%d calls): not a resource the chart configures", service, op, name, n)
			continue
		}
		if !granted[service+":"+op+" "+arn] {
			t.Errorf("%s:%s on %s (%d calls) is not granted by deploy/iam/%s", service, op, arn, n, policy)
		}
		seen = append(seen, fmt.Sprintf("%s:%s %s x%d", service, op, name, n))
	}
	sort.Strings(seen)
	t.Logf("AWS calls, all granted by %s: %s", policy, strings.Join(seen, ", "))
}
