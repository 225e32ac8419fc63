# pushercm — see README.md. Every tool is pinned: Go tools in go.mod and
# tools/go.mod (run with `go tool`), npm packages in test/js/package-lock.json,
# Debian's chromium for the browser tests (browser-deps).

GO        ?= go
BUF       := $(GO) tool -modfile=tools/go.mod buf
LINT      := $(GO) tool -modfile=tools/go.mod golangci-lint
BIN       := bin/pushercm
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# A static binary (no cgo: it runs in a scratch or distroless image) that
# carries its identity (`pushercm version`, pushercm_build_info).
LDFLAGS   := -s -w -X github.com/milequest/pushercm/app.Version=$(VERSION) \
	-X github.com/milequest/pushercm/app.Commit=$(COMMIT) \
	-X github.com/milequest/pushercm/app.BuildDate=$(BUILD_DATE)
# Benchmarks, fuzzing and soaks are never part of `make test` (the fuzz targets'
# seed corpora run there as ordinary tests).
BENCHTIME ?= 1s
FUZZTIME ?= 10m
FUZZPARALLEL ?= 1
FUZZ ?= .
SOAKTIME ?= 10m
SOAKCONNS ?= 15000
# Modules nested in this repository: `./...` stops at them, so vet and unit
# run each one in its own directory (tools/ holds only pinned tools).
NESTED    := gen client examples

.PHONY: all build run test unit vet buflint generate checkgenerate lint js-deps browser-deps screenshots promtool chart bench bench-auth bench-broadcast bench-peers bench-cluster bench-single-node bench-capacity fuzz soak fmt clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pushercm

## run: build and start `pushercm serve --dev` on the embedded driver.
run: build
	./$(BIN) serve --dev

## test: everything CI runs (the README's test command).
test: vet lint checkgenerate js-deps browser-deps promtool unit chart

vet:
	$(GO) vet ./...
	@for m in $(NESTED); do echo "go vet ($$m)"; (cd $$m && $(GO) vet ./...) || exit 1; done
	@# The module builds and vets off Linux too (io_uring, accept4 and epoll have
	@# fallbacks; the load tools under bench/cmd are Linux-only).
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...

buflint:
	$(BUF) lint

unit:
	$(GO) test -race -count=1 -timeout 9m ./...
	@for m in $(NESTED); do echo "go test ($$m)"; (cd $$m && $(GO) test -race -count=1 -timeout 5m ./...) || exit 1; done

## js-deps: install the pinned pusher-js and pusher npm packages for the interop tests.
js-deps:
	cd test/js && npm ci --no-audit --no-fund --loglevel=error

## browser-deps: install Debian's chromium for test/browser when it is missing
## (apt-get, as root or through sudo; no browser download).
browser-deps:
	@test -x /usr/bin/chromium || { \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium; }

## screenshots: rewrite the README's screenshots (docs/screenshots/) with the
## browser test that also checks the pages.
screenshots: js-deps browser-deps
	PUSHERCM_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run 'TestDemoAndConsole|TestConsoleCluster' ./test/browser/

## chart: helm lint, helm template and strict schema checks of the Helm chart,
## in the deploy/ module that pins helm and the Kubernetes API types.
chart:
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

## promtool: install promtool (Debian's prometheus package) for the alert
## rule tests when it is missing; needs root and apt-get.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

## generate: regenerate gen/ from proto/ with buf and the pinned plugins.
generate:
	$(BUF) generate

## checkgenerate: fail when gen/ differs from what proto/ generates, or third_party/nbio
## from nbio with third_party/nbio.patch (see third_party/README.md).
checkgenerate:
	@$(BUF) generate
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		echo "gen/ is out of date with proto/: run 'make generate' and commit"; \
		git status --porcelain -- gen; git diff --stat -- gen; exit 1; \
	fi
	@third_party/nbio.sh check

## lint: golangci-lint (with depguard holding the import rules of DESIGN.md §4) and
## buf lint, on the main module and the nested ones; part of `make test`.
lint: buflint
	$(LINT) run ./...
	@for m in $(NESTED); do (cd $$m && $(GO) tool -modfile=../tools/go.mod golangci-lint run ./...) || exit 1; done

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '^gen/\|^third_party/')

## bench: Go benchmarks of the hot paths (no load tests; see BENCHMARKS.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./protocol/... ./ratelimit/... ./authz/... ./delivery/... ./edge/... ./interceptors/...

## bench-auth: issue 4's load run, AuthorizeChannel against the health check on one
## spawned server, first with ghz (go install'ed at the version bench/loadgen pins),
## then with the built-in callers (~3 minutes). See BENCHMARKS.md.
bench-auth:
	$(GO) run ./bench/cmd/authload -ghz -rounds 10 -duration 3s -warmup 1s -c 16
	$(GO) run ./bench/cmd/authload -rounds 8 -duration 2s -warmup 500ms

## bench-broadcast: issue 6's load run, SendEvent to 100 subscribers and to none against
## the health check, with the split of SendEvent's CPU into RPC work and fan-out, then
## SendBatch (~2 minutes). See BENCHMARKS.md.
bench-broadcast:
	$(GO) run ./bench/cmd/grpcload -c 16 -flush-interval 5ms

