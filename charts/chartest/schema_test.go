package chartest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaRejectsWrongValues: values.schema.json (and, for what a schema
// cannot compare, the chart's fail guards) reject wrong values with a
// message that names the value, as `helm install` and `helm template` do.
func TestSchemaRejectsWrongValues(t *testing.T) {
	for _, c := range []struct {
		name, values string
		want         []string // substrings of the error
	}{
		{"shardsPerPod zero", `keda: {shardsPerPod: 0}`, []string{"/keda/shardsPerPod", "minimum"}},
		{"shardCount as a string", `keda: {shardsPerPod: "2"}`, []string{"/keda/shardsPerPod", "integer"}},
		{"privileged port", `gateway: {ports: {http: 80}}`, []string{"/gateway/ports/http", "minimum"}},
		{"misspelled key", `gateway: {replicaz: 3}`, []string{"/gateway", "replicaz"}},
		{"misspelled top-level key", `kedaa: {enabled: false}`, []string{"kedaa"}},
		{"bad duration", `gateway: {config: {ackTimeout: "8 seconds"}}`, []string{"/gateway/config/ackTimeout"}},
		{"bad log level", `worker: {config: {logLevel: verbose}}`, []string{"/worker/config/logLevel"}},
		{"region not a region", `aws: {region: Ireland}`, []string{"/aws/region"}},
		{"empty dead-letter bucket", `worker: {config: {deadLetterBucket: ""}}`, []string{"/worker/config/deadLetterBucket"}},
		{"bucket name with capitals", `worker: {config: {deadLetterBucket: Acme_Bucket}}`, []string{"/worker/config/deadLetterBucket"}},
		{"role ARN not an ARN", `worker: {serviceAccount: {roleArn: telemetry-worker}}`, []string{"/worker/serviceAccount/roleArn"}},
		{"credential in worker.env", `worker: {env: {SEGMENT_WRITE_KEY: abc}}`, []string{"/worker/env/SEGMENT_WRITE_KEY"}},
		{"credential in gateway.env", `gateway: {env: {GATEWAY_WRITE_KEYS: "k=src"}}`, []string{"/gateway/env/GATEWAY_WRITE_KEYS"}},
		{"lower-case env name", `worker: {env: {segment_endpoint: x}}`, []string{"/worker/env", "segment_endpoint"}},
		{"secret key name with a space", `existingSecret: {workerEnv: {GA4_API_SECRET: "ga4 secret"}}`, []string{"/existingSecret/workerEnv/GA4_API_SECRET"}},
		{"identityOwner unknown", `keda: {auth: {identityOwner: operator}}`, []string{"/keda/auth/identityOwner"}},
		{"fallback replicas negative", `keda: {fallback: {failureThreshold: 3, replicas: -1}}`, []string{"/keda/fallback/replicas"}},
		{"alerts lag ratio over 1", `alerts: {enabled: true, lagWarningRatio: 1.5}`, []string{"/alerts/lagWarningRatio"}},
		{"unknown alerts setting", `alerts: {enabled: true, breakerMinutes: 5}`, []string{"/alerts"}},
		{"file sink on the read-only root", `worker: {config: {fileSinkPath: /var/log/events.ndjson}}`, []string{"/worker/config/fileSinkPath"}},
		{"maxRecords above the Kinesis limit", `worker: {config: {maxRecords: 20000}}`, []string{"/worker/config/maxRecords", "maximum"}},
		{"memory limit removed", `worker: {resources: {limits: {memory: null}}}`, []string{"/worker/resources/limits", "memory"}},
		{"image digest malformed", `image: {digest: "sha256:abc"}`, []string{"/image/digest"}},
		{"ingress path without slash", `gateway: {ingress: {enabled: true, hosts: [{host: a.example.com, paths: [{path: api, pathType: Prefix}]}]}}`, []string{"/gateway/ingress/hosts/0/paths/0/path"}},
		// Cross-field rules the schema cannot state: the chart's fail guards.
		{"max below min replicas", `keda: {minReplicaCount: 4, maxReplicaCount: 2}`, []string{"keda.maxReplicaCount (2) must be >= keda.minReplicaCount (4)"}},
		{"gateway ports clash", `gateway: {ports: {http: 9000, metrics: 9000}}`, []string{"gateway.ports.http and gateway.ports.metrics must differ"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := render(t, requiredValues, c.values)
			if err == nil {
				t.Fatalf("values %s were accepted", c.values)
			}
			t.Logf("%s -> %v", c.values, err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestSchemaRequiresRequiredValues: values.yaml alone is not installable;
// the error names every REQUIRED value.
func TestSchemaRequiresRequiredValues(t *testing.T) {
	_, err := render(t)
	if err == nil {
		t.Fatal("the chart rendered without aws.region, aws.streamName and worker.config.deadLetterBucket")
	}
	for _, w := range []string{"/aws/region", "/aws/streamName", "/worker/config/deadLetterBucket"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %s:\n%v", w, err)
		}
	}
	if !strings.Contains(err.Error(), "schema") {
		t.Errorf("error does not come from values.schema.json: %v", err)
	}
}

// TestSchemaSecretPatternInSync: the names the schema refuses in
// gateway.env and worker.env are those env_test.go treats as credentials.
func TestSchemaSecretPatternInSync(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]struct {
			Properties map[string]struct {
				PatternProperties map[string]json.RawMessage `json:"patternProperties"`
			} `json:"properties"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	for _, component := range []string{"gateway", "worker"} {
		var refused []string
		for pattern, schema := range s.Properties[component].Properties["env"].PatternProperties {
			if string(schema) == "false" {
				refused = append(refused, pattern)
			}
		}
		// The schema needs no _FILE variant: a *_FILE path is no secret.
		want := strings.Replace(secretVar.String(), "(_FILE)?", "", 1)
		if len(refused) != 1 || refused[0] != want {
			t.Errorf("values.schema.json %s.env refuses names matching %q, env_test.go's credentials are %q", component, refused, want)
		}
	}
}
