#!/usr/bin/env bash
# Runs the whole suite: lint, then unit and integration tests with -race
# against one emulator stack shared by all packages (each test makes its
# own uniquely named stream, tables and bucket).
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory lint

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/telemetry-test.XXXXXX")
./bin/devstack env -out "$run_dir/stack.env" >"$run_dir/devstack.log" 2>&1 &
stack_pid=$!
cleanup() {
  kill "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

for _ in $(seq 1 150); do
  [[ -s "$run_dir/stack.env" ]] && break
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    cat "$run_dir/devstack.log" >&2
    echo "test.sh: emulator stack failed to start" >&2
    exit 1
  fi
  sleep 0.2
done
[[ -s "$run_dir/stack.env" ]] || { cat "$run_dir/devstack.log" >&2; echo "test.sh: stack did not start in 30 s" >&2; exit 1; }
# shellcheck disable=SC1091
source "$run_dir/stack.env"

if ! go test -race -count=1 -tags integration -timeout 15m "$@" ./...; then
  # A shared emulator that died shows as "connection refused" in many
  # packages at once; its own log says why.
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    echo "test.sh: the shared emulator stack exited during the tests; its log:" >&2
    tail -n 50 "$run_dir/devstack.log" >&2
  fi
  exit 1
fi

# Helm chart, IAM policies, image build: a separate module (Helm's SDK
# stays out of go.mod); no cluster needed.
(cd charts/chartest && go test -count=1 ./...)

# A short run of each fuzz target (make fuzz runs them long). The budget
# is a count of executions, not a duration: Go 1.26's fuzz coordinator can
# report "context deadline exceeded" as a failure when a duration runs out
# while a starved worker is mid-input (go.dev/issue/75804, fixed in 1.27),
# and a count has no deadline to race. The counts are about 10 s each here.
for target in event:FuzzDecodeRequest:100000x event:FuzzRecordDecode:100000x processor/kclproc:FuzzGetRecords:5000x; do
  IFS=: read -r pkg name execs <<<"$target"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-$execs}" "./${pkg}/"
done
