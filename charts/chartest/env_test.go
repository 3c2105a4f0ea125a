package chartest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The environment the chart gives each binary must be exactly what the
// binary reads: every variable of `gateway -print-env` and
// `worker run -print-env` is set (from the ConfigMap, or from
// existingSecret for credentials), and nothing is set that the binary does
// not read. The lists come from the binaries themselves, so a variable
// added to cmd/*/config.go fails this test until the chart sets it.

// secretVar matches the names of credentials. values.schema.json rejects
// these names in gateway.env and worker.env (TestSchemaSecretPatternInSync),
// so they can only come from existingSecret.
var secretVar = regexp.MustCompile(`(_KEY|_KEYS|_SECRET|_TOKEN|_PASSWORD|_CREDENTIALS)(_FILE)?$`)

// intentionallyUnset are variables a binary reads that the chart leaves
// unset on purpose, with the reason. A stale entry fails the test.
var intentionallyUnset = map[string]map[string]string{
	"gateway": {
		"GATEWAY_WRITE_KEYS": "keys come from GATEWAY_WRITE_KEYS_FILE, a file mounted from existingSecret, so they never appear in the pod spec",
	},
	"worker": {
		"WORKER_ID": "the default (hostname, pid and a random suffix) is unique per pod and per restart; a shared value would make two workers one lease owner",
	},
}

// sdkStandard are variables the AWS SDK itself reads, which the chart may
// set although no -print-env lists them. The chart sets none of them today;
// AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are injected by EKS (IRSA).
var sdkStandard = []string{"AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"}

// printEnv runs the binary's -print-env with an empty environment.
func printEnv(t testing.TB, bin string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	vars := strings.Fields(string(out))
	if len(vars) == 0 {
		t.Fatalf("%s %s printed no variable", filepath.Base(bin), strings.Join(args, " "))
	}
	return vars
}

// binaryEnv is what each binary reads, by component.
func binaryEnv(t testing.TB) map[string][]string {
	t.Helper()
	gw, wk := binaries(t)
	return map[string][]string{
		"gateway": printEnv(t, gw, "-print-env"),
		"worker":  printEnv(t, wk, "run", "-print-env"),
	}
}

// secretOverrides maps every credential the worker reads to a key of the
// existing Secret, as an operator would in existingSecret.workerEnv.
func secretOverrides(workerVars []string) string {
	var b strings.Builder
	b.WriteString("existingSecret:\n  workerEnv:\n")
	n := 0
	for _, v := range workerVars {
		if secretVar.MatchString(v) && !strings.HasSuffix(v, "_FILE") {
			fmt.Fprintf(&b, "    %s: %s\n", v, strings.ReplaceAll(strings.ToLower(v), "_", "-"))
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return b.String()
}

// envSource says where one variable of a container comes from.
type envSource struct {
	configMap string                    // ConfigMap name, for envFrom
	value     string                    // the literal or ConfigMap value
	secretRef *corev1.SecretKeySelector // env valueFrom secretKeyRef
	fieldRef  bool
}

// containerEnv resolves a container's environment like the kubelet:
// envFrom ConfigMaps first, then env entries.
func containerEnv(t *testing.T, ms manifests, c *corev1.Container) (map[string]envSource, []string) {
	t.Helper()
	env := map[string]envSource{}
	var problems []string
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			o := ms.find("ConfigMap", ef.ConfigMapRef.Name)
			if o == nil {
				problems = append(problems, fmt.Sprintf("envFrom names ConfigMap %s, which the chart does not render", ef.ConfigMapRef.Name))
				continue
			}
			for k, v := range o.obj.(*corev1.ConfigMap).Data {
				env[k] = envSource{configMap: ef.ConfigMapRef.Name, value: v}
			}
		default:
			problems = append(problems, fmt.Sprintf("envFrom %+v: only ConfigMaps are expected", ef))
		}
	}
	for _, e := range c.Env {
		if prev, ok := env[e.Name]; ok {
			problems = append(problems, fmt.Sprintf("%s is set twice (ConfigMap %s and env): the env entry silently wins", e.Name, prev.configMap))
		}
		s := envSource{value: e.Value}
		if e.ValueFrom != nil {
			s.secretRef = e.ValueFrom.SecretKeyRef
			s.fieldRef = e.ValueFrom.FieldRef != nil
		}
		env[e.Name] = s
	}
	return env, problems
}

