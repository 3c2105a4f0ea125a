package chartest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// valuesSet is one `helm template -f` run, on top of requiredValues.
type valuesSet struct {
	name string
	yaml string
}

// valuesSets are the configurations every chart test renders.
var valuesSets = []valuesSet{
	{name: "defaults"},
	{name: "keda-off", yaml: `
keda: {enabled: false}
worker: {replicas: 3}
`},
	{name: "keda-role-arn", yaml: `
keda:
  shardsPerPod: 4
  activationShardCount: 1
  minReplicaCount: 2
  maxReplicaCount: 8
  auth: {roleArn: "arn:aws:iam::123456789012:role/telemetry-keda-scaler"}
  fallback: {failureThreshold: 3, replicas: 4}
`},
	{name: "ingress", yaml: `
gateway:
  ingress:
    enabled: true
    className: nginx
    annotations: {nginx.ingress.kubernetes.io/proxy-body-size: 1m}
    hosts:
      - host: telemetry.example.com
        paths: [{path: /, pathType: Prefix}]
    tls:
      - secretName: telemetry-tls
        hosts: [telemetry.example.com]
`},
	{name: "existing-secret", yaml: `
existingSecret:
  name: telemetry-credentials
gateway:
  serviceAccount: {roleArn: "arn:aws:iam::123456789012:role/telemetry-gateway"}
worker:
  serviceAccount: {roleArn: "arn:aws:iam::123456789012:role/telemetry-worker"}
`},
	{name: "all-options", yaml: `
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: registry}]
existingSecret:
  name: telemetry-credentials
  gatewayWriteKeysKey: write-keys.txt
gateway:
  replicas: 3
  autoscaling: {enabled: false}
  podDisruptionBudget: {enabled: false}
  drainDelaySeconds: 15
  shutdownTimeoutSeconds: 40
  config: {legacySource: netlify-build, logLevel: debug}
  env: {GATEWAY_LINGER: 2ms}
  service: {type: LoadBalancer, port: 443, annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}}
  serviceAccount: {create: false, name: platform-telemetry}
  ports: {http: 18080, metrics: 19090}
  nodeSelector: {kubernetes.io/arch: arm64}
  tolerations: [{key: dedicated, operator: Equal, value: telemetry, effect: NoSchedule}]
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector: {matchLabels: {app.kubernetes.io/component: gateway}}
worker:
  shutdownTimeoutSeconds: 60
  config: {app: acme-telemetry, leaseTable: acme-telemetry-leases, fileSinkPath: "-"}
  sinks:
    segment: {endpoint: "https://events.eu1.segmentapis.com"}
    ga4: {measurementId: G-TEST123}
    s3: {bucket: acme-telemetry-events, prefix: raw/}
    dynamodb: {countsTable: acme-build-counts, countEvents: "*"}
  env: {LOG_LEVEL: debug}
  serviceAccount: {roleArn: "arn:aws:iam::123456789012:role/telemetry-worker"}
keda:
  auth: {identityOwner: workload}
metrics:
  podAnnotations: false
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
`},
	{name: "observability", yaml: `
alerts: {enabled: true, labels: {release: prometheus}, breakerOpenMinutes: 30}
dashboard: {enabled: true, annotations: {grafana_folder: Telemetry}}
networkPolicy:
  enabled: true
  metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
worker: {podDisruptionBudget: {enabled: false}, defaultTopologySpread: false}
tests: {enabled: false}
`},
}

// renderSet renders one values set and decodes it strictly, failing the
// test on any error.
func renderSet(t *testing.T, vs valuesSet, extra ...string) (*rendered, manifests) {
	t.Helper()
	r, err := render(t, append([]string{requiredValues, vs.yaml}, extra...)...)
	if err != nil {
		t.Fatalf("render %s: %v", vs.name, err)
	}
	if dir := os.Getenv("CHARTEST_DUMP"); dir != "" {
		dumpRendered(t, filepath.Join(dir, vs.name), r)
	}
	ms, err := decodeAll(r)
	if err != nil {
		t.Fatalf("strict decoding of %s:\n%v", vs.name, err)
	}
	return r, ms
}

