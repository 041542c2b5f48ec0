#!/usr/bin/env bash
# bench/oci.sh - publish and fetch throughput of upkit against crane, in one run, on the same
# bytes, against the same real registry (CNCF distribution from the Debian package
# docker-registry, on loopback, filesystem storage):
#
#   upkit push  RELEASE_DIR  REG/bench/upkit-N:1    vs  crane push LAYOUT REG/bench/crane-N:1
#   upkit pull  REG/...:1 -o DIR                    vs  crane pull --format oci REG/...:1 DIR
#
# The release holds one 256 MiB image package (random bytes, --compress none) and its signed
# envelope. crane pushes an OCI image layout holding the very same artifact (written by
# `upkit push ... oci:LAYOUT`), so both tools move identical blobs and manifests. Every push
# goes to a fresh repository (no blob is skipped or mounted); every pull to an empty
# directory; sources are warm in the page cache. Each figure is the best of RUNS (default 7)
# runs, upkit and crane alternating (the best is the least disturbed by other load on a shared
# machine; every raw time is printed too). Target: upkit >= 0.9x crane's throughput.
#
# Writes docs/PERFORMANCE-oci.md (override with OUT=...). Needs go and docker-registry
# (scripts/registry.sh install distribution); crane v0.22.1 is built from the module cache.
#
#   usage: bench/oci.sh          (SIZE_MIB=256 RUNS=7 WORK=/path to keep files)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
OUT=${OUT:-$root/docs/PERFORMANCE-oci.md}
RUNS=${RUNS:-7}
SIZE_MIB=${SIZE_MIB:-256}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

