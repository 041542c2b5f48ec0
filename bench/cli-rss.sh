#!/usr/bin/env bash
# bench/cli-rss.sh - peak resident size of `upkit delta apply` (the CLI) on every
# pair of the delta corpus, started cold: before each run the binary's pages are
# dropped from the page cache (dd iflag=nocache), as after a device's boot, so
# the figure does not depend on how earlier runs, or the linker writing the
# file, left the page cache (large folios of a just-written file stay resident
# where a cold start reads small ones; see docs/PERFORMANCE.md).
#
#   usage: bench/cli-rss.sh [UPKIT ...]
#          each UPKIT is an upkit binary to measure (default: one built from this
#          tree); with two or more, their runs alternate, for a comparison made in
#          one run of the machine.
#   env:   BENCH_CACHE  corpus folder (default /tmp/ota-corpus), as bench/delta.sh
#          RUNS         runs per pair and binary (default 3); the median is printed
#
# Patches are made once by the first binary, into a temporary folder. Prints a
# Markdown table: pair, then the median peak RSS (MiB, /usr/bin/time %M) per binary.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BENCH_CACHE:-${TMPDIR:-/tmp}/ota-corpus}
RUNS=${RUNS:-3}
die() { echo "cli-rss: $*" >&2; exit 1; }
[ -x /usr/bin/time ] || die "/usr/bin/time not found (Debian package time)"
ls "$CACHE"/*/old >/dev/null 2>&1 || die "no pairs in $CACHE: build the corpus first (bench/delta.sh, ../shared/bench/corpus.sh)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
bins=("$@")
if [ ${#bins[@]} = 0 ]; then
  (cd "$ROOT" && go build -o "$WORK/upkit" ./cmd/upkit)
  bins=("$WORK/upkit")
fi
for b in "${bins[@]}"; do [ -x "$b" ] || die "$b is not an executable"; done
sync "${bins[@]}"

cold() { dd if="$1" iflag=nocache count=0 status=none; }
# rss BIN OLD PATCH: the peak RSS in KiB of one cold apply.
rss() {
  cold "$1"
  /usr/bin/time -f %M -o "$WORK/time" "$1" delta apply --from "$2" --output "$WORK/new" "$3" >/dev/null 2>"$WORK/err" ||
    die "$1 delta apply failed on $3: $(cat "$WORK/err")"
  tail -n 1 "$WORK/time"
}

printf '| pair |'; for b in "${bins[@]}"; do printf ' %s |' "$b"; done; echo
printf '|---|'; for _ in "${bins[@]}"; do printf -- '---|'; done; echo
for dir in "$CACHE"/*/; do
  pair=$(basename "$dir")
  [ -f "$dir/old" ] && [ -f "$dir/new" ] || continue
  patch=$WORK/$pair.patch
  "${bins[0]}" delta create --from "$dir/old" --to "$dir/new" --output "$patch" >/dev/null 2>&1 ||
    die "${bins[0]} delta create failed on $pair"
  declare -A got=()
  for ((r = 0; r < RUNS; r++)); do
    for i in "${!bins[@]}"; do got[$i]+="$(rss "${bins[$i]}" "$dir/old" "$patch") "; done
  done
  printf '| %s |' "$pair"
  for i in "${!bins[@]}"; do
    printf ' %s |' "$(echo "${got[$i]}" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR] = $1} END {printf "%.1f", a[int((NR + 1) / 2)] / 1024}')"
  done
  echo
  unset got
done
