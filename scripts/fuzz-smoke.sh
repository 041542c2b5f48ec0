#!/usr/bin/env bash
# scripts/fuzz-smoke.sh - run every Go fuzz target in the module for a short time.
#
#   usage: scripts/fuzz-smoke.sh [DURATION]     (default 5s per target)
#   env:   FUZZTIME  same as DURATION
#
# Targets are discovered with `go test -list '^Fuzz'`, so a new fuzz target is
# picked up without editing this file. Any failure (a crasher) stops the run
# with the failing package and target named; go test writes the crasher under
# that package's testdata/fuzz/ to be committed with its fix.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-${FUZZTIME:-5s}}
count=0
for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		echo "fuzz-smoke: $pkg $t for $dur" >&2
		go test -run='^$' -fuzz="^${t}\$" -fuzztime="$dur" "$pkg" >/dev/null ||
			{ echo "fuzz-smoke: $pkg $t FAILED (rerun: go test -run='^$' -fuzz='^$t\$' $pkg)" >&2; exit 1; }
		count=$((count + 1))
	done
done
echo "fuzz-smoke: $count targets ok" >&2
[ "$count" -gt 0 ] || { echo "fuzz-smoke: no fuzz targets found" >&2; exit 1; }
