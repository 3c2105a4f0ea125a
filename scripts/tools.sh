#!/usr/bin/env bash
# Installs the pinned tools that lint and the tests use into bin/tools,
# from the Go module proxy. Each is built once per version (the Go build
# cache makes a rebuild fast); make lint and make test call this.
#
#   promtool     Prometheus's rule checker and rule unit-test runner
#                (charts/chartest runs the chart's alerts through it)
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool of Prometheus 3.x: its Go module versions are v0.<major><minor>.
PROMTOOL_MODULE=github.com/prometheus/prometheus/cmd/promtool
PROMTOOL_VERSION=v0.316.0

dir=$PWD/bin/tools
mkdir -p "$dir"

# install NAME MODULE VERSION: go install MODULE@VERSION unless bin/tools
# already holds that version of NAME.
install() {
  local name=$1 module=$2 version=$3 stamp="$dir/.$1.version"
  if [[ -x $dir/$name && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
    return
  fi
  echo "tools.sh: installing $name $version (first build takes a few minutes)" >&2
  # cgo is not needed by the tools, and off it builds without a C compiler.
  GOBIN=$dir CGO_ENABLED=0 go install "$module@$version"
  echo "$version" >"$stamp"
}

install promtool "$PROMTOOL_MODULE" "$PROMTOOL_VERSION"
