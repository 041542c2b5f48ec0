# upkit - see README.md. `make test` is the command CI runs.
GO        ?= go
FUZZTIME  ?= 20000x
FUZZLONG  ?= 10m

# make e2e: power cuts and their seed (0: from the clock, printed), which
# scenarios (a go test -run pattern; SKIP: a -skip pattern), and V=1 to copy
# the device's console.
CUTS      ?= 20
SEED      ?= 0
RUN       ?= .
SKIP      ?=
E2E_TIMEOUT ?= 150m

.PHONY: all build install test test-deps vet race fuzz-smoke fuzz bench bench-delta docs fmt e2e e2e-short e2e-deps

all: build

build:
	$(GO) build ./...

install:
	$(GO) install ./cmd/upkit

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e

race:
	$(GO) test -race -timeout 30m ./...

fuzz-smoke:
	scripts/fuzz-smoke.sh $(FUZZTIME)

# Every real component the tests use (Debian packages, Go-built tools):
# found, or installed/built once. See scripts/test-deps.sh.
test-deps:
	scripts/test-deps.sh

# The test command of README.md and CI; installs what it needs first
# (e2e-short installs the QEMU device's packages).
test: test-deps
	$(MAKE) vet race fuzz-smoke e2e-short

# Each fuzz target for FUZZLONG (default 10m).
fuzz:
	scripts/fuzz-smoke.sh $(FUZZLONG)

bench:
	bench/run.sh

bench-delta:
	bench/delta.sh

# docs/cli/ from the command tree; TestCLIDocsCurrent fails when it is stale.
docs:
	$(GO) run ./cmd/upkit gen-docs docs/cli

# The virtual device's scenarios in QEMU (docs/E2E.md): builds the disk images
# (cached), then runs every scenario; CUTS power cuts at moments from SEED.
e2e: e2e-deps
	$(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) -run '$(RUN)' $(if $(SKIP),-skip '$(SKIP)') ./e2e \
	  -args -e2e.cuts=$(CUTS) -e2e.seed=$(SEED) $(if $(V),-e2e.console)

# What make test runs of it: the agent's scenarios 1 (update by delta), 2
# (failed update), 3 (rollback refused) and E2E_SHORT_CUTS power cuts of an
# update (docs/E2E.md has the times).
E2E_SHORT ?= TestAgent(UpdateDelta|FailedUpdate|RollbackRefused|PowerCuts)$$
E2E_SHORT_CUTS ?= 5
e2e-short: e2e-deps
	$(GO) test -tags e2e -count=1 -v -timeout 60m -run '$(E2E_SHORT)' ./e2e \
	  -args -e2e.cuts=$(E2E_SHORT_CUTS) -e2e.seed=$(SEED) $(if $(V),-e2e.console)

e2e-deps:
	scripts/test-deps.sh --e2e