// dumpRendered writes what `helm template` would print, one file per
// template, for a person to read: CHARTEST_DUMP=/tmp/out go test -run TestRenderStrict.
func dumpRendered(t *testing.T, dir string, r *rendered) {
	t.Helper()
	files := map[string]string{"NOTES.txt": r.notes}
	for name, text := range r.files {
		files[filepath.Base(name)] = text
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestChartLint(t *testing.T) {
	for _, vs := range valuesSets {
		t.Run(vs.name, func(t *testing.T) {
			vals, err := parseValues(requiredValues, vs.yaml)
			if err != nil {
				t.Fatal(err)
			}
			l := lint.All(chartDir, vals, namespace, true)
			for _, m := range l.Messages {
				// --strict: warnings count as errors; the missing icon is INFO.
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint --strict: %s", m)
				}
			}
		})
	}
}

// TestRenderStrict renders every values set, decodes every manifest into
// the API types with unknown fields rejected, and checks the objects and
// their relations.
func TestRenderStrict(t *testing.T) {
	for _, vs := range valuesSets {
		t.Run(vs.name, func(t *testing.T) {
			r, ms := renderSet(t, vs)
			checkObjectSet(t, r, ms)
			checkDeployments(t, r, ms)
			checkGatewayObjects(t, r, ms)
			checkKEDA(t, r, ms)
			checkServiceAccounts(t, r, ms)
			checkMetrics(t, r, ms)
			checkNotes(t, r)
			checkOperations(t, r, ms)
		})
	}
}

func boolValue(r *rendered, path string) bool {
	b, _ := lookup(r.values, path).(bool)
	return b
}

func intValue(t *testing.T, r *rendered, path string) int64 {
	t.Helper()
	switch v := lookup(r.values, path).(type) {
	case float64:
		return int64(v)
	case int64:
		return v
	case int:
		return int64(v)
	}
	t.Fatalf("value %s is %#v, want a number", path, lookup(r.values, path))
	return 0
}

func stringValue(r *rendered, path string) string {
	s, _ := lookup(r.values, path).(string)
	return s
}

// checkObjectSet: exactly the objects the values ask for.
func checkObjectSet(t *testing.T, r *rendered, ms manifests) {
	want := []string{
		"ConfigMap/" + fullname + "-gateway", "ConfigMap/" + fullname + "-worker",
		"Deployment/" + fullname + "-gateway", "Deployment/" + fullname + "-worker",
		"Service/" + fullname + "-gateway",
	}
	if boolValue(r, "gateway.serviceAccount.create") {
		want = append(want, "ServiceAccount/"+fullname+"-gateway")
	}
	if boolValue(r, "worker.serviceAccount.create") {
		want = append(want, "ServiceAccount/"+fullname+"-worker")
	}
	if boolValue(r, "gateway.autoscaling.enabled") {
		want = append(want, "HorizontalPodAutoscaler/"+fullname+"-gateway")
	}
	if boolValue(r, "gateway.podDisruptionBudget.enabled") {
		want = append(want, "PodDisruptionBudget/"+fullname+"-gateway")
	}
	if boolValue(r, "gateway.ingress.enabled") {
		want = append(want, "Ingress/"+fullname+"-gateway")
	}
	if boolValue(r, "keda.enabled") {
		want = append(want, "ScaledObject/"+fullname+"-worker", "TriggerAuthentication/"+fullname+"-worker-aws")
	}
	if boolValue(r, "worker.podDisruptionBudget.enabled") {
		want = append(want, "PodDisruptionBudget/"+fullname+"-worker")
	}
	if boolValue(r, "alerts.enabled") {
		want = append(want, "PrometheusRule/"+fullname)
	}
	if boolValue(r, "dashboard.enabled") {
		want = append(want, "ConfigMap/"+fullname+"-dashboard")
	}
	if boolValue(r, "networkPolicy.enabled") {
		want = append(want, "NetworkPolicy/"+fullname+"-gateway", "NetworkPolicy/"+fullname+"-worker")
	}
	if boolValue(r, "tests.enabled") {
		want = append(want, "Pod/"+fullname+"-test-gateway")
	}
	if boolValue(r, "metrics.serviceMonitor.enabled") {
		want = append(want, "ServiceMonitor/"+fullname,
			"Service/"+fullname+"-gateway-metrics", "Service/"+fullname+"-worker-metrics")
	}
	slices.Sort(want)
	if got := ms.kinds(); !slices.Equal(got, want) {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}
	for _, m := range ms {
		for k, v := range map[string]string{
			"app.kubernetes.io/instance":   releaseName,
			"app.kubernetes.io/managed-by": "Helm",
		} {
			var meta struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(m.raw, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Metadata.Labels[k] != v {
				t.Errorf("%s %s: label %s = %q, want %q", m.kind, m.name, k, meta.Metadata.Labels[k], v)
			}
		}
	}
}

// checkDeployments: replicas never both templated and autoscaled, the
// hardening, resources, probes on named ports, config from the ConfigMap,
// and a grace period longer than the binaries' drain time.
func checkDeployments(t *testing.T, r *rendered, ms manifests) {
	for _, c := range []struct {
		component   string
		autoscaled  bool
		replicasKey string
	}{
		{"gateway", boolValue(r, "gateway.autoscaling.enabled"), "gateway.replicas"},
		{"worker", boolValue(r, "keda.enabled"), "worker.replicas"},
	} {
		d := deployment(t, ms, c.component)
		switch {
		case c.autoscaled && d.Spec.Replicas != nil:
			t.Errorf("%s: replicas %d templated while autoscaled: every helm upgrade would reset the autoscaler's count", d.Name, *d.Spec.Replicas)
		case !c.autoscaled && (d.Spec.Replicas == nil || int64(*d.Spec.Replicas) != intValue(t, r, c.replicasKey)):
			t.Errorf("%s: replicas %v, want %s = %d", d.Name, d.Spec.Replicas, c.replicasKey, intValue(t, r, c.replicasKey))
		}

		sel, err := metav1LabelSelector(d)
		if err != nil {
			t.Fatalf("%s: selector: %v", d.Name, err)
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match the pod labels %v", d.Name, sel, d.Spec.Template.Labels)
		}
		if got := d.Spec.Template.Labels["app.kubernetes.io/component"]; got != c.component {
			t.Errorf("%s: pod label component = %q, want %q", d.Name, got, c.component)
		}
		if d.Spec.Template.Annotations["checksum/config"] == "" {
			t.Errorf("%s: no checksum/config annotation: a config change would not roll the pods", d.Name)
		}

		pod := d.Spec.Template.Spec
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: the Kubernetes API token is mounted; the binaries never call the API", d.Name)
		}
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", d.Name, psc)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", d.Name, len(pod.Containers))
		}
		ctr := container(t, d, c.component)
		checkHardening(t, d.Name, ctr)
		checkResources(t, d.Name, ctr)
		checkProbes(t, d.Name, ctr)

		// Configuration comes from the component's ConfigMap.
		if len(ctr.EnvFrom) != 1 || ctr.EnvFrom[0].ConfigMapRef == nil || ctr.EnvFrom[0].ConfigMapRef.Name != fullname+"-"+c.component {
			t.Errorf("%s: envFrom %+v, want the ConfigMap %s-%s", d.Name, ctr.EnvFrom, fullname, c.component)
		}
		cm := configMap(t, ms, fullname+"-"+c.component)

		// The kubelet must not kill a binary that is still draining.
		grace := pod.TerminationGracePeriodSeconds
		if grace == nil {
			t.Fatalf("%s: no terminationGracePeriodSeconds", d.Name)
		}
		var drain time.Duration
		for _, env := range map[string][]string{
			"gateway": {"GATEWAY_DRAIN_DELAY", "GATEWAY_SHUTDOWN_TIMEOUT"},
			"worker":  {"WORKER_SHUTDOWN_TIMEOUT"},
		}[c.component] {
			v, err := time.ParseDuration(cm.Data[env])
			if err != nil {
				t.Fatalf("%s: ConfigMap %s: %s = %q: %v", d.Name, cm.Name, env, cm.Data[env], err)
			}
			drain += v
		}
		if time.Duration(*grace)*time.Second <= drain {
			t.Errorf("%s: terminationGracePeriodSeconds %d is not longer than the binary's drain time %v", d.Name, *grace, drain)
		}

		// The listeners the probes and ports name are those the binary is
		// told to open.
		addrEnv := map[string]map[string]string{
			"gateway": {"http": "GATEWAY_ADDR", "metrics": "GATEWAY_METRICS_ADDR"},
			"worker":  {"health": "WORKER_HEALTH_ADDR", "metrics": "WORKER_METRICS_ADDR"},
		}[c.component]
		for _, p := range ctr.Ports {
			env, ok := addrEnv[p.Name]
			if !ok {
				t.Errorf("%s: port %q is not a listener of the binary (%v)", d.Name, p.Name, addrEnv)
				continue
			}
			if want := ":" + strconv.Itoa(int(p.ContainerPort)); cm.Data[env] != want {
				t.Errorf("%s: port %s is %d but %s = %q, want %q", d.Name, p.Name, p.ContainerPort, env, cm.Data[env], want)
			}
		}
		if len(ctr.Ports) != len(addrEnv) {
			t.Errorf("%s: ports %v, want one per listener %v", d.Name, ctr.Ports, addrEnv)
		}

		wantCmd := map[string][]string{"gateway": {"/usr/local/bin/gateway"}, "worker": {"/usr/local/bin/worker", "run"}}[c.component]
		if !slices.Equal(ctr.Command, wantCmd) {
			t.Errorf("%s: command %q, want %q", d.Name, ctr.Command, wantCmd)
		}
		if ctr.Image == "" || (stringValue(r, "image.digest") != "" && !strings.HasSuffix(ctr.Image, "@"+stringValue(r, "image.digest"))) {
			t.Errorf("%s: image %q does not honour image.digest %q", d.Name, ctr.Image, stringValue(r, "image.digest"))
		}
	}
}

