#!/usr/bin/env bash
# bench/corpus-extra.sh - fetch and assemble upkit's own delta benchmark pairs,
# beside the shared corpus (../shared/bench/corpus.sh): executables for arm64
# and ARMv7, jumps over several releases, and one large (91 MB) arm64
# executable. Same rules as the shared corpus: every pair is a real published
# release pair, fetched by package name and version only (npm pack), the file
# taken from the tarball as is, and checked against the sha256 sums below.
# Output: $CACHE/PAIR/old, $CACHE/PAIR/new, $CACHE/PAIR/SOURCE.
#
#   usage: bench/corpus-extra.sh [--list | --sums] [PAIR...]
#   env:   BENCH_CACHE   cache folder (default ${TMPDIR:-/tmp}/ota-corpus),
#                        shared with corpus.sh (same download folder)
#   needs: npm, tar, gzip, unzip, sha256sum
set -euo pipefail

CACHE=${BENCH_CACHE:-${TMPDIR:-/tmp}/ota-corpus}
export LC_ALL=C
umask 022

# pair | npm package | old version | new version | file inside the npm tarball
# ("a.zip!b" means member b of zip a).
#   *-patch: consecutive releases; *-jump: several minor releases apart.
#   esbuild is Go (x86-64, AArch64, ARMv7 in ARM mode); biome, swc and turbo
#   are Rust (AArch64); Pybricks firmware is Cortex-M4 (Thumb-2).
NPM_PAIRS='
esbuild-x64-jump     @esbuild/linux-x64        0.25.0  0.27.6  package/bin/esbuild
esbuild-arm64-patch  @esbuild/linux-arm64      0.27.5  0.27.6  package/bin/esbuild
esbuild-arm64-jump   @esbuild/linux-arm64      0.25.0  0.27.6  package/bin/esbuild
esbuild-arm-patch    @esbuild/linux-arm        0.27.5  0.27.6  package/bin/esbuild
fw-pybricks-jump     @pybricks/firmware        7.22.0  7.28.0  package/build/primehub.zip!firmware-base.bin
swc-arm64-patch      @swc/core-linux-arm64-gnu 1.16.21 1.16.22 package/swc.linux-arm64-gnu.node
turbo-arm64-patch    turbo-linux-arm64         2.8.16  2.8.17  turbo-linux-arm64/bin/turbo
biome-arm64-patch    @biomejs/cli-linux-arm64  2.6.7   2.6.8   package/biome
'

SUMS='
esbuild-x64-jump/old     98f635ee88526a7d9dd7a82c8a79f341c0247de8aa56d38158c0963892957829
esbuild-x64-jump/new     8dff569de6fda5a2ccc664265e0832294958f3807618ee045c8cc6e13ce8cd7a
esbuild-arm64-patch/old  c09fa157b8845ab7c1ac3c3f3215652c7d4beb45555afe3b3950092d969a8c1b
esbuild-arm64-patch/new  8ecc9788e5c9119b2256a62026de4ec087e12a87febd5f674cc64e325c1944a7
esbuild-arm64-jump/old   a52e9fd41809ef39c0019c41695717ab4cf681639ad08c7e9531ce810d6ac943
esbuild-arm64-jump/new   8ecc9788e5c9119b2256a62026de4ec087e12a87febd5f674cc64e325c1944a7
esbuild-arm-patch/old    5fdc9bf6a7c7894c133eeb9805109ca21b526baefb6b401d5bd2164656a0d6d1
esbuild-arm-patch/new    2914e5a1c3a3bccfcf68a28accac4cf407e750172af97fe9fca7eb01572a111c
fw-pybricks-jump/old     1d2ccf6b71e121c7768e704343420de18b1c6ff6cba4cf896660ab1753d664af
fw-pybricks-jump/new     e5fd8bbd1030d7db5569b40f0758184ac04175c156ef2c4f72130bfd9e4c6316
swc-arm64-patch/old      9bffea405752b4e0a715089fbef11fc90329ecf3e1dcb4e22be4cbe6dfd4de13
swc-arm64-patch/new      3579e4b134e07bbb3a05c8f860eff7e346014a727a0137fc0e33a5527b04b803
turbo-arm64-patch/old    c3260a0740cdf4e1a27fa3143e4719305f8d83217baeb6207095f236ebbca59b
turbo-arm64-patch/new    58626aebc544517633aacb0443f23d8e2c3bb6a03a6117b09e6e2ce25e13b590
biome-arm64-patch/old    9fb030ad316bbbf9a7379e52c0a1d2ad44d6b97cc7fec91745f4901961804732
biome-arm64-patch/new    3e5b3bf3ff21c4beecfef424fd429d6937c5e04fe5d332ad69d45806349ce20c
'

