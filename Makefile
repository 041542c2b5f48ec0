# upkit - see README.md. `make test` is the command CI runs.
GO        ?= go
FUZZTIME  ?= 20000x
FUZZLONG  ?= 10m

.PHONY: all build install test test-deps vet race fuzz-smoke fuzz bench bench-delta docs fmt

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

race:
	$(GO) test -race -timeout 30m ./...

fuzz-smoke:
	scripts/fuzz-smoke.sh $(FUZZTIME)

# Every real component the tests use (Debian packages, Go-built tools):
# found, or installed/built once. See scripts/test-deps.sh.
test-deps:
	scripts/test-deps.sh

# The test command of README.md and CI; installs what it needs first.
test: test-deps
	$(MAKE) vet race fuzz-smoke

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
