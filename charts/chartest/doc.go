// Package chartest checks the Helm chart in ../telemetry without a cluster:
// it renders the chart through Helm's Go SDK for several values sets,
// decodes every manifest strictly into the Kubernetes API types, compares
// the environment the chart sets with the variables the binaries read
// (`gateway -print-env`, `worker run -print-env`), runs the binaries with
// that environment to probe the endpoints the chart's probes name, checks
// values.schema.json against wrong values, the IAM policies in ../../deploy/iam
// against the AWS calls in the code, and the Dockerfile's build.
//
// It is a separate module so that Helm's and Kubernetes' dependencies stay
// out of the main module. Run it with:
//
//	cd charts/chartest && go test -count=1 ./...
package chartest
