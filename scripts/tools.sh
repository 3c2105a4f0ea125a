#!/usr/bin/env bash
# Installs the pinned tools that lint and the tests use into bin/tools,
# from the Go module proxy. Each is built once per version (the Go build
# cache makes a rebuild fast); make lint and make test call this.
#
#   promtool     Prometheus's rule checker and rule unit-test runner
#                (charts/chartest runs the chart's alerts through it)
#   staticcheck  Go static analysis (make lint)
#   ShellCheck   shell script analysis of scripts/ (make lint), from
#                Debian's package, the only build served here
set -euo pipefail
cd "$(dirname "$0")/.."

# promtool of Prometheus 3.x: its Go module versions are v0.<major><minor>.
PROMTOOL_MODULE=github.com/prometheus/prometheus/cmd/promtool
PROMTOOL_VERSION=v0.316.0
STATICCHECK_MODULE=honnef.co/go/tools/cmd/staticcheck
STATICCHECK_VERSION=v0.8.2
SHELLCHECK_VERSION=0.9.0
SHELLCHECK_DEB=shellcheck=0.9.0-1

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
install staticcheck "$STATICCHECK_MODULE" "$STATICCHECK_VERSION"

# ShellCheck is Haskell, not Go: Debian's package, pinned. It needs root
# (CI and these machines run as root); otherwise install it by hand.
if ! shellcheck --version 2>/dev/null | grep -q "^version: $SHELLCHECK_VERSION\$"; then
  echo "tools.sh: installing $SHELLCHECK_DEB from Debian's packages" >&2
  if [[ $(id -u) != 0 ]]; then
    echo "tools.sh: shellcheck $SHELLCHECK_VERSION is missing and installing it needs root: apt-get install $SHELLCHECK_DEB" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$SHELLCHECK_DEB" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q "$SHELLCHECK_DEB" >/dev/null; }
fi
ln -sf "$(command -v shellcheck)" "$dir/shellcheck"
