# pushercm — see README.md. Every tool is pinned: Go tools in go.mod and
# tools/go.mod (run with `go tool`), npm packages in test/js/package-lock.json.

GO        ?= go
BUF       := $(GO) tool -modfile=tools/go.mod buf
LINT      := $(GO) tool -modfile=tools/go.mod golangci-lint
BIN       := bin/pushercm
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/milequest/pushercm/app.Version=$(VERSION)
# Benchmarks, fuzzing and soaks are never part of `make test` (the fuzz targets'
# seed corpora run there as ordinary tests).
BENCHTIME ?= 1s
FUZZTIME ?= 10m
FUZZPARALLEL ?= 1
FUZZ ?= .
SOAKTIME ?= 10m
SOAKCONNS ?= 15000

.PHONY: all build run test unit vet buflint generate checkgenerate lint js-deps bench bench-auth bench-broadcast fuzz soak fmt clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pushercm

## run: build and start `pushercm serve --dev` on the embedded driver.
run: build
	./$(BIN) serve --dev

## test: everything CI runs (the README's test command).
test: vet buflint checkgenerate js-deps unit

vet:
	$(GO) vet ./...

buflint:
	$(BUF) lint

unit:
	$(GO) test -race -count=1 -timeout 9m ./...

## js-deps: install the pinned pusher-js and pusher npm packages for the interop tests.
js-deps:
	cd test/js && npm ci --no-audit --no-fund --loglevel=error

## generate: regenerate gen/ from proto/ with buf and the pinned plugins.
generate:
	$(BUF) generate

## checkgenerate: fail when gen/ differs from what proto/ generates.
checkgenerate:
	@$(BUF) generate
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		echo "gen/ is out of date with proto/: run 'make generate' and commit"; \
		git status --porcelain -- gen; git diff --stat -- gen; exit 1; \
	fi

## lint: golangci-lint and buf lint.
lint: buflint
	$(LINT) run ./...

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '^gen/')

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
