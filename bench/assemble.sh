#!/usr/bin/env bash
# bench/assemble.sh - build docs/PERFORMANCE.md from the per-part tables that
# the bench scripts write (docs/PERFORMANCE-*.md), with the machine's
# description, so the document always shows figures of one kind of run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/PERFORMANCE.md
{
	echo "# Performance"
	echo
	echo "Assembled by bench/assemble.sh ($(date -u +%Y-%m-%d)) from the table each"
	echo "benchmark script writes (\`make bench\` runs them all, then this). Within"
	echo "a table, upkit and the reference tool are measured in the same run on the"
	echo "same machine, and figures are given as ratios, because these machines"
	echo "are noisy; each table says when and under what load it was measured."
	echo
	if [ -n "${BENCH_RUN:-}" ]; then
		echo "The last \`bench/run.sh\` (commit ${BENCH_COMMIT:-unknown}) measured: ${BENCH_RUN}."
		echo "A part it did not run keeps the table of an earlier run."
		echo
	fi
	echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo),"
	echo "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(go version | cut -d' ' -f3), $(uname -sr)."
	for part in imagepkg delta oci device; do
		f=docs/PERFORMANCE-$part.md
		[ -f "$f" ] || continue
		echo
		# Demote the part's headings by one level.
		sed 's/^#/##/' "$f"
	done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "bench: wrote $out" >&2