func metav1LabelSelector(d *appsv1.Deployment) (labels.Selector, error) {
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchExpressions) > 0 {
		return nil, fmt.Errorf("want matchLabels only, got %+v", d.Spec.Selector)
	}
	return labels.SelectorFromSet(d.Spec.Selector.MatchLabels), nil
}

func checkHardening(t *testing.T, where string, c *corev1.Container) {
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: container %s has no securityContext", where, c.Name)
		return
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: container %s: runAsNonRoot not true", where, c.Name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: container %s: readOnlyRootFilesystem not true", where, c.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: container %s: allowPrivilegeEscalation not false", where, c.Name)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: container %s: privileged", where, c.Name)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: container %s: capabilities %+v, want drop [ALL] and no add", where, c.Name, sc.Capabilities)
	}
}

func checkResources(t *testing.T, where string, c *corev1.Container) {
	for _, want := range []struct {
		list corev1.ResourceList
		kind string
		name corev1.ResourceName
	}{
		{c.Resources.Requests, "requests", corev1.ResourceCPU},
		{c.Resources.Requests, "requests", corev1.ResourceMemory},
		{c.Resources.Limits, "limits", corev1.ResourceMemory},
	} {
		if q, ok := want.list[want.name]; !ok || q.IsZero() {
			t.Errorf("%s: container %s has no resources.%s.%s", where, c.Name, want.kind, want.name)
		}
	}
	if lim, req := c.Resources.Limits[corev1.ResourceMemory], c.Resources.Requests[corev1.ResourceMemory]; lim.Cmp(req) < 0 {
		t.Errorf("%s: memory limit %s below request %s", where, lim.String(), req.String())
	}
}

