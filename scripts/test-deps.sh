#!/usr/bin/env bash
# scripts/test-deps.sh - provide every real component the tests use; `make test` runs it first.
#
#   usage: scripts/test-deps.sh [--check] [--e2e] [NAME...]   (default: every component)
#
# --e2e provides the Debian packages of the QEMU device scenarios instead (`make e2e`,
# e2e/build.sh, docs/E2E.md); the kernel they boot is not installed but fetched by
# e2e/build.sh (apt-get download linux-image-cloud-amd64's kernel package).
#
# For each component it prints one line: found, installed or built, with the time it took.
#
#   Debian packages   checked by a file or command they provide; the missing ones are installed
#                     with one `apt-get install` when running as root or with passwordless sudo.
#                     Otherwise it stops with the exact command to run and exits 1: a test that
#                     needs a missing component would fail anyway, and never skips.
#   imgtool           upstream MCUboot imgtool 2.4.0, the reference for MCUboot images: $UPKIT_IMGTOOL,
#                     or ../shared/tools/imgtool.sh beside the project (CI has it), or installed
#                     once from PyPI into the tools cache below (needs python3-venv and PyPI).
#   Go-built tools    (scripts/tools.txt) built once from the Go module proxy into
#                     $UPKIT_TOOLS_DIR/NAME-VERSION/NAME, default
#                     ${XDG_CACHE_HOME:-$HOME/.cache}/upkit/tools; reused on every later run.
#                     The tests find them there (internal/testutil/testtools reads the same file).
#
# Already present components are used as they are: no reinstall, no network.
# --check reports what is missing and exits 1 if anything is, changing nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

TOOLS_DIR=${UPKIT_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/upkit/tools}

# name | Debian package | probe (a command on PATH, an absolute path, or py:MODULE) | why
DEBIAN='
gcc             gcc             gcc                            cgo: the PKCS#11 signer and go test -race
libc6-dev       libc6-dev       /usr/include/stdio.h           cgo headers
git             git             git                            make vet lists the files to gofmt with git ls-files
zstd            zstd            zstd                           packages and deltas checked against the zstd CLI
openssl         openssl         openssl                        key files and signatures checked against OpenSSL
time            time            /usr/bin/time                  peak memory figures in tests and benchmarks
softhsm2        softhsm2        softhsm2-util                  a real PKCS#11 token for the HSM tests (signing/, cmd/upkit)
docker-registry docker-registry docker-registry                CNCF distribution 2.8, a real registry (oci/, device/, cmd/upkit)
grub-common     grub-common     grub-editenv                   the GRUB environment block, grub-script-check (device/grubenv, device/boot, contrib/)
libubootenv-tool libubootenv-tool fw_printenv                  the U-Boot environment as fw_printenv/fw_setenv read and write it (device/ubootenv)
u-boot-tools    u-boot-tools    mkenvimage                     mkenvimage, and mkimage for the boot script (device/ubootenv, contrib/)
swtpm           swtpm           swtpm                          a TPM 2.0 for the anti-rollback counters (device/tpmcounter)
tpm2-tools      tpm2-tools      tpm2_nvread                    the TPM counters inspected from outside (device/tpmcounter)
e2fsprogs       e2fsprogs       mkfs.ext4                      a mounted slot is refused (device/partslots)
mount           mount           losetup                        loop devices for the slot and environment tests (device/partslots, device/ubootenv)
python3         python3         /usr/bin/python3               upstream MCUboot imgtool (mcuboot/, cmd/upkit)
python3-click   python3-click   py:click                       imgtool
python3-intelhex python3-intelhex py:intelhex                  imgtool
python3-cbor2   python3-cbor2   py:cbor2                       imgtool
python3-cryptography python3-cryptography py:cryptography      imgtool
python3-yaml    python3-yaml    py:yaml                        imgtool dumpinfo
'

