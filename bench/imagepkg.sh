#!/usr/bin/env bash
# bench/imagepkg.sh - image package throughput and memory, measured in one run
# on one 1 GiB payload, against the reference tools:
#
#   upkit pack --compress zstd   vs  zstd -3 -T0        (target >= 0.8x throughput,
#                                                         same size within 1%)
#   upkit pack --compress none   vs  openssl dgst -sha256 + cp (target >= 0.8x)
#   peak RSS of upkit pack       (target <= 64 MiB, whatever the payload size)
#   upkit verify (none, zstd)    vs  openssl dgst -sha256 (target >= 0.9x throughput)
#   peak RSS of upkit verify     (target <= 32 MiB)
#
# upkit pack is measured twice: as users run it, with a key file (whose
# scrypt costs 64 MiB and about 0.3 s by design, whatever the payload), and
# as bench/packmem, the same imagepkg.PackPath with an in-memory key, which
# is the packing alone.
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
trap 'rm -f "$work"/*.upk "$work"/*.zst "$work"/copy.img "$work"/.*.tmp-*' EXIT

echo "bench: building upkit" >&2
go build -o "$work/upkit" ./cmd/upkit
go build -o "$work/packmem" ./bench/packmem
upkit=$work/upkit packmem=$work/packmem
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
	once packmem-zstd "$packmem" -compress zstd "$payload" "$work/zstd-mem.upk"
	once sha-cp sh -c 'openssl dgst -sha256 "$1" && cp "$1" "$2"' sh "$payload" "$work/copy.img"
	once pack-none "$upkit" "${packargs[@]}" --compress none -o "$work/none.upk" "$payload"
	once packmem-none "$packmem" -compress none "$payload" "$work/none-mem.upk"
	once openssl-none-upk openssl dgst -sha256 "$work/none.upk"
	once verify-none "$upkit" verify --key "$work/release.pub" "$work/none.upk"
	once openssl-payload openssl dgst -sha256 "$payload"
	once verify-zstd "$upkit" verify --key "$work/release.pub" "$work/zstd.upk"
done
for name in zstd pack-zstd packmem-zstd sha-cp pack-none packmem-none openssl-payload openssl-none-upk verify-none verify-zstd; do
	echo "bench: $name: ${wall[$name]}s, max RSS ${rss[$name]} KiB" >&2
done

zsize=$(stat -c %s "$work/payload.zst")
usize=$(stat -c %s "$work/zstd.upk")
mibs() { awk -v s="$size" -v t="$1" 'BEGIN{printf "%.0f", s/1048576/t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b/a}'; } # throughput of a relative to b
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN{ok = dir=="ge" ? v>=t : v<=t; print ok ? "met" : "MISSED"}'; }

r_pack=$(ratio "${wall[pack-zstd]}" "${wall[zstd]}")
r_packmem=$(ratio "${wall[packmem-zstd]}" "${wall[zstd]}")
r_none=$(ratio "${wall[pack-none]}" "${wall[sha-cp]}")
r_nonemem=$(ratio "${wall[packmem-none]}" "${wall[sha-cp]}")
r_vnone=$(ratio "${wall[verify-none]}" "${wall[openssl-none-upk]}")
r_vzstd=$(ratio "${wall[verify-zstd]}" "${wall[openssl-payload]}")
rss_max=$(awk -v a="${rss[verify-none]}" -v b="${rss[verify-zstd]}" 'BEGIN{print (a>b?a:b)}')
rss_pack=$(awk -v a="${rss[packmem-none]}" -v b="${rss[packmem-zstd]}" 'BEGIN{print (a>b?a:b)}')
# the stored payload: the package minus its header
hdr=$(od -An -tu4 --endian=big -j16 -N4 "$work/zstd.upk" | tr -d ' ')
psize=$(($(stat -c %s "$work/zstd.upk") - hdr))
r_size=$(awk -v a="$psize" -v b="$zsize" 'BEGIN{printf "%+.2f%%", (a/b-1)*100}')
size_ok=$(awk -v a="$psize" -v b="$zsize" 'BEGIN{d=a/b-1; if (d<0) d=-d; print d<=0.01 ? "met" : "MISSED"}')

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
(klauspost/compress SpeedDefault, independent 4 MiB frames) in $psize bytes
($r_size: target within 1%, $size_ok). Throughput is payload bytes per
wall-clock second; a ratio is the reference's time over upkit's.

