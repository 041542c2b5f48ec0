#!/usr/bin/env bash
# bench/device-size.sh - what the device library costs firmware, measured in
# one run:
#
#   size: a minimal update agent linking package device (bench/sizeprog/device)
#         and upkit-agent (cmd/upkit-agent: the device library, GRUB and
#         U-Boot, partition slots, TPM counters, the OCI registry source)
#         against a standard-library-only ECDSA/Ed25519 DSSE + sha256 verifier
#         (bench/sizeprog/stdlib), all built the same way:
#         GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'
#         targets: ratio <= 1.5x (library), <= 2.5x (upkit-agent)
#   RSS:  peak resident set size (GNU time) of a device installing and
#         committing a SIZE-byte image (default 100 MiB) by delta, and by
#         full package (bench/devicemem), and of upkit-agent doing the same
#         (`install` from an OCI layout, then the `boot` that commits);
#         target <= 32 MiB
#
# Writes docs/PERFORMANCE-device.md (override with OUT=...). Needs go and
# GNU time (/usr/bin/time: apt-get install -y time).
#
#   usage: bench/device-size.sh        (SIZE=bytes, WORK=dir to keep files)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
OUT=${OUT:-$root/docs/PERFORMANCE-device.md}
SIZE=${SIZE:-104857600}
command -v /usr/bin/time >/dev/null || { echo "bench: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=${WORK:-$(mktemp -d /tmp/upkit-device-bench.XXXXXX)}
mkdir -p "$work"
trap '[ -n "${WORK:-}" ] || rm -rf "$work"' EXIT

build_arm64() {
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$2" "$1"
}
echo "bench: building the size programs (linux/arm64, stripped)" >&2
build_arm64 ./bench/sizeprog/device "$work/device-arm64"
build_arm64 ./bench/sizeprog/stdlib "$work/stdlib-arm64"
build_arm64 ./cmd/upkit-agent "$work/upkit-agent-arm64"
dev_size=$(stat -c %s "$work/device-arm64")
std_size=$(stat -c %s "$work/stdlib-arm64")
agent_size=$(stat -c %s "$work/upkit-agent-arm64")
ratio=$(awk -v a="$dev_size" -v b="$std_size" 'BEGIN { printf "%.2f", a / b }')
size_ok=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.5) ? "yes" : "NO" }')
agent_ratio=$(awk -v a="$agent_size" -v b="$std_size" 'BEGIN { printf "%.2f", a / b }')
agent_ok=$(awk -v r="$agent_ratio" 'BEGIN { print (r <= 2.5) ? "yes" : "NO" }')
echo "bench: device agent $dev_size bytes, stdlib verifier $std_size bytes, ratio ${ratio}x" >&2
echo "bench: upkit-agent $agent_size bytes, ratio ${agent_ratio}x" >&2

echo "bench: generating a $SIZE-byte update (delta.Create is slow; the measured run is not)" >&2
go build -o "$work/devicemem" ./bench/devicemem
rm -rf "$work/gen"
mkdir -p "$work/gen"
"$work/devicemem" gen "$work/gen" "$SIZE"
declare -A rss line
for dev in dev-delta dev-full; do
	rm -rf "$work/run"
	cp -a "$work/gen" "$work/run"
	line[$dev]=$(/usr/bin/time -v -o "$work/time-$dev.txt" "$work/devicemem" run "$work/run" "$dev")
	kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time-$dev.txt")
	rss[$dev]=$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')
	echo "bench: $dev: ${line[$dev]}; peak RSS ${rss[$dev]} MiB" >&2
done
rss_ok() { awk -v r="$1" 'BEGIN { print (r <= 32) ? "yes" : "NO" }'; }