# The QEMU device scenarios (--e2e). Probes are absolute where the command is in sbin.
E2E_DEBIAN='
qemu-system-x86  qemu-system-x86    qemu-system-x86_64                          runs the virtual device (TCG; KVM when there is one)
ovmf             ovmf               /usr/share/OVMF/OVMF_CODE_4M.fd             UEFI firmware that starts GRUB
grub-efi         grub-efi-amd64-bin /usr/lib/grub/x86_64-efi/linux.mod          grub-mkstandalone -O x86_64-efi
grub-common      grub-common        grub-editenv                                grub-mkstandalone, grub-editenv on the device grubenv
u-boot-qemu      u-boot-qemu        /usr/lib/u-boot/qemu-x86/u-boot.rom         U-Boot for the U-Boot variant
u-boot-tools     u-boot-tools       mkimage                                     boot.scr (mkimage), U-Boot variables (mkenvimage)
libubootenv-tool libubootenv-tool   fw_printenv                                 reads the U-Boot variables file
busybox-static   busybox-static     /var/lib/dpkg/info/busybox-static.list      the guest userland (a static busybox)
mtools           mtools             mcopy                                       the ESP without mounting it
dosfstools       dosfstools         /usr/sbin/mkfs.vfat                         the ESP and the boot flash (mkfs.vfat -C)
e2fsprogs        e2fsprogs          /usr/sbin/debugfs                           root file systems from folders (mke2fs -d); the factory release into data (debugfs)
fdisk            fdisk              /usr/sbin/sfdisk                            partition tables on image files
swtpm            swtpm              swtpm                                       the TPM 2.0 of the device
swtpm-tools      swtpm-tools        swtpm_setup                                 manufactures the TPM of each device
tpm2-tools       tpm2-tools         tpm2_nvread                                 the agent counter read from outside, in the TPM of a powered-off device
'

check_only=0
e2e=0
while [ $# -gt 0 ]; do
	case $1 in
	--check) check_only=1 ;;
	--e2e) e2e=1 ;;
	*) break ;;
	esac
	shift