| operation | time (s) | MiB/s | reference | ratio | target | peak RSS (MiB) |
|---|---:|---:|---|---:|---|---:|
| \`zstd -3 -T0\` | ${wall[zstd]} | $(mibs "${wall[zstd]}") | | | | $(mib "${rss[zstd]}") |
| \`upkit pack --compress zstd\` (key file) | ${wall[pack-zstd]} | $(mibs "${wall[pack-zstd]}") | zstd -3 -T0 | $r_pack | >= 0.8 ($(verdict "$r_pack" 0.8 ge)) | $(mib "${rss[pack-zstd]}") |
| packing alone (bench/packmem, zstd) | ${wall[packmem-zstd]} | $(mibs "${wall[packmem-zstd]}") | zstd -3 -T0 | $r_packmem | >= 0.8 ($(verdict "$r_packmem" 0.8 ge)) | $(mib "${rss[packmem-zstd]}") |
| \`openssl dgst -sha256\` + \`cp\` | ${wall[sha-cp]} | $(mibs "${wall[sha-cp]}") | | | | $(mib "${rss[sha-cp]}") |
| \`upkit pack --compress none\` (key file) | ${wall[pack-none]} | $(mibs "${wall[pack-none]}") | openssl + cp | $r_none | >= 0.8 ($(verdict "$r_none" 0.8 ge)) | $(mib "${rss[pack-none]}") |
| packing alone (bench/packmem, none) | ${wall[packmem-none]} | $(mibs "${wall[packmem-none]}") | openssl + cp | $r_nonemem | >= 0.8 ($(verdict "$r_nonemem" 0.8 ge)) | $(mib "${rss[packmem-none]}") |
| \`openssl dgst -sha256\` payload | ${wall[openssl-payload]} | $(mibs "${wall[openssl-payload]}") | | | | $(mib "${rss[openssl-payload]}") |
| \`openssl dgst -sha256\` none.upk | ${wall[openssl-none-upk]} | $(mibs "${wall[openssl-none-upk]}") | | | | $(mib "${rss[openssl-none-upk]}") |
| \`upkit verify\` (none) | ${wall[verify-none]} | $(mibs "${wall[verify-none]}") | openssl on the same .upk | $r_vnone | >= 0.9 ($(verdict "$r_vnone" 0.9 ge)) | $(mib "${rss[verify-none]}") |
| \`upkit verify\` (zstd) | ${wall[verify-zstd]} | $(mibs "${wall[verify-zstd]}") | openssl on the 1 GiB payload | $r_vzstd | >= 0.9 ($(verdict "$r_vzstd" 0.9 ge)) | $(mib "${rss[verify-zstd]}") |

Peak RSS of the packing: $(mib "$rss_pack") MiB (target <= 64 MiB: $(verdict "$rss_pack" 65536 le)); of
\`upkit pack\` with a key file, $(mib "${rss[pack-zstd]}") MiB. Peak RSS of \`upkit verify\`: $(mib "$rss_max") MiB
(target <= 32 MiB: $(verdict "$rss_max" 32768 le)).

Notes:
- \`upkit pack\` reads the input once: one goroutine reads and hashes it
  (SHA-256, for the signed metadata), workers (one per CPU, at most 4)
  compress independent 4 MiB zstd frames, and the caller writes them in
  order at the payload offset reserved after the header (format version 2);
  then it signs and writes the header, and hashes the package for the digest
  it prints while the kernel writes it back (fsync), then renames it. The
  memory is the ring of frames in flight, (workers + 2) x (4 MiB in + about
  4 MiB out), and the encoders' tables: it does not grow with the payload.
- With a key file, \`upkit pack\` also decrypts the key: cosign's key
  format uses scrypt with N=2^16, r=8, which takes 64 MiB and about 0.3 s
  of one CPU by design, whatever the payload. It runs while the payload is
  packed. The \`bench/packmem\` rows are the packing alone (an in-memory
  TEST-ONLY key), as with a PKCS#11 or KMS key.
- \`upkit verify\` of a zstd package decompresses and hashes the full 1 GiB
  payload, so its reference is openssl hashing that payload; of an
  uncompressed package, openssl hashing the same .upk file. Its peak RSS
  includes what the upkit binary uses before any work (the CLI links
  sigstore and go-containerregistry); the streaming itself adds the 1 MiB
  read buffer, 1 MiB of decoding buffers and the zstd decoder's window
  (2 MiB as packed, 8 MiB at most). Decompression runs in its own
  goroutine, in parallel with hashing.
- Where the packing targets are missed, and what was tried. On 2 CPUs
  \`zstd -3 -T0\` keeps both busy with compression alone. \`upkit pack\`
  must also hash its input (SHA-256, signed into the metadata:
  ${wall[openssl-payload]} s of one CPU for openssl here), and it hashes
  the package once more for the digest it prints (the header is written
  last, so that hash cannot run beside the frames). With both CPUs busy,
  that is about ${wall[zstd]} + (${wall[openssl-payload]} + ${wall[openssl-none-upk]} / 2) / 2 s
  of work against zstd's ${wall[zstd]} s. The uncompressed pack fsyncs
  the 1 GiB it wrote, which \`cp\` does not, and hashes the package too.
  Tried: spooling and copying (format version 1, 0.28x to 0.49x);
  writing in place at a reserved payload offset (version 2); independent
  frames on every CPU with the input hashed by the reader; the kernel's
  copy_file_range for an uncompressed payload; loading the key while
  packing. Left: dropping the printed package digest (a second pass over
  the output) or the fsync would buy the rest; neither is worth a package
  that may not be on disk or a digest the user must compute again.
EOF
} >"$OUT"
echo "bench: wrote $OUT" >&2
cat "$OUT"
