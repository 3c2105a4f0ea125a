package chartest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Paths relative to this package's directory, where go test runs.
var (
	chartDir = filepath.Join("..", "telemetry")
	repoRoot = filepath.Join("..", "..")
)

const (
	releaseName = "telemetry"
	namespace   = "telemetry"
)

// requiredValues are the values without a usable default (REQUIRED in
// values.yaml). Every values set below starts from them.
const requiredValues = `
aws:
  region: eu-west-1
  streamName: telemetry-events
worker:
  config:
    deadLetterBucket: acme-telemetry-deadletter
`

// loadChart loads the chart directory as helm install would.
func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart %s: %v", chartDir, err)
	}
	return ch
}

// parseValues merges YAML documents of values, later ones winning, as
// repeated -f flags do.
func parseValues(docs ...string) (map[string]any, error) {
	out := map[string]any{}
	for _, d := range docs {
		v, err := chartutil.ReadValues([]byte(d))
		if err != nil {
			return nil, fmt.Errorf("parse values: %w", err)
		}
		out = chartutil.MergeTables(v.AsMap(), out)
	}
	return out, nil
}

// capabilities are those of a cluster with KEDA and prometheus-operator,
// as `helm template --api-versions keda.sh/v1alpha1 ...` would fake.
func capabilities() *chartutil.Capabilities {
	caps := *chartutil.DefaultCapabilities
	caps.APIVersions = append(append(chartutil.VersionSet{}, caps.APIVersions...),
		"keda.sh/v1alpha1", "keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication",
		"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
	return &caps
}

// rendered is the output of one helm template run.
type rendered struct {
	values map[string]any    // coalesced values, as the templates saw them
	files  map[string]string // template name -> rendered text (manifests only)
	notes  string
}

// render renders the chart with the overrides through the same steps as
// `helm template`: coalesce with values.yaml, validate against
// values.schema.json, render every template.
func render(t testing.TB, overrides ...string) (*rendered, error) {
	t.Helper()
	ch := loadChart(t)
	vals, err := parseValues(overrides...)
	if err != nil {
		return nil, err
	}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, capabilities())
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	r := &rendered{files: map[string]string{}}
	r.values, _ = top["Values"].(chartutil.Values)
	for name, text := range files {
		switch base := filepath.Base(name); {
		case base == "NOTES.txt":
			r.notes = text
		case strings.HasPrefix(base, "_"):
		default:
			r.files[name] = text
		}
	}
	return r, nil
}

// object is one decoded manifest.
type object struct {
	file string
	kind string
	name string
	raw  []byte
	obj  any // *appsv1.Deployment, *scaledObject, ...
}

// manifests is every object of a rendered chart.
type manifests []object

// find returns the object of that kind and name, or nil.
func (ms manifests) find(kind, name string) *object {
	for i := range ms {
		if ms[i].kind == kind && ms[i].name == name {
			return &ms[i]
		}
	}
	return nil
}

func (ms manifests) ofKind(kind string) []object {
	var out []object
	for _, m := range ms {
		if m.kind == kind {
			out = append(out, m)
		}
	}
	return out
}

func (ms manifests) kinds() []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.kind+"/"+m.name)
	}
	sort.Strings(out)
	return out
}

// kubeScheme holds every built-in kind the chart renders.
var kubeScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictDecoder rejects unknown and duplicate fields, as the API server's
// strict field validation does.
var strictDecoder = serializer.NewCodecFactory(kubeScheme, serializer.EnableStrict).UniversalDeserializer()

// decodeAll splits every rendered file into documents and decodes each one
// strictly: built-in kinds into the k8s.io/api types, KEDA and
// prometheus-operator kinds into the local types in crds_test.go with
// unknown fields rejected.
func decodeAll(r *rendered) (manifests, error) {
	var out manifests
	var errs []error
	names := make([]string, 0, len(r.files))
	for name := range r.files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(r.files[name])))
		for {
			doc, err := rd.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: split documents: %w", name, err))
				break
			}
			if isEmptyDoc(doc) {
				continue
			}
			o, err := decodeOne(name, doc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, o)
		}
	}
	return out, errors.Join(errs...)
}

func isEmptyDoc(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		l := bytes.TrimSpace(line)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}

func decodeOne(file string, doc []byte) (object, error) {
	var tm struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, fmt.Errorf("%s: parse YAML: %w\n%s", file, err, doc)
	}
	o := object{file: file, kind: tm.Kind, name: tm.Metadata.Name, raw: doc}
	if tm.Metadata.Name == "" {
		return o, fmt.Errorf("%s: %s without metadata.name", file, tm.Kind)
	}
	var local any
	switch tm.APIVersion + "/" + tm.Kind {
	case "keda.sh/v1alpha1/ScaledObject":
		local = &scaledObject{}
	case "keda.sh/v1alpha1/TriggerAuthentication":
		local = &triggerAuthentication{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		local = &serviceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		local = &prometheusRule{}
	}
	if local != nil {
		if err := yaml.UnmarshalStrict(doc, local); err != nil {
			return o, fmt.Errorf("%s: %s %s: strict decoding: %w", file, tm.Kind, o.name, err)
		}
		o.obj = local
		return o, nil
	}
	obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
	if err != nil {
		return o, fmt.Errorf("%s: %s %s: %w", file, tm.Kind, o.name, err)
	}
	if gvk.GroupVersion().String() != tm.APIVersion || gvk.Kind != tm.Kind {
		return o, fmt.Errorf("%s: decoded %v, want %s %s", file, gvk, tm.APIVersion, tm.Kind)
	}
	o.obj = obj
	return o, nil
}

// fullname is the chart's <fullname> for releaseName.
const fullname = releaseName

func deployment(t testing.TB, ms manifests, component string) *appsv1.Deployment {
	t.Helper()
	o := ms.find("Deployment", fullname+"-"+component)
	if o == nil {
		t.Fatalf("no Deployment %s-%s; objects: %v", fullname, component, ms.kinds())
	}
	return o.obj.(*appsv1.Deployment)
}

func container(t testing.TB, d *appsv1.Deployment, name string) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %q", d.Name, name)
	return nil
}

func configMap(t testing.TB, ms manifests, name string) *corev1.ConfigMap {
	t.Helper()
	o := ms.find("ConfigMap", name)
	if o == nil {
		t.Fatalf("no ConfigMap %s; objects: %v", name, ms.kinds())
	}
	return o.obj.(*corev1.ConfigMap)
}

// lookup reads a dotted path of the coalesced values.
func lookup(vals map[string]any, path string) any {
	var cur any = vals
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			if v, ok2 := cur.(chartutil.Values); ok2 {
				m = v
			} else {
				return nil
			}
		}
		cur = m[k]
	}
	return cur
}