work=${WORK:-$(mktemp -d /tmp/upkit-bench-oci.XXXXXX)}
mkdir -p "$work"
export TMPDIR_BENCH=$work
regdir=$work/registry-state
cleanup() {
	TMPDIR=$regdir scripts/registry.sh stop distribution >/dev/null 2>&1 || true
	[ -n "${WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

log() { printf 'bench/oci: %s\n' "$*" >&2; }

log "building upkit and crane"
go build -o "$work/upkit" ./cmd/upkit
upkit=$work/upkit
ggcr=$(go mod download -json github.com/google/go-containerregistry@v0.22.1 |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
(cd "$ggcr/cmd/crane" && GOFLAGS=-mod=readonly go build -trimpath -o "$work/crane" .)
crane=$work/crane

mkdir -p "$regdir"
addr=$(TMPDIR=$regdir scripts/registry.sh start distribution)
log "registry at $addr"

# A signed release with one SIZE_MIB package.
export UPKIT_PASSWORD= SOURCE_DATE_EPOCH=1780000000
rel=$work/release
if [ ! -s "$rel/release.json" ]; then
	rm -rf "$rel"
	mkdir -p "$rel"
	log "making a ${SIZE_MIB} MiB package and its signed release"
	head -c $((SIZE_MIB << 20)) /dev/urandom >"$work/payload.img"
	"$upkit" key generate --out "$work/ci" >/dev/null 2>&1
	"$upkit" pack --type os --component rootfs --version 1.0.0 --security-version 1 --hardware bench \
		--compress none --key "$work/ci.key" -o "$rel/rootfs.upk" "$work/payload.img" >/dev/null
	"$upkit" release create --product bench --version 1 --expires 30d -o "$rel/release.json" "$rel/rootfs.upk" 2>/dev/null
	"$upkit" release sign --key "$work/ci.key" "$rel/release.json" 2>/dev/null
	rm -f "$work/payload.img"
fi
layout=$work/layout
rm -rf "$layout"
"$upkit" push -q "$rel" "oci:$layout:1" >/dev/null 2>&1
bytes=$(stat -c %s "$rel/rootfs.upk")
bytes=$((bytes + $(stat -c %s "$rel/release.json")))
cat "$rel/rootfs.upk" "$rel/release.json" >/dev/null # warm the page cache

# secs CMD... : wall-clock seconds of CMD (stdout/stderr discarded), 3 decimals.
secs() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>"$work/last.err" || {
		cat "$work/last.err" >&2
		return 1
	}
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}
best() { printf '%s\n' "$@" | sort -g | head -n1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

up_push=() cr_push=() up_pull=() cr_pull=()
for i in $(seq "$RUNS"); do
	log "run $i/$RUNS"
	up_push+=("$(secs "$upkit" push -q "$rel" "$addr/bench/upkit-$i:1")")
	cr_push+=("$(secs "$crane" push "$layout" "$addr/bench/crane-$i:1")")
	rm -rf "$work/pull-upkit" "$work/pull-crane"
	up_pull+=("$(secs "$upkit" pull -q "$addr/bench/upkit-$i:1" -o "$work/pull-upkit")")
	cr_pull+=("$(secs "$crane" pull --format oci "$addr/bench/crane-$i:1" "$work/pull-crane")")
	# upkit pull names a package COMPONENT-VERSION.upk.
	cmp -s "$work/pull-upkit/rootfs-1.0.0.upk" "$rel/rootfs.upk" || { log "upkit pulled different bytes"; exit 1; }
done
rm -rf "$work/pull-upkit" "$work/pull-crane"

mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
row() { # row NAME UPKIT_BEST CRANE_BEST UPKIT_MEDIAN CRANE_MEDIAN
	awk -v n="$1" -v u="$2" -v c="$3" -v um="$4" -v cm="$5" -v m="$mib" \
		'BEGIN { printf "| %s | %.2f s (%.0f MiB/s) | %.2f s (%.0f MiB/s) | %.2f | %.2f |\n", n, u, m / u, c, m / c, c / u, cm / um }'
}
mp=$(best "${up_push[@]}") mc=$(best "${cr_push[@]}") lp=$(best "${up_pull[@]}") lc=$(best "${cr_pull[@]}")
mmp=$(median "${up_push[@]}") mmc=$(median "${cr_push[@]}") mlp=$(median "${up_pull[@]}") mlc=$(median "${cr_pull[@]}")
{
	echo "# OCI publish and fetch: upkit vs crane"
	echo
	echo "Measured by \`bench/oci.sh\` on $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(go version | cut -d' ' -f3),"
	echo "$(docker-registry --version 2>/dev/null | awk '{print $2, $3}' || echo distribution) on 127.0.0.1, filesystem storage)."
	echo "One release: a ${SIZE_MIB} MiB image package (uncompressible) plus its signed envelope,"
	echo "$mib MiB in all. crane v0.22.1 pushes an OCI layout holding the same artifact, so both"
	echo "tools move identical blobs. Fresh repository per push, empty directory per pull, best of"
	echo "$RUNS alternating runs. Ratio = upkit throughput / crane throughput (target >= 0.90), of the"
	echo "best runs and of the medians; the load of a shared machine moves single runs by 2x."
	echo
	echo "| operation | upkit (best) | crane (best) | ratio (best) | ratio (median) |"
	echo "|---|---|---|---|---|"
	row "push (upload ${SIZE_MIB} MiB)" "$mp" "$mc" "$mmp" "$mmc"
	row "pull (download ${SIZE_MIB} MiB, verify, write)" "$lp" "$lc" "$mlp" "$mlc"
	echo
	echo "Raw seconds: upkit push ${up_push[*]}; crane push ${cr_push[*]}; upkit pull ${up_pull[*]}; crane pull ${cr_pull[*]}."
	echo
	echo "What each side does: upkit push hashes nothing itself (the signed release gives every"
	echo "digest; the registry checks each uploaded blob against it); crane push reads digests from"
	echo "the layout. upkit pull fetches by the signed digest, hashes while writing \`NAME.partial\`,"
	echo "then fsyncs and renames (the fsync of 256 MiB is about 0.15 s here; crane does not fsync);"
	echo "crane pull --format oci verifies digests while writing the layout's blobs."
} >"$OUT"
cat "$OUT"