done
[ "$e2e" = 1 ] && DEBIAN=$E2E_DEBIAN
SELECTED=("$@")
selected() { # NAME: is NAME among the arguments (or were there none)?
	[ ${#SELECTED[@]} -eq 0 ] && return 0
	local n
	for n in "${SELECTED[@]}"; do [ "$n" = "$1" ] && return 0; done
	return 1
}

say() { printf 'test-deps: %s\n' "$*" >&2; }
present() { # PROBE
	case $1 in
	py:*) [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import ${1#py:}" 2>/dev/null ;; # Debian's python, which imgtool.sh runs
	/*) [ -e "$1" ] ;;
	*) command -v "$1" >/dev/null 2>&1 ;;
	esac
}
secs() { printf '%d s' $(($(date +%s) - $1)); }

# --- Debian packages --------------------------------------------------------
missing=()
while read -r name pkg probe why; do
	[ -n "$name" ] || continue
	selected "$name" || continue
	if present "$probe"; then
		case $probe in
		py:*) say "$name: found (python3 module ${probe#py:})" ;;
		*) say "$name: found ($(command -v "$probe" 2>/dev/null || echo "$probe"))" ;;
		esac
	else
		missing+=("$pkg")
	fi
done <<<"$DEBIAN"
# softhsm2's module is what the tests load; its path differs between distributions.
if selected softhsm2 && ! [[ " ${missing[*]} " == *" softhsm2 "* ]]; then
	found=""
	for p in "${UPKIT_PKCS11_MODULE:-}" /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so \
		/usr/lib64/pkcs11/libsofthsm2.so /usr/lib/pkcs11/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
		[ -n "$p" ] && [ -f "$p" ] && found=$p && break
	done
	[ -n "$found" ] || missing+=(softhsm2)
fi

if [ ${#missing[@]} -gt 0 ]; then
	cmd="apt-get install -y --no-install-recommends ${missing[*]}"
	if [ "$check_only" = 1 ]; then
		say "missing Debian packages: ${missing[*]} (install: $cmd)"
		exit 1
	fi
	apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
	if [ "$(id -u)" = 0 ]; then
		:
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		apt=(sudo -n "${apt[@]}")
	else
		say "missing Debian packages: ${missing[*]}"
		say "this user is not root and has no passwordless sudo; run this once, then make test again:"
		say "  sudo $cmd"
		exit 1
	fi
	command -v apt-get >/dev/null || {
		say "missing: ${missing[*]}, and apt-get is not here: install them with your package manager"
		exit 1
	}
	for p in "${missing[@]}"; do say "$p: installing (apt-get)"; done
	t0=$(date +%s)
	log=$(mktemp)
	# docker-registry's postinst may start its system service; the tests never use that one.
	if ! { DEBIAN_FRONTEND=noninteractive "${apt[@]}" update &&
		DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -f "$log"
		say "apt-get failed (output above); the command was: $cmd"
		exit 1
	fi
	rm -f "$log"
	say "installed ${missing[*]} in $(secs "$t0")"
fi

# --- Go-built tools ---------------------------------------------------------
build_tool() { # NAME MODULE VERSION PKG
	local name=$1 mod=$2 ver=$3 pkg=$4 out dir t0 log
	out=$TOOLS_DIR/$name-$ver/$name
	if [ -x "$out" ]; then
		say "$name $ver: found ($out)"
		return
	fi
	if [ "$check_only" = 1 ]; then
		say "$name $ver: missing ($out; build: scripts/test-deps.sh $name)"
		return 1
	fi
	command -v go >/dev/null || {
		say "$name: go not found, needed to build it"
		return 1
	}
	case $name in
	cosign) say "$name $ver: building from the Go module proxy, once (about 4 minutes on 2 cores): the interop tests run the real cosign CLI" ;;
	*) say "$name $ver: building from the Go module proxy, once" ;;
	esac
	t0=$(date +%s)
	# Build inside the downloaded module, whose go.mod/go.sum pin every dependency. Not
	# `go install mod@version`, which also asks the proxy for the version list.
	dir=$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$dir" ] && [ -d "$dir" ] || {
		say "$name: go mod download $mod@$ver failed"
		return 1
	}
	mkdir -p "${out%/*}"
	log=$(mktemp)
	if ! (cd "$dir" && GOFLAGS='-mod=readonly -buildvcs=false' CGO_ENABLED=0 \
		go build -trimpath -o "$out.tmp.$$" "$pkg") >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -f "$log" "$out.tmp.$$"
		say "$name: building $mod@$ver $pkg failed (output above)"
		return 1
	fi
	rm -f "$log"
	mv -f "$out.tmp.$$" "$out"
	say "$name $ver: built in $(secs "$t0") ($out)"
}

# imgtool: see the header. The tests look in the same places
# (internal/testutil/imgtooltest).
IMGTOOL_VERSION=2.4.0
imgtool_tool() {
	local dir=$TOOLS_DIR/imgtool-$IMGTOOL_VERSION shared t0 log
	shared=$(cd .. && pwd)/shared/tools/imgtool.sh
	if [ -n "${UPKIT_IMGTOOL:-}" ] && [ -x "$UPKIT_IMGTOOL" ]; then
		say "imgtool: found (\$UPKIT_IMGTOOL=$UPKIT_IMGTOOL)"
	elif [ -x "$dir/imgtool" ]; then
		say "imgtool $IMGTOOL_VERSION: found ($dir/imgtool)"
	elif [ -x "$shared" ]; then
		say "imgtool: found ($shared)"
	elif [ "$check_only" = 1 ]; then
		say "imgtool: missing (install: scripts/test-deps.sh imgtool)"
		return 1
	else
		say "imgtool $IMGTOOL_VERSION: installing from PyPI into $dir, once"
		t0=$(date +%s)
		log=$(mktemp)
		if ! { /usr/bin/python3 -m venv --system-site-packages "$dir/venv" &&
			"$dir/venv/bin/pip" install -q "imgtool==$IMGTOOL_VERSION"; } >"$log" 2>&1; then
			tail -n 5 "$log" >&2
			rm -rf "$dir" "$log"
			say "imgtool: could not install imgtool==$IMGTOOL_VERSION from PyPI (output above; it needs python3-venv)."
			say "  Point UPKIT_IMGTOOL at an imgtool (MCUboot's scripts/imgtool.py, or imgtool.sh of ../shared/tools)."
			return 1
		fi
		rm -f "$log"
		printf '#!/bin/sh\nexec "%s" "$@"\n' "$dir/venv/bin/imgtool" >"$dir/imgtool"
		chmod +x "$dir/imgtool"
		say "imgtool $IMGTOOL_VERSION: installed in $(secs "$t0") ($dir/imgtool)"
	fi
}

fail=0
[ "$e2e" = 1 ] && exit 0 # the scenarios build no Go tool
if selected imgtool; then imgtool_tool || fail=1; fi
while read -r name mod ver pkg _; do
	case $name in '' | '#'*) continue ;; esac
	selected "$name" || continue
	build_tool "$name" "$mod" "$ver" "$pkg" || fail=1
done <scripts/tools.txt
exit $fail
