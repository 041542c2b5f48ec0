#!/usr/bin/env bash
# bench/run.sh - `make bench`: every benchmark of upkit in one run, each
# against its reference tool measured in the same run, then docs/PERFORMANCE.md
# assembled from their tables.
#
#   usage: bench/run.sh [PART...]     PART: imagepkg oci delta device (default: all)
#   env:   BENCH_OUT   working folder (default ${TMPDIR:-/tmp}/upkit-bench)
#
# Needs what each part's script says (time, zstd, openssl, crane, the corpus,
# a local registry); each script installs or explains what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("$@")
[ $# -gt 0 ] || parts=(imagepkg oci delta device)
for p in "${parts[@]}"; do
	case $p in
	imagepkg) bash bench/imagepkg.sh ;;
	oci) bash bench/oci.sh ;;
	delta) bash bench/delta.sh ;;
	device) bash bench/device-size.sh ;;
	*) echo "bench/run.sh: unknown part $p" >&2; exit 2 ;;
	esac
done
BENCH_RUN="${parts[*]}" BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) bash bench/assemble.sh