// checkProbes: HTTP probes on a named container port. That the binary
// answers 200 there is TestProbesHitRealEndpoints.
func checkProbes(t *testing.T, where string, c *corev1.Container) {
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: container %s: no HTTP %s probe", where, c.Name, name)
			continue
		}
		if _, err := probePort(c, p); err != nil {
			t.Errorf("%s: %s probe: %v", where, name, err)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path == "/readyz" {
		t.Errorf("%s: liveness on /readyz would restart pods while Kinesis is unreachable", where)
	}
}

// probePort resolves a probe's port (a name or a number) to a declared
// container port.
func probePort(c *corev1.Container, p *corev1.Probe) (int32, error) {
	port := p.HTTPGet.Port
	for _, cp := range c.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %s is not a port of container %s", port.String(), c.Name)
}

func checkGatewayObjects(t *testing.T, r *rendered, ms manifests) {
	gw := deployment(t, ms, "gateway")
	podLabels := labels.Set(gw.Spec.Template.Labels)
	worker := deployment(t, ms, "worker")

	svcObj := ms.find("Service", fullname+"-gateway")
	svc := svcObj.obj.(*corev1.Service)
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	if !sel.Matches(podLabels) || sel.Matches(labels.Set(worker.Spec.Template.Labels)) {
		t.Errorf("Service %s selector %v must select the gateway pods only", svc.Name, svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("Service %s ports %+v, want only the ingest API (targetPort http)", svc.Name, svc.Spec.Ports)
	}

	if o := ms.find("HorizontalPodAutoscaler", fullname+"-gateway"); o != nil {
		hpa := o.obj.(*autoscalingv2.HorizontalPodAutoscaler)
		if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != gw.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("HPA targets %+v, want apps/v1 Deployment %s", ref, gw.Name)
		}
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas > hpa.Spec.MaxReplicas {
			t.Errorf("HPA min %v max %d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
		}
		if len(hpa.Spec.Metrics) == 0 {
			t.Errorf("HPA has no metric")
		}
	}
	if o := ms.find("PodDisruptionBudget", fullname+"-gateway"); o != nil {
		pdb := o.obj.(*policyv1.PodDisruptionBudget)
		s := labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels)
		if !s.Matches(podLabels) || s.Matches(labels.Set(worker.Spec.Template.Labels)) {
			t.Errorf("PDB selector %v must select the gateway pods only", pdb.Spec.Selector)
		}
		if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil {
			t.Errorf("PDB: want maxUnavailable only (a single replica must not block drains), got %+v", pdb.Spec)
		}
	}
	if o := ms.find("Ingress", fullname+"-gateway"); o != nil {
		ing := o.obj.(*networkingv1.Ingress)
		if cls := stringValue(r, "gateway.ingress.className"); cls != "" && (ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != cls) {
			t.Errorf("Ingress class %v, want %q", ing.Spec.IngressClassName, cls)
		}
		if len(ing.Spec.Rules) == 0 {
			t.Errorf("Ingress has no rule")
		}
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				if b == nil || b.Name != svc.Name || b.Port.Name != svc.Spec.Ports[0].Name {
					t.Errorf("Ingress path %s backend %+v, want Service %s port %s", p.Path, b, svc.Name, svc.Spec.Ports[0].Name)
				}
			}
		}
		if tls := lookup(r.values, "gateway.ingress.tls"); tls != nil && len(tls.([]any)) != len(ing.Spec.TLS) {
			t.Errorf("Ingress TLS %+v, want %v", ing.Spec.TLS, tls)
		}
	}
}

