package chartest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// checkOperations covers what an operator relies on beyond the workloads:
// the startup probe, spreading, disruption budgets, NetworkPolicies, the
// helm test Pod, and the alert and dashboard objects.
func checkOperations(t *testing.T, r *rendered, ms manifests) {
	wk := deployment(t, ms, "worker")
	wc := container(t, wk, "worker")
	if p := wc.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.StrVal != "health" {
		t.Errorf("worker: startup probe %+v, want GET /readyz on the health port", p)
	} else if budget := int64(p.PeriodSeconds * p.FailureThreshold); budget < intValue(t, r, "worker.startupSeconds") {
		t.Errorf("worker: startup probe allows %ds, want at least worker.startupSeconds (%d)", budget, intValue(t, r, "worker.startupSeconds"))
	}
	gc := container(t, deployment(t, ms, "gateway"), "gateway")
	if !memoryLimitEnv(gc, "GATEWAY_MEMORY_LIMIT") || !memoryLimitEnv(wc, "WORKER_MEMORY_LIMIT") {
		t.Error("GATEWAY_MEMORY_LIMIT and WORKER_MEMORY_LIMIT must come from each container's limits.memory")
	}
	for _, component := range []string{"gateway", "worker"} {
		checkSpread(t, r, deployment(t, ms, component), component)
	}
	if o := ms.find("PodDisruptionBudget", fullname+"-worker"); o != nil {
		pdb := o.obj.(*policyv1.PodDisruptionBudget)
		if sel, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); sel == nil || !sel.Matches(labels.Set(wk.Spec.Template.Labels)) {
			t.Errorf("worker PodDisruptionBudget does not select the worker pods")
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MinAvailable != nil {
			t.Errorf("worker PodDisruptionBudget: maxUnavailable %v minAvailable %v, want maxUnavailable only (one replica must not block a drain)", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
		}
	}
	for _, o := range ms.ofKind("NetworkPolicy") {
		checkNetworkPolicy(t, ms, o.obj.(*networkingv1.NetworkPolicy))
	}
	if o := ms.find("Pod", fullname+"-test-gateway"); o != nil {
		checkTestPod(t, r, o.obj.(*corev1.Pod))
	}
	if o := ms.find("PrometheusRule", fullname); o != nil {
		checkRules(t, o.obj.(*prometheusRule))
	}
	if o := ms.find("ConfigMap", fullname+"-dashboard"); o != nil {
		cm := o.obj.(*corev1.ConfigMap)
		if cm.Labels[stringValue(r, "dashboard.sidecarLabel")] != stringValue(r, "dashboard.sidecarLabelValue") {
			t.Errorf("dashboard ConfigMap labels %v: no Grafana sidecar label", cm.Labels)
		}
		if len(cm.Data) != 1 {
			t.Errorf("dashboard ConfigMap has %d files, want 1", len(cm.Data))
		}
		for name, text := range cm.Data {
			if _, err := decodeDashboard([]byte(text)); err != nil {
				t.Errorf("dashboard %s: %v", name, err)
			}
		}
	}
}

func memoryLimitEnv(c *corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			f := e.ValueFrom
			return f != nil && f.ResourceFieldRef != nil && f.ResourceFieldRef.Resource == "limits.memory" &&
				f.ResourceFieldRef.ContainerName == c.Name && f.ResourceFieldRef.Divisor.IsZero()
		}
	}
	return false
}

// checkSpread: own constraints as given; else, by default, a soft spread
// over zones and nodes of the component's own pods; none when turned off.
func checkSpread(t *testing.T, r *rendered, d *appsv1.Deployment, component string) {
	got := d.Spec.Template.Spec.TopologySpreadConstraints
	own, _ := lookup(r.values, component+".topologySpreadConstraints").([]any)
	switch {
	case len(own) > 0:
		if len(got) != len(own) {
			t.Errorf("%s: %d spread constraints, want the %d given", d.Name, len(got), len(own))
		}
	case boolValue(r, component+".defaultTopologySpread"):
		var keys []string
		for _, c := range got {
			keys = append(keys, c.TopologyKey)
			sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
			if c.WhenUnsatisfiable != corev1.ScheduleAnyway || err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: default spread %+v must be soft and select its own pods", d.Name, c)
			}
		}
		if !slices.Equal(keys, []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"}) {
			t.Errorf("%s: default spread over %v, want zones and nodes", d.Name, keys)
		}
	default:
		if len(got) != 0 {
			t.Errorf("%s: spread constraints %v although turned off", d.Name, got)
		}
	}
}

