#!/usr/bin/env bash
# bench/imagepkg.sh - image package throughput and memory, measured in one run
# on one 1 GiB payload, against the reference tools:
#
#   upkit pack --compress zstd   vs  zstd -3 -T0        (target >= 0.8x throughput)
#   upkit pack --compress none   (for reference)
#   upkit verify (none, zstd)    vs  openssl dgst -sha256 (target >= 0.9x throughput)
#   peak RSS of upkit verify     (target <= 32 MiB)
#
# Writes the results as a markdown table to docs/PERFORMANCE-imagepkg.md
# (override with OUT=...). Needs: go, zstd, openssl, GNU time (/usr/bin/time).
#
#   usage: bench/imagepkg.sh
#   env:   BENCH_OUT  working folder (default ${TMPDIR:-/tmp}/upkit-bench); the
#                     1 GiB payload is kept in BENCH_OUT/imagepkg for the next run,
#                     the packages made from it are removed
#          RUNS       rounds (default 5); each round runs every command once and
#                     the best time of each is reported
#          OUT        the markdown written (default docs/PERFORMANCE-imagepkg.md)
#
# The payload (1 GiB) mixes what OS images contain, in 32 stripes of 32 MiB:
# 16 MiB of random bytes (compressed or encrypted content), 8 MiB of text
# (Go source files of the toolchain, repeated) and 8 MiB of zeros (free
# space). Every tool reads the same files, warm in the page cache; each
# figure is the best wall-clock time over RUNS rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
OUT=${OUT:-$root/docs/PERFORMANCE-imagepkg.md}
RUNS=${RUNS:-5}
missing=()
for tool in zstd openssl /usr/bin/time; do
	command -v "$tool" >/dev/null || missing+=("$(basename "$tool")")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench: installing ${missing[*]}" >&2
	apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
	[ "$(id -u)" = 0 ] || apt=(sudo -n "${apt[@]}")
	DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
		{ echo "bench: needs ${missing[*]}: apt-get install -y ${missing[*]}" >&2; exit 1; }
fi
work=${BENCH_OUT:-${TMPDIR:-/tmp}/upkit-bench}/imagepkg
mkdir -p "$work"
trap 'rm -f "$work"/*.upk "$work"/*.zst "$work"/.*.tmp-*' EXIT

echo "bench: building upkit" >&2
go build -o "$work/upkit" ./cmd/upkit
upkit=$work/upkit
export UPKIT_PASSWORD= SOURCE_DATE_EPOCH=1700000000

payload=$work/payload.img
if [ ! -s "$payload" ] || [ "$(stat -c %s "$payload")" != 1073741824 ]; then
	echo "bench: generating the 1 GiB payload" >&2
	text=$work/text.src
	: >"$text"
	while [ "$(stat -c %s "$text")" -lt $((256 << 20)) ]; do
		find "$(go env GOROOT)/src" -name '*.go' -type f -print0 | sort -z | xargs -0 cat >>"$text"
	done
	for i in $(seq 0 31); do
		head -c 16M /dev/urandom
		dd if="$text" bs=1M skip=$((i * 8)) count=8 status=none
		head -c 8M /dev/zero
	done >"$payload"
	rm -f "$text"
fi
size=$(stat -c %s "$payload")

rm -f "$work/release.key" "$work/release.pub"
"$upkit" key generate --out "$work/release" --algorithm ed25519 >/dev/null 2>&1

# once NAME CMD...: run CMD once under GNU time; keep the best wall time (s)
# of NAME and the max RSS (KiB) of that run.
declare -A wall rss
once() {
	local name=$1 t r
	shift
	sync # start each command with no dirty pages of the previous one
	/usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/cmd.err" ||
		{ echo "bench: $name failed:" >&2; cat "$work/cmd.err" >&2; exit 1; }
	read -r t r <"$work/time.out"
	if [ -z "${wall[$name]:-}" ] || awk -v a="$t" -v b="${wall[$name]}" 'BEGIN{exit !(a<b)}'; then
		wall[$name]=$t rss[$name]=$r
	fi
}

cat "$payload" >/dev/null # warm the page cache
packargs=(pack --type os --component bench --version 1.0.0 --security-version 1 --hardware bench-hw --key "$work/release.key")
# Each round runs every command once, each tool right after its reference,
# so that a change of load on a shared machine hits both alike.
for round in $(seq "$RUNS"); do
	echo "bench: round $round of $RUNS" >&2
	once zstd zstd -3 -T0 -q -f "$payload" -o "$work/payload.zst"
	once pack-zstd "$upkit" "${packargs[@]}" --compress zstd -o "$work/zstd.upk" "$payload"
	once pack-none "$upkit" "${packargs[@]}" --compress none -o "$work/none.upk" "$payload"
	once openssl-none-upk openssl dgst -sha256 "$work/none.upk"
	once verify-none "$upkit" verify --key "$work/release.pub" "$work/none.upk"
	once openssl-payload openssl dgst -sha256 "$payload"
	once verify-zstd "$upkit" verify --key "$work/release.pub" "$work/zstd.upk"
done
for name in zstd pack-zstd pack-none openssl-payload openssl-none-upk verify-none verify-zstd; do
	echo "bench: $name: ${wall[$name]}s, max RSS ${rss[$name]} KiB" >&2
done