## bench-peers: issue 18's comparison with the peers, on loopback (~5 minutes after the
## installs). Installs Centrifugo $(CENTRIFUGO_VERSION) with go install into bin/peers (once;
## ~200 CPU-seconds of compiling) and soketi from bench/peers/soketi/package.json with npm,
## then runs bench/cmd/peerload, which appends a dated table to BENCHMARKS.md. A peer that
## cannot be installed is left out and the section says why. See BENCHMARKS.md.
CENTRIFUGO_VERSION := v6.9.1
PEERS_BIN          := $(CURDIR)/bin/peers
PEERLOAD_FLAGS     ?=

bench-peers:
	@mkdir -p $(PEERS_BIN); notes=""; t0=$$(date +%s); \
	if [ -x $(PEERS_BIN)/centrifugo ] && [ "$$(cat $(PEERS_BIN)/centrifugo.version 2>/dev/null)" = "$(CENTRIFUGO_VERSION)" ]; then \
		notes="Centrifugo $(CENTRIFUGO_VERSION) was already installed in bin/peers."; \
	elif GOBIN=$(PEERS_BIN) GOFLAGS= $(GO) install github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION); then \
		echo $(CENTRIFUGO_VERSION) > $(PEERS_BIN)/centrifugo.version; \
		notes="Centrifugo $(CENTRIFUGO_VERSION): go install took $$(( $$(date +%s) - t0 )) s."; \
	else \
		rm -f $(PEERS_BIN)/centrifugo; notes="Centrifugo $(CENTRIFUGO_VERSION) left out: go install failed."; \
	fi; \
	t1=$$(date +%s); \
	if (cd bench/peers/soketi && timeout 600 npm ci --no-audit --no-fund --loglevel=error) > $(PEERS_BIN)/soketi-npm.log 2>&1; then \
		notes="$$notes\nsoketi: npm ci took $$(( $$(date +%s) - t1 )) s."; \
	else \
		notes="$$notes\nsoketi left out: npm ci failed after $$(( $$(date +%s) - t1 )) s: $$(grep -m3 'npm error' $(PEERS_BIN)/soketi-npm.log | tr '\n' ' ' | tr -d '\`|')"; \
	fi; \
	echo "$$notes"; \
	$(GO) run ./bench/cmd/peerload -centrifugo $(PEERS_BIN)/centrifugo -write BENCHMARKS.md -notes "$$notes" $(PEERLOAD_FLAGS)

## bench-cluster: issue 15's comparison: pushercm and Centrifugo $(CENTRIFUGO_VERSION) each as 3 nodes
## on a redis-server of the run's own (subscribers on node 0, publishes through node 2),
## then each on one node, and pushercm built from BASELINE_REF (before cluster mode) on one
## node (~8 minutes after the installs). Appends a dated section to BENCHMARKS.md.
BASELINE_REF ?= 1cc497c

bench-cluster:
	@mkdir -p $(PEERS_BIN); \
	if ! [ -x $(PEERS_BIN)/centrifugo ] || [ "$$(cat $(PEERS_BIN)/centrifugo.version 2>/dev/null)" != "$(CENTRIFUGO_VERSION)" ]; then \
		GOBIN=$(PEERS_BIN) GOFLAGS= $(GO) install github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION) && echo $(CENTRIFUGO_VERSION) > $(PEERS_BIN)/centrifugo.version; \
	fi; \
	base=$$(mktemp -d); bflag=""; notes="pushercm ×1, before cluster left out: $(BASELINE_REF) did not build."; \
	if git archive $(BASELINE_REF) | tar -x -C $$base && (cd $$base && $(GO) build -o $(PEERS_BIN)/pushercm-before ./cmd/pushercm); then \
		bflag="-baseline-pushercm $(PEERS_BIN)/pushercm-before"; \
		notes="pushercm ×1, before cluster: built from $(BASELINE_REF) ($$(git log -1 --format=%s $(BASELINE_REF) | cut -c1-72))."; \
	fi; rm -rf $$base; \
	$(GO) run ./bench/cmd/peerload -cluster -centrifugo $(PEERS_BIN)/centrifugo $$bflag -write BENCHMARKS.md -notes "$$notes" $(PEERLOAD_FLAGS)

## bench-single-node: pushercm on one node without Redis against BASELINE_REF (before cluster
## mode), both full binaries driven by this tree's edgeload in ABBA order, ROUNDS blocks of four
## runs per scenario (~3 minutes per round of the four scenarios). Prints the medians.
ROUNDS ?= 6
bench-single-node:
	bench/single-node-abba.sh $(BASELINE_REF) $(ROUNDS)

## bench-capacity: the capacity model's check in BENCHMARKS.md: 3 pushercm processes x 19k
## subscribers, each process's subscribers held by its own client process (the open-file
## limit is per process), then 100 events/s per process (~1.5 minutes).
bench-capacity:
	$(GO) run ./bench/cmd/peerload -capacity

## fuzz: every fuzz target in the repo, one after another, FUZZTIME each (found by
## tools/fuzz.sh; FUZZ=regexp picks targets). Stops at the first failing input.
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZPARALLEL=$(FUZZPARALLEL) FUZZ='$(FUZZ)' GO=$(GO) tools/fuzz.sh

## soak: SOAKCONNS WebSocket clients against a built pushercm on 127.0.0.1 with
## fan-out and churn for SOAKTIME; fails on loss, RSS, goroutine or fd growth.
soak: build
	$(GO) run ./bench/cmd/soak -bin $(BIN) -duration $(SOAKTIME) -conns $(SOAKCONNS)

clean:
	rm -rf bin
