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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		echo "fuzz-smoke: $pkg $t for $dur" >&2
		if ! go test -run='^$' -fuzz="^${t}\$" -fuzztime="$dur" "$pkg" >"$log" 2>&1; then
			# Show what failed: the crasher's input and message are in the
			# log, and a CI machine's testdata/fuzz/ is thrown away with it.
			grep -v '^fuzz: elapsed' "$log" | cut -c1-2000 | tail -n 40 >&2
			echo "fuzz-smoke: $pkg $t FAILED (rerun: go test -run='^$' -fuzz='^$t\$' $pkg)" >&2
			exit 1
		fi
		count=$((count + 1))
	done
done
echo "fuzz-smoke: $count targets ok" >&2
[ "$count" -gt 0 ] || { echo "fuzz-smoke: no fuzz targets found" >&2; exit 1; }