func TestEnvMatchesBinaries(t *testing.T) {
	reads := binaryEnv(t)
	for component, vars := range reads {
		t.Logf("%s reads %d variables: %s", component, len(vars), strings.Join(vars, " "))
		for v := range intentionallyUnset[component] {
			if !slices.Contains(vars, v) {
				t.Errorf("intentionallyUnset[%s] lists %s, which the %s no longer reads: remove it", component, v, component)
			}
		}
	}
	for _, vs := range valuesSets {
		t.Run(vs.name, func(t *testing.T) {
			r, ms := renderSet(t, vs, secretOverridesIf(vs, reads["worker"]))
			secretName := stringValue(r, "existingSecret.name")
			for _, component := range []string{"gateway", "worker"} {
				d := deployment(t, ms, component)
				c := container(t, d, component)
				env, problems := containerEnv(t, ms, c)
				for _, p := range problems {
					t.Errorf("%s: %s", d.Name, p)
				}
				read := reads[component]

				var unknown, missing, leaked, badSecret []string
				for name, src := range env {
					switch {
					case slices.Contains(read, name):
					case slices.Contains(sdkStandard, name):
					default:
						unknown = append(unknown, name)
					}
					if secretVar.MatchString(name) && !strings.HasSuffix(name, "_FILE") && src.configMap != "" {
						leaked = append(leaked, name+" (ConfigMap "+src.configMap+")")
					}
				}
				for _, name := range read {
					src, set := env[name]
					switch {
					case set && secretVar.MatchString(name):
						if msg := checkSecretSource(d, c, name, src, secretName); msg != "" {
							badSecret = append(badSecret, msg)
						}
					case set:
					case intentionallyUnset[component][name] != "":
					case secretVar.MatchString(name) && strings.HasSuffix(name, "_FILE") && slices.Contains(read, strings.TrimSuffix(name, "_FILE")):
						// X_FILE is the binary's alternative to X; the chart
						// sets X (or leaves both unset, below).
					case secretVar.MatchString(name) && secretName == "":
						// No existingSecret: that credential's feature is off.
					default:
						missing = append(missing, name)
					}
				}
				sort.Strings(unknown)
				sort.Strings(missing)
				if len(missing) > 0 {
					t.Errorf("%s reads %s, but the chart does not set %s.\n"+
						"  Add each to charts/telemetry: a %s.config value in values.yaml rendered by telemetry.%sEnv in templates/_helpers.tpl "+
						"(or a default in %s.env), and to values.schema.json;\n"+
						"  a credential (name ending %s) goes to existingSecret%s instead;\n"+
						"  or, if leaving it unset is right, to intentionallyUnset in charts/chartest/env_test.go with the reason.",
						component, strings.Join(missing, ", "), pronoun(len(missing)), component, component, component,
						secretVar.String(), map[string]string{"worker": ".workerEnv", "gateway": " (mounted like gatewayWriteKeysKey)"}[component])
				}
				if len(unknown) > 0 {
					t.Errorf("the chart sets %s for the %s, which `%s -print-env` does not list: a typo, or a variable the binary no longer reads. Remove it from the chart.",
						strings.Join(unknown, ", "), component, map[string]string{"gateway": "gateway", "worker": "worker run"}[component])
				}
				for _, l := range leaked {
					t.Errorf("%s: credential %s is in a ConfigMap; it must come from existingSecret", d.Name, l)
				}
				for _, b := range badSecret {
					t.Errorf("%s: %s", d.Name, b)
				}
			}
		})
	}
}

func secretOverridesIf(vs valuesSet, workerVars []string) string {
	if !strings.Contains(vs.yaml, "existingSecret:") {
		return ""
	}
	return secretOverrides(workerVars)
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// checkSecretSource: a credential comes from existingSecret, either as a
// secretKeyRef or, for a *_FILE variable, as a path inside a volume of
// that Secret mounted in the container.
func checkSecretSource(d *appsv1.Deployment, c *corev1.Container, name string, src envSource, secretName string) string {
	if secretName == "" {
		return fmt.Sprintf("%s is set although existingSecret.name is empty", name)
	}
	if src.secretRef != nil {
		if src.secretRef.Name != secretName {
			return fmt.Sprintf("%s comes from Secret %s, want existingSecret %s", name, src.secretRef.Name, secretName)
		}
		return ""
	}
	if !strings.HasSuffix(name, "_FILE") {
		return fmt.Sprintf("%s is a literal; credentials must come from Secret %s", name, secretName)
	}
	// The file must be an item of a Secret volume mounted in the container.
	return checkSecretFile(d, c, name, src.value, secretName)
}

func checkSecretFile(d *appsv1.Deployment, c *corev1.Container, name, file, secretName string) string {
	vols := d.Spec.Template.Spec.Volumes
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		rel := strings.TrimPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		for _, v := range vols {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			if v.Secret.SecretName != secretName {
				return fmt.Sprintf("%s=%s is in Secret %s, want %s", name, file, v.Secret.SecretName, secretName)
			}
			for _, it := range v.Secret.Items {
				if path.Clean(it.Path) == rel {
					return ""
				}
			}
			return fmt.Sprintf("%s=%s: no item of Secret volume %s has path %s", name, file, v.Name, rel)
		}
	}
	return fmt.Sprintf("%s=%s is not inside a mounted Secret volume", name, file)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.gateway != "" {
		os.RemoveAll(filepath.Dir(built.gateway))
	}
	os.Exit(code)
}