zsize=$(stat -c %s "$work/payload.zst")
usize=$(stat -c %s "$work/zstd.upk")
mibs() { awk -v s="$size" -v t="$1" 'BEGIN{printf "%.0f", s/1048576/t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b/a}'; } # throughput of a relative to b
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN{ok = dir=="ge" ? v>=t : v<=t; print ok ? "met" : "MISSED"}'; }

r_pack=$(ratio "${wall[pack-zstd]}" "${wall[zstd]}")
zsha=$(awk -v a="${wall[zstd]}" -v b="${wall[openssl-payload]}" 'BEGIN{printf "%.2f", a+b}')
r_pack2=$(ratio "${wall[pack-zstd]}" "$zsha")
r_vnone=$(ratio "${wall[verify-none]}" "${wall[openssl-none-upk]}")
r_vzstd=$(ratio "${wall[verify-zstd]}" "${wall[openssl-payload]}")
rss_max=$(awk -v a="${rss[verify-none]}" -v b="${rss[verify-zstd]}" 'BEGIN{print (a>b?a:b)}')

load=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)
{
	cat <<EOF
# Image package performance

Measured by \`bench/imagepkg.sh\` ($(date -u +%Y-%m-%d), best of $RUNS interleaved rounds, files warm in
the page cache; load average $load at the end). Machine: $cpu, $(nproc) CPUs, $mem RAM, $(uname -sr),
$(go version | cut -d' ' -f3), $(zstd --version | head -1 | sed 's/^\*\*\* //; s/ \*\*\*$//'), $(openssl version | cut -d' ' -f1-2).

Payload: 1 GiB ($size bytes) in 32 stripes of 16 MiB random bytes, 8 MiB of
Go source text and 8 MiB of zeros. zstd -3 stores it in $zsize bytes, upkit
(klauspost/compress SpeedDefault, concurrent blocks) in $usize bytes
(package). Throughput is payload bytes per wall-clock second.

| operation | time (s) | MiB/s | reference | ratio | target | peak RSS (MiB) |
|---|---:|---:|---|---:|---|---:|
| \`zstd -3 -T0\` | ${wall[zstd]} | $(mibs "${wall[zstd]}") | | | | $(mib "${rss[zstd]}") |
| \`upkit pack --compress zstd\` | ${wall[pack-zstd]} | $(mibs "${wall[pack-zstd]}") | zstd -3 -T0 | $r_pack | >= 0.8 ($(verdict "$r_pack" 0.8 ge)) | $(mib "${rss[pack-zstd]}") |
| (informational) same, against zstd -3 -T0 plus openssl hashing the payload | | | zstd + openssl: ${zsha} s | $r_pack2 | | |
| \`upkit pack --compress none\` | ${wall[pack-none]} | $(mibs "${wall[pack-none]}") | | | | $(mib "${rss[pack-none]}") |
| \`openssl dgst -sha256\` payload | ${wall[openssl-payload]} | $(mibs "${wall[openssl-payload]}") | | | | $(mib "${rss[openssl-payload]}") |
| \`openssl dgst -sha256\` none.upk | ${wall[openssl-none-upk]} | $(mibs "${wall[openssl-none-upk]}") | | | | $(mib "${rss[openssl-none-upk]}") |
| \`upkit verify\` (none) | ${wall[verify-none]} | $(mibs "${wall[verify-none]}") | openssl on the same .upk | $r_vnone | >= 0.9 ($(verdict "$r_vnone" 0.9 ge)) | $(mib "${rss[verify-none]}") |
| \`upkit verify\` (zstd) | ${wall[verify-zstd]} | $(mibs "${wall[verify-zstd]}") | openssl on the 1 GiB payload | $r_vzstd | >= 0.9 ($(verdict "$r_vzstd" 0.9 ge)) | $(mib "${rss[verify-zstd]}") |

Peak RSS of \`upkit verify\`: $(mib "$rss_max") MiB (target <= 32 MiB: $(verdict "$rss_max" 32768 le)).

Notes:
- \`upkit pack\` does more than \`zstd\`: it hashes the 1 GiB input (SHA-256,
  for the signed metadata) while compressing it into a spool file next to
  the output (the metadata, which holds the stored size, precedes the
  payload), then writes header and spooled payload to a temporary output
  (kernel copy, while another goroutine hashes it for the package digest
  printed on stdout), fsyncs and renames it. klauspost's SpeedDefault
  alone runs at about zstd -3's speed (same compressed size); the
  payload's SHA-256 (which the format needs), the spool write and copy
  and the fsync are what upkit does on top, all on the same 2 CPUs.
- \`upkit verify\` of a zstd package decompresses and hashes the full 1 GiB
  payload, so its reference is openssl hashing that payload; of an
  uncompressed package, openssl hashing the same .upk file. Its peak RSS
  includes about 17 MiB that the upkit binary uses before any work (the
  CLI links sigstore and go-containerregistry); the streaming itself adds
  the 1 MiB read buffer, 1 MiB of decoding buffers and the zstd decoder's
  window (2 MiB as packed, 8 MiB at most). Decompression runs in its own
  goroutine, in parallel with hashing.
- The rest of \`upkit pack\`'s time is serial: copying the spool (about
  0.4 s per GiB stored) and the fsync; the key (scrypt) is loaded while
  the payload is compressed. \`upkit pack --compress none\` needs no spool:
  it hashes the file, then has the kernel copy it after the header while
  hashing the package, then fsyncs 1 GiB.
EOF
} >"$OUT"
echo "bench: wrote $OUT" >&2
cat "$OUT"