# upkit-agent (built for this host): the first boot (provisioning, and for
# agent-delta adopting the factory release: slot A read back), then the
# measured install from the OCI layout (--no-reboot), then the measured boot
# of the trial (slot B on the kernel command line), which commits.
# (The agent devices are used once, where gen made them: agent.json names
# their absolute paths.)
go build -trimpath -o "$work/upkit-agent" ./cmd/upkit-agent
peak() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
secs() { awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$1"; }
for dev in agent-delta agent-full; do
	cfg=$work/gen/$dev/agent.json
	"$work/upkit-agent" --config "$cfg" boot 2>"$work/boot0-$dev.log"
	/usr/bin/time -v -o "$work/time-install-$dev.txt" "$work/upkit-agent" --config "$cfg" install --no-reboot "$work/gen/layout" 2>"$work/install-$dev.log"
	printf 'upkit.slot=B\n' >"$work/gen/$dev/cmdline"
	/usr/bin/time -v -o "$work/time-boot-$dev.txt" "$work/upkit-agent" --config "$cfg" boot 2>"$work/boot-$dev.log"
	grep -q "commit: release bench version 2 committed" "$work/boot-$dev.log" || { echo "bench: $dev did not commit:" >&2; cat "$work/boot-$dev.log" >&2; exit 1; }
	line[$dev]=$(grep -o 'installed: .*' "$work/install-$dev.log")
	rss[install-$dev]=$(peak "$work/time-install-$dev.txt")
	rss[boot-$dev]=$(peak "$work/time-boot-$dev.txt")
	echo "bench: $dev: ${line[$dev]}; peak RSS install ${rss[install-$dev]} MiB ($(secs "$work/time-install-$dev.txt")), commit ${rss[boot-$dev]} MiB ($(secs "$work/time-boot-$dev.txt"))" >&2
done

cat >"$OUT" <<MD
# Device library: size and memory

Measured by \`bench/device-size.sh\` on $(date -u +%Y-%m-%d), $(go version | cut -d' ' -f3), $(uname -m) host,
$(nproc) cores, load average $load_start at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work shares the machine:
times vary with it, sizes and peak RSS hardly).

## Binary size (linux/arm64, \`CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'\`)

| program | bytes | MiB |
|---|---:|---:|
| \`bench/sizeprog/device\`: update agent linking \`device\` (verify, fetch, delta, A/B install, commit) | $dev_size | $(awk -v a="$dev_size" 'BEGIN { printf "%.2f", a / 1048576 }') |
| \`bench/sizeprog/stdlib\`: stdlib-only DSSE (ECDSA P-256/Ed25519) + sha256 verifier | $std_size | $(awk -v a="$std_size" 'BEGIN { printf "%.2f", a / 1048576 }') |
| **ratio** (target <= 1.5x) | **${ratio}x** | within target: $size_ok |
| \`cmd/upkit-agent\`: the device agent (device library, GRUB and U-Boot, partition slots, TPM counters, OCI registries and layouts, config, systemd-friendly logs) | $agent_size | $(awk -v a="$agent_size" 'BEGIN { printf "%.2f", a / 1048576 }') |
| **ratio of upkit-agent** (target <= 2.5x) | **${agent_ratio}x** | within target: $agent_ok |

## Peak RSS of an update ($SIZE-byte image, GNU time "Maximum resident set size")

| update | result | peak RSS (target <= 32 MiB) |
|---|---|---:|
| by delta | ${line[dev-delta]} | ${rss[dev-delta]} MiB ($(rss_ok "${rss[dev-delta]}")) |
| by full package (zstd) | ${line[dev-full]} | ${rss[dev-full]} MiB ($(rss_ok "${rss[dev-full]}")) |

### upkit-agent

| update | result | peak RSS of \`install\` | peak RSS of the \`boot\` that commits |
|---|---|---:|---:|
| by delta | ${line[agent-delta]} | ${rss[install-agent-delta]} MiB ($(rss_ok "${rss[install-agent-delta]}")) | ${rss[boot-agent-delta]} MiB ($(rss_ok "${rss[boot-agent-delta]}")) |
| by full package (zstd) | ${line[agent-full]} | ${rss[install-agent-full]} MiB ($(rss_ok "${rss[install-agent-full]}")) | ${rss[boot-agent-full]} MiB ($(rss_ok "${rss[boot-agent-full]}")) |

\`upkit-agent install --no-reboot DIR/layout\` on a device configured by
\`bench/devicemem gen\` (GRUB environment and slots in files, counters in
the state file): the release resolved in an OCI image layout, checked,
fetched into staging, written into slot B, read back, slot B tried; then
\`upkit-agent boot\` with slot B booted: the trial recorded, slot B read
back and committed. The agent-delta device adopted the old image as its
factory release on a first \`boot\` (not measured).

The measured process (\`bench/devicemem run\`) is CheckAndRecord + Install + Commit
with the file store, file slots and a directory source: the whole blob is
hashed while staged, the delta applied from the old slot to the new one
(or the package streamed through the zstd decoder), the slot read back and
hashed. Memory is bounded by fixed buffers and decoder windows, not by the
image size (see also \`TestMemoryFlatDeltaUpdate\` in device/).
MD
echo "bench: wrote $OUT" >&2
