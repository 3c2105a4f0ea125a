# One image with both binaries, /usr/local/bin/gateway and
# /usr/local/bin/worker; the Helm chart (charts/telemetry) sets each
# Deployment's command. Build with `make image` (scripts/image.sh).
#
# RUN --mount needs BuildKit, the default builder since Docker 23.
# charts/chartest/image_test.go runs this file's `go build` line in a copy of
# the build context (.dockerignore applied) and checks that the binaries are
# static and that the chart's commands and user match the final stage.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# The version both binaries report (-version, <component>_build_info);
# scripts/image.sh passes the image tag. The context has no .git, so the
# revision reads "unknown" unless it is part of VERSION.
ARG VERSION=dev
# Static (no cgo), reproducible (no local paths), stripped.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X github.com/buildtelemetry/pipeline/internal/buildinfo.version=${VERSION}" -o /out/ ./cmd/gateway ./cmd/worker

# distroless static: CA certificates and tzdata (the sinks and the AWS SDK
# speak HTTPS), no shell, no package manager; user nonroot = 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/worker /usr/local/bin/
USER 65532:65532
# gateway: API 8080, metrics 9090; worker: health 8081, metrics 9091.
EXPOSE 8080 9090 8081 9091
ENTRYPOINT ["/usr/local/bin/gateway"]
