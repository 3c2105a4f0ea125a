#!/usr/bin/env bash
# Builds the container image with both binaries (see Dockerfile):
#
#   scripts/image.sh                 # IMAGE=buildtelemetry/pipeline TAG=<git describe>
#   IMAGE=registry.example.com/telemetry TAG=1.2.3 scripts/image.sh
#   PLATFORM=linux/arm64 scripts/image.sh   # cross-builds (Go cross-compiles; no emulation)
#
# Extra arguments go to `docker build` (e.g. --push with buildx, --no-cache).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-buildtelemetry/pipeline}
tag=${TAG:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
docker=${DOCKER:-docker}

if ! command -v "$docker" >/dev/null 2>&1; then
  echo "image.sh: no '$docker' command: install Docker (or set DOCKER=podman) to build the image" >&2
  exit 2
fi
# `docker info` fails when the client has no engine to talk to (no daemon,
# no socket, no permission): say so instead of failing halfway through.
if ! info_err=$("$docker" info 2>&1 >/dev/null); then
  echo "image.sh: no container engine available: '$docker info' failed:" >&2
  while IFS= read -r line; do echo "  $line" >&2; done <<<"$info_err"
  echo "image.sh: start the Docker daemon (or point DOCKER_HOST at one) and run 'make image' again." >&2
  echo "image.sh: what can be checked without an engine runs in 'make test' (charts/chartest: TestImage*)." >&2
  exit 2
fi

args=(build --tag "$image:$tag" --build-arg "VERSION=$tag" --file Dockerfile)
if [[ -n ${PLATFORM:-} ]]; then
  args+=(--platform "$PLATFORM")
fi
echo "image.sh: $docker ${args[*]} $* ." >&2
DOCKER_BUILDKIT=1 "$docker" "${args[@]}" "$@" .
echo "image.sh: built $image:$tag" >&2
