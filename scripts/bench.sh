#!/usr/bin/env bash
# make bench: Go micro-benchmarks, then the loopback load runs whose
# figures print as `name: value unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# Go benchmarks"
go test -run '^$' -bench . -benchtime "${BENCHTIME:-1s}" ./event/ ./gateway/ | grep -E '^(Benchmark|ok|FAIL)'
echo
echo "# Figures (loopback, client and server share this machine's cores)"
go run ./cmd/bench "$@"