die() { echo "corpus-extra.sh: $*" >&2; exit 1; }
log() { echo "corpus-extra.sh: $*" >&2; }

all_pairs() { echo "$NPM_PAIRS" | awk 'NF {print $1}'; }
want_sum() { echo "$SUMS" | awk -v f="$1" '$1 == f {print $2}'; }

pair_ok() {
  local f sum
  for f in old new; do
    [ -f "$CACHE/$1/$f" ] || return 1
    sum=$(sha256sum "$CACHE/$1/$f" | cut -d' ' -f1)
    [ "$sum" = "$(want_sum "$1/$f")" ] || return 1
  done
}

# npm_tgz PKG VER: print the path of the cached tarball, fetching it if needed
# (the same names as corpus.sh, so both scripts share the download folder).
npm_tgz() {
  local dl="$CACHE/dl/npm" name
  name=$(printf '%s' "${1#@}" | tr / -)-$2.tgz
  mkdir -p "$dl"
  if [ ! -s "$dl/$name" ]; then
    log "npm pack $1@$2"
    (cd "$dl" && npm pack --silent "$1@$2" >/dev/null) || die "npm pack $1@$2 failed"
  fi
  [ -s "$dl/$name" ] || die "npm pack $1@$2 did not give $name"
  echo "$dl/$name"
}

# npm_extract PKG VER MEMBER OUT
npm_extract() {
  local tgz inner tmp
  tgz=$(npm_tgz "$1" "$2")
  inner=${3%%!*}
  if [ "$inner" = "$3" ]; then
    tar -xzOf "$tgz" "$inner" > "$4.part"
  else
    tmp=$(mktemp -d)
    tar -xzOf "$tgz" "$inner" > "$tmp/a.zip"
    unzip -p "$tmp/a.zip" "${3#*!}" > "$4.part"
    rm -rf "$tmp"
  fi
  mv "$4.part" "$4"
}

build_pair() {
  local pair=$1 pkg old new member
  if pair_ok "$pair"; then log "$pair: ok (cached)"; return; fi
  read -r _ pkg old new member <<<"$(echo "$NPM_PAIRS" | awk -v p="$pair" '$1 == p')"
  [ -n "$pkg" ] || die "unknown pair $pair (see --list)"
  mkdir -p "$CACHE/$pair"
  npm_extract "$pkg" "$old" "$member" "$CACHE/$pair/old"
  npm_extract "$pkg" "$new" "$member" "$CACHE/$pair/new"
  printf 'npm %s %s -> %s, file %s\n' "$pkg" "$old" "$new" "$member" > "$CACHE/$pair/SOURCE"
  pair_ok "$pair" || die "$pair: sha256 mismatch (see --sums); upstream bytes or tool versions changed"
  log "$pair: ok"
}

sums_only=no
case ${1:-} in
  --list) all_pairs; exit 0 ;;
  --sums) sums_only=yes; shift ;;
esac
pairs=("$@")
[ $# -gt 0 ] || mapfile -t pairs < <(all_pairs)

if [ $sums_only = yes ]; then
  for p in "${pairs[@]}"; do
    for f in old new; do
      [ ! -f "$CACHE/$p/$f" ] ||
        printf '%-24s %s\n' "$p/$f" "$(sha256sum "$CACHE/$p/$f" | cut -d' ' -f1)"
    done
  done
  exit 0
fi

for pair in "${pairs[@]}"; do build_pair "$pair"; done
echo "$CACHE"