// checkKEDA: the ScaledObject scales the worker Deployment on the stream's
// open shards with shardCount per pod, through a TriggerAuthentication with
// AWS pod identity; and with KEDA off neither exists (checkObjectSet).
func checkKEDA(t *testing.T, r *rendered, ms manifests) {
	if !boolValue(r, "keda.enabled") {
		return
	}
	worker := deployment(t, ms, "worker")
	cm := configMap(t, ms, fullname+"-worker")
	so := ms.find("ScaledObject", fullname+"-worker").obj.(*scaledObject)
	ta := ms.find("TriggerAuthentication", fullname+"-worker-aws").obj.(*triggerAuthentication)

	if ref := so.Spec.ScaleTargetRef; ref.Name != worker.Name || ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" {
		t.Errorf("ScaledObject targets %+v, want apps/v1 Deployment %s", ref, worker.Name)
	}
	for field, want := range map[string]struct {
		got  *int32
		path string
	}{
		"minReplicaCount": {so.Spec.MinReplicaCount, "keda.minReplicaCount"},
		"maxReplicaCount": {so.Spec.MaxReplicaCount, "keda.maxReplicaCount"},
		"pollingInterval": {so.Spec.PollingInterval, "keda.pollingInterval"},
		"cooldownPeriod":  {so.Spec.CooldownPeriod, "keda.cooldownPeriod"},
	} {
		if want.got == nil || int64(*want.got) != intValue(t, r, want.path) {
			t.Errorf("ScaledObject %s = %v, want %s = %d", field, want.got, want.path, intValue(t, r, want.path))
		}
	}
	if *so.Spec.MinReplicaCount < 1 || *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
		t.Errorf("ScaledObject replicas [%d, %d]", *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
	}
	if len(so.Spec.Triggers) != 1 {
		t.Fatalf("ScaledObject has %d triggers, want 1", len(so.Spec.Triggers))
	}
	tr := so.Spec.Triggers[0]
	if tr.Type != "aws-kinesis-stream" {
		t.Errorf("trigger type %q, want aws-kinesis-stream", tr.Type)
	}
	if tr.MetricType != "" && tr.MetricType != "AverageValue" {
		t.Errorf("trigger metricType %q: shardCount is a per-pod target (AverageValue)", tr.MetricType)
	}
	wantMeta := map[string]string{
		"streamName":           cm.Data["KINESIS_STREAM"],
		"awsRegion":            cm.Data["AWS_REGION"],
		"shardCount":           strconv.FormatInt(intValue(t, r, "keda.shardsPerPod"), 10),
		"activationShardCount": strconv.FormatInt(intValue(t, r, "keda.activationShardCount"), 10),
	}
	for k, want := range wantMeta {
		if tr.Metadata[k] != want {
			t.Errorf("trigger metadata %s = %q, want %q", k, tr.Metadata[k], want)
		}
	}
	for k := range tr.Metadata {
		if _, ok := wantMeta[k]; !ok {
			// identityOwner in the trigger is deprecated (KEDA 2.13) and
			// applies only to the removed aws-eks provider.
			t.Errorf("trigger metadata %s is not expected", k)
		}
	}
	// sigs.k8s.io/yaml turns a number into the string the Go field wants;
	// the API server would reject it against KEDA's CRD. Read the raw
	// YAML types.
	var raw struct {
		Spec struct {
			Triggers []struct {
				Metadata map[string]any `json:"metadata"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(ms.find("ScaledObject", so.Name).raw, &raw); err != nil {
		t.Fatal(err)
	}
	for k, v := range raw.Spec.Triggers[0].Metadata {
		if _, ok := v.(string); !ok {
			t.Errorf("trigger metadata %s is %T %v in the YAML, want a string (KEDA's CRD: map of strings)", k, v, v)
		}
	}
	if tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != ta.Name || (tr.AuthenticationRef.Kind != "" && tr.AuthenticationRef.Kind != "TriggerAuthentication") {
		t.Errorf("trigger authenticationRef %+v, want TriggerAuthentication %s", tr.AuthenticationRef, ta.Name)
	}
	pi := ta.Spec.PodIdentity
	if pi == nil || pi.Provider != "aws" {
		t.Fatalf("TriggerAuthentication podIdentity %+v, want provider aws", pi)
	}
	switch roleArn := stringValue(r, "keda.auth.roleArn"); {
	case roleArn != "":
		if pi.RoleArn != roleArn || pi.IdentityOwner != "" {
			t.Errorf("podIdentity %+v, want roleArn %s only (roleArn and identityOwner are mutually exclusive)", pi, roleArn)
		}
	default:
		if pi.RoleArn != "" || pi.IdentityOwner != stringValue(r, "keda.auth.identityOwner") {
			t.Errorf("podIdentity %+v, want identityOwner %s", pi, stringValue(r, "keda.auth.identityOwner"))
		}
	}
	if len(ta.Spec.SecretTargetRef) > 0 || len(ta.Spec.Env) > 0 {
		t.Errorf("TriggerAuthentication uses static credentials: %+v", ta.Spec)
	}
	if fb := lookup(r.values, "keda.fallback"); fb != nil && len(fb.(map[string]any)) > 0 && so.Spec.Fallback == nil {
		t.Errorf("keda.fallback %v not rendered", fb)
	}
}

func checkServiceAccounts(t *testing.T, r *rendered, ms manifests) {
	for _, component := range []string{"gateway", "worker"} {
		d := deployment(t, ms, component)
		saName := d.Spec.Template.Spec.ServiceAccountName
		if !boolValue(r, component+".serviceAccount.create") {
			if want := stringValue(r, component+".serviceAccount.name"); want != "" && saName != want {
				t.Errorf("%s: serviceAccountName %q, want %q", d.Name, saName, want)
			}
			continue
		}
		o := ms.find("ServiceAccount", saName)
		if o == nil {
			t.Errorf("%s: ServiceAccount %q is not rendered", d.Name, saName)
			continue
		}
		sa := o.obj.(*corev1.ServiceAccount)
		if role := stringValue(r, component+".serviceAccount.roleArn"); sa.Annotations["eks.amazonaws.com/role-arn"] != role {
			t.Errorf("ServiceAccount %s: IRSA annotation %q, want %q", sa.Name, sa.Annotations["eks.amazonaws.com/role-arn"], role)
		}
	}
	g, w := deployment(t, ms, "gateway"), deployment(t, ms, "worker")
	if boolValue(r, "gateway.serviceAccount.create") && boolValue(r, "worker.serviceAccount.create") &&
		g.Spec.Template.Spec.ServiceAccountName == w.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("gateway and worker share ServiceAccount %s: each needs its own least-privilege role", g.Spec.Template.Spec.ServiceAccountName)
	}
}

// checkMetrics: scrape annotations and the ServiceMonitor name the metrics
// port of each binary.
func checkMetrics(t *testing.T, r *rendered, ms manifests) {
	for _, component := range []string{"gateway", "worker"} {
		d := deployment(t, ms, component)
		ctr := container(t, d, component)
		var metricsPort int32
		for _, p := range ctr.Ports {
			if p.Name == "metrics" {
				metricsPort = p.ContainerPort
			}
		}
		ann := d.Spec.Template.Annotations
		if boolValue(r, "metrics.podAnnotations") {
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(int(metricsPort)) || ann["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: scrape annotations %v, want port %d path /metrics", d.Name, ann, metricsPort)
			}
		} else if _, ok := ann["prometheus.io/scrape"]; ok {
			t.Errorf("%s: scrape annotations although metrics.podAnnotations is false", d.Name)
		}
		if o := ms.find("Service", d.Name+"-metrics"); o != nil {
			svc := o.obj.(*corev1.Service)
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Service %s does not select %s pods", svc.Name, d.Name)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort.StrVal != "metrics" {
				t.Errorf("Service %s ports %+v, want metrics -> metrics", svc.Name, svc.Spec.Ports)
			}
		}
	}
	if o := ms.find("ServiceMonitor", fullname); o != nil {
		sm := o.obj.(*serviceMonitor)
		sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
		var selected []string
		for _, s := range ms.ofKind("Service") {
			var meta struct {
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			_ = yaml.Unmarshal(s.raw, &meta)
			if sel.Matches(labels.Set(meta.Metadata.Labels)) {
				selected = append(selected, s.name)
			}
		}
		slices.Sort(selected)
		if want := []string{fullname + "-gateway-metrics", fullname + "-worker-metrics"}; !slices.Equal(selected, want) {
			t.Errorf("ServiceMonitor selects Services %v, want %v", selected, want)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
		}
	}
}

func checkNotes(t *testing.T, r *rendered) {
	for _, want := range []string{fullname + "-gateway", "/v1/track", "curl", "WRITE_KEY"} {
		if !strings.Contains(r.notes, want) {
			t.Errorf("NOTES.txt does not mention %q:\n%s", want, r.notes)
		}
	}
	if strings.Contains(r.notes, "<no value>") {
		t.Errorf("NOTES.txt has <no value>:\n%s", r.notes)
	}
}

// TestReadmeExampleValues: the values file in charts/telemetry/README.md
// installs as written.
func TestReadmeExampleValues(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "A values file for the example:\n\n```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```yaml block after \"A values file for the example:\"")
	}
	r, err := render(t, example)
	if err != nil {
		t.Fatalf("README example values: %v", err)
	}
	ms, err := decodeAll(r)
	if err != nil {
		t.Fatalf("README example values: %v", err)
	}
	checkDeployments(t, r, ms)
	checkKEDA(t, r, ms)
	checkServiceAccounts(t, r, ms)
}
