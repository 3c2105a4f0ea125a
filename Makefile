# The two commands a fresh clone needs are `make run` and `make test`;
# everything they need is installed here, pinned (go.sum, package-lock.json).
SHELL    := /bin/bash
GO       ?= go
NODE_DIR := internal/devstack/node
BIN      := bin
# -race needs cgo; the machine has gcc.
export CGO_ENABLED ?= 1

.PHONY: all deps tools build run counts report test test-unit bench fuzz chaos lint image

all: build

# Node emulators (kinesalite, dynalite, s3rver) from the committed lockfile.
deps: $(NODE_DIR)/node_modules/.installed
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json $(NODE_DIR)/package.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# The version both binaries report (-version, *_build_info).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
# Pinned tools (promtool) in bin/tools, from the Go module proxy.
tools:
	scripts/tools.sh

build:
	$(GO) build -ldflags "-X github.com/buildtelemetry/pipeline/internal/buildinfo.version=$(VERSION) -X github.com/buildtelemetry/pipeline/internal/buildinfo.revision=$(REVISION)" -o $(BIN)/ ./cmd/...

# Local stack: emulators on loopback, the gateway, and WORKERS workers
# (default 2). Ctrl-C stops everything.
WORKERS ?= 2
run: deps build
	$(BIN)/devstack run -workers $(WORKERS)

# Adoption charts of the same counters as a self-contained page (REPORT,
# default .run/report.html) over REPORT_DAYS days for REPORT_DIMS.
REPORT      ?= .run/report.html
REPORT_DAYS ?= 30
REPORT_DIMS ?= buildVersion,nodeVersion,framework,plugin
report: build
	@test -f .run/stack.env || (echo "no local stack: run make run first"; exit 1)
	@. .run/stack.env && $(BIN)/worker counts -dimension $(REPORT_DIMS) -days $(REPORT_DAYS) -html $(REPORT)
	@echo "wrote $(REPORT)"

# Version adoption from the DynamoDB counters of the stack `make run`
# started (DIM: buildVersion, nodeVersion, osPlatform, framework, status,
# plugin; DAYS: days shown).
DIM  ?= buildVersion
DAYS ?= 7
counts: build
	@test -f .run/stack.env || (echo "no local stack: run make run first"; exit 1)
	@. .run/stack.env && $(BIN)/worker counts -dimension $(DIM) -days $(DAYS)

# Every test, unit and integration, with the race detector, against one
# shared emulator stack.
test: deps build tools
	scripts/test.sh

# Unit tests only: no emulators, no node.
test-unit:
	$(GO) test -race -count=1 ./...

bench: deps build
	scripts/bench.sh

# Long chaos run: CHAOS_DURATION (default 5m) of load while worker and
# gateway processes are killed and Segment and GA4 fail, then the checks
# and a one-screen report. make test runs the one-minute form.
chaos: deps
	scripts/chaos.sh

# Long fuzz runs of the gateway's request decoding, the worker's record
# decoding and what it does with a GetRecords answer (FUZZTIME per target,
# default 5m; a count such as 1000000x avoids Go 1.26's end-of-duration
# false failure, go.dev/issue/75804).
fuzz:
	for t in event:FuzzDecodeRequest event:FuzzRecordDecode processor/kclproc:FuzzGetRecords; do \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $${FUZZTIME:-5m} "./$${t%%:*}/" || exit 1; \
	done

# Container image with both binaries (Dockerfile: static, distroless,
# non-root). Needs a Docker engine. IMAGE=… TAG=… PLATFORM=linux/arm64 make image
image:
	scripts/image.sh

# gofmt, tidy modules (both), go vet, staticcheck (with the integration
# tag, which adds files and drops none) and shellcheck; the linters are pinned in scripts/tools.sh.
lint: tools
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) mod tidy -diff || (echo "go.mod/go.sum: run go mod tidy"; exit 1)
	cd charts/chartest && $(GO) mod tidy -diff || (echo "charts/chartest/go.mod: run go mod tidy there"; exit 1)
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	cd charts/chartest && $(GO) vet ./...
	bin/tools/staticcheck -tags integration ./...
	cd charts/chartest && ../../bin/tools/staticcheck ./...
	bin/tools/shellcheck scripts/*.sh .ci/run