// checkNetworkPolicy: it selects one component's pods and admits only
// ports that container names.
func checkNetworkPolicy(t *testing.T, ms manifests, np *networkingv1.NetworkPolicy) {
	component := strings.TrimPrefix(np.Name, fullname+"-")
	d := deployment(t, ms, component)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("NetworkPolicy %s does not select the %s pods", np.Name, component)
	}
	ports := map[string]bool{}
	for _, p := range container(t, d, component).Ports {
		ports[p.Name] = true
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || !ports[p.Port.StrVal] {
				t.Errorf("NetworkPolicy %s admits port %v, which the %s container does not name", np.Name, p.Port, component)
			}
		}
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy %s policy types %v, want Ingress only (egress reaches AWS, Segment and GA4)", np.Name, np.Spec.PolicyTypes)
	}
}

// checkTestPod: a helm test hook that probes the gateway Service's port
// with the gateway binary of the release's own image.
func checkTestPod(t *testing.T, r *rendered, p *corev1.Pod) {
	if p.Annotations["helm.sh/hook"] != "test" || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test Pod: hook %q restartPolicy %q, want test and Never", p.Annotations["helm.sh/hook"], p.Spec.RestartPolicy)
	}
	base := fmt.Sprintf("http://%s-gateway:%d/", fullname, intValue(t, r, "gateway.service.port"))
	var paths []string
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		checkHardening(t, "test Pod", c)
		if len(c.Command) != 3 || c.Command[0] != "/usr/local/bin/gateway" || c.Command[1] != "-probe" || !strings.HasPrefix(c.Command[2], base) {
			t.Errorf("test Pod container %s: command %q, want gateway -probe %s...", c.Name, c.Command, base)
			continue
		}
		paths = append(paths, strings.TrimPrefix(c.Command[2], base))
	}
	if !slices.Equal(paths, []string{"healthz", "readyz"}) {
		t.Errorf("test Pod probes %v, want healthz and readyz", paths)
	}
}

// checkRules: every rule is an alert with a known severity, a summary and
// a description; names are unique.
func checkRules(t *testing.T, pr *prometheusRule) {
	seen := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" || seen[rule.Alert] {
				t.Errorf("group %s: rule %q without an alert name or named twice", g.Name, rule.Alert)
			}
			seen[rule.Alert] = true
			if s := rule.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", rule.Alert, s)
			}
			if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("alert %s: needs a summary and a description", rule.Alert)
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("%d alerts, want the pipeline's dozen", len(seen))
	}
}

// dashboard is the part of Grafana's dashboard model the chart's uses,
// decoded strictly: a misspelled field is an error.
type dashboard struct {
	Title        string          `json:"title"`
	UID          string          `json:"uid"`
	Description  string          `json:"description"`
	Tags         []string        `json:"tags"`
	Schema       int             `json:"schemaVersion"`
	Version      int             `json:"version"`
	Editable     bool            `json:"editable"`
	GraphTooltip int             `json:"graphTooltip"`
	Time         json.RawMessage `json:"time"`
	Refresh      string          `json:"refresh"`
	Timezone     string          `json:"timezone"`
	Annotations  json.RawMessage `json:"annotations"`
	Templating   struct {
		List []struct {
			Name       string          `json:"name"`
			Label      string          `json:"label"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource,omitempty"`
			Definition string          `json:"definition,omitempty"`
			Refresh    int             `json:"refresh,omitempty"`
			Current    json.RawMessage `json:"current"`
			Hide       int             `json:"hide"`
			IncludeAll bool            `json:"includeAll,omitempty"`
			Multi      bool            `json:"multi,omitempty"`
			Sort       int             `json:"sort,omitempty"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID          int    `json:"id"`
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description,omitempty"`
		Collapsed   bool   `json:"collapsed,omitempty"`
		Datasource  *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource,omitempty"`
		GridPos struct {
			H, W, X, Y int
		} `json:"gridPos"`
		FieldConfig json.RawMessage `json:"fieldConfig,omitempty"`
		Options     json.RawMessage `json:"options,omitempty"`
		Panels      []any           `json:"panels,omitempty"`
		Targets     []struct {
			RefID        string `json:"refId"`
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets,omitempty"`
	} `json:"panels"`
}

// decodeDashboard decodes strictly and checks what Grafana needs to load
// and show it: a uid, panels on the grid, and queries on the data-source
// variable.
func decodeDashboard(b []byte) (*dashboard, error) {
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("strict decoding: %w", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		return nil, fmt.Errorf("uid %q title %q, %d panels", d.UID, d.Title, len(d.Panels))
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.GridPos.W <= 0 || p.GridPos.W > 24 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			return nil, fmt.Errorf("panel %q: id %d repeated or off the 24-column grid %+v", p.Title, p.ID, p.GridPos)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			return nil, fmt.Errorf("panel %q: needs targets on the ${datasource} variable", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				return nil, fmt.Errorf("panel %q: target without expr or refId", p.Title)
			}
		}
	}
	return &d, nil
}

// promtool returns the pinned promtool that scripts/tools.sh installs.
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(repoRoot, "bin", "tools", "promtool"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("promtool is not installed: run scripts/tools.sh (make test does): %v", err)
	}
	return bin
}

func runPromtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeRuleFile writes groups as a Prometheus rule file in dir.
func writeRuleFile(t *testing.T, dir, name string, groups any) {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAlertRulesPromtool: the rendered PrometheusRule's groups are a valid
// rule file (promtool check rules: PromQL parses, templates expand), and
// pass the unit tests in testdata/alerts-test.yaml (promtool test rules),
// which feed series through each alert and check that it fires, with
// which labels and text, and that it stays quiet below its threshold.
func TestAlertRulesPromtool(t *testing.T) {
	for _, vs := range []valuesSet{
		{name: "defaults", yaml: "alerts: {enabled: true}"},
		{name: "selectors", yaml: `alerts: {enabled: true, workerSelector: 'job="w"', gatewaySelector: 'job="g"'}`},
	} {
		t.Run(vs.name, func(t *testing.T) {
			_, ms := renderSet(t, vs)
			o := ms.find("PrometheusRule", fullname)
			if o == nil {
				t.Fatal("no PrometheusRule rendered")
			}
			dir := t.TempDir()
			writeRuleFile(t, dir, "alerts.yaml", o.obj.(*prometheusRule).Spec.Groups)
			runPromtool(t, dir, "check", "rules", "alerts.yaml")
			if vs.name != "defaults" {
				return // the unit tests' series carry the default selectors' labels
			}
			tests, err := os.ReadFile(filepath.Join("testdata", "alerts-test.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "alerts-test.yaml"), tests, 0o644); err != nil {
				t.Fatal(err)
			}
			out := runPromtool(t, dir, "test", "rules", "alerts-test.yaml")
			// Each alert needs a test that fires it.
			for _, g := range o.obj.(*prometheusRule).Spec.Groups {
				for _, rule := range g.Rules {
					if !bytes.Contains(tests, []byte("alertname: "+rule.Alert+"\n")) {
						t.Errorf("alert %s has no unit test in testdata/alerts-test.yaml", rule.Alert)
					}
				}
			}
			t.Logf("promtool test rules: %s", strings.TrimSpace(out))
		})
	}
}

// TestDashboardQueriesParse: every query of the dashboard, with Grafana's
// variables given values, is valid PromQL (promtool check rules over one
// recording rule per query).
func TestDashboardQueriesParse(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeDashboard(b)
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$namespace", "telemetry")
	var rules []map[string]string
	leftover := regexp.MustCompile(`\$\w+`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr := vars.Replace(tg.Expr)
			if v := leftover.FindString(expr); v != "" {
				t.Errorf("panel %q: variable %s is not defined by the dashboard", p.Title, v)
			}
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel%d_%s", p.ID, tg.RefID), "expr": expr})
		}
	}
	dir := t.TempDir()
	writeRuleFile(t, dir, "dashboard.yaml", []map[string]any{{"name": "dashboard", "rules": rules}})
	runPromtool(t, dir, "check", "rules", "dashboard.yaml")
	t.Logf("%d dashboard queries parse", len(rules))
}
