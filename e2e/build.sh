#!/usr/bin/env bash
# e2e/build.sh - build the e2e virtual device's disk images from Debian packages only.
#
#   usage: e2e/build.sh            build (or find in the cache) the images; print their folder
#          e2e/build.sh stick DIR OUT
#                                  make OUT, a "USB stick" image: ext4 labelled upkit-stick
#                                  holding DIR (an OCI image layout), for the guest to mount
#
# No root, no mounts, no loop devices: file systems are made from folders (mke2fs -d,
# mkfs.vfat -C + mcopy), partition tables are written to files (sfdisk), and partition
# images are copied into the disk at their offsets (dd conv=notrunc).
#
# What it makes, in $UPKIT_E2E_CACHE/img-KEY/ (default ~/.cache/upkit/e2e), where KEY is
# a hash of every input (this script, e2e/guest, e2e/grub, e2e/uboot, contrib/grub and
# contrib/u-boot, the kernel .deb, the versions of the Debian packages used, the overlay):
#   disk.img                  the system disk (virtio-blk), GPT: esp, rootfs-a (release 1.0.0), rootfs-b
#                             (empty), data (empty ext4). Layout in layout.txt.
#   rootfs-RELEASE.ext4       one rootfs image per release (see RELEASES below)
#   bootflash.img             U-Boot's IDE disk: MBR, one FAT partition with boot.scr
#   OVMF_CODE.fd OVMF_VARS.fd UEFI firmware (code, and the variables' template)
#   u-boot.rom                U-Boot for QEMU's x86 board (32-bit build), used as -bios
#   manifest.txt              the inputs and what each file is
#
# Environment:
#   UPKIT_E2E_CACHE       cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/upkit/e2e)
#   UPKIT_E2E_CONTRIB     the folder holding grub/grub.cfg and u-boot/boot.cmd (default: contrib/)
#   UPKIT_E2E_KERNEL_DEB  a linux-image-*-cloud-amd64 .deb to use instead of downloading one
#   UPKIT_E2E_OVERLAY     a folder copied over every rootfs (the agent, its configs, the trust root;
#                         e2e_test.go's TestMain makes it)
#
# The kernel comes from Debian's linux-image-cloud-amd64: its .deb is fetched with
# `apt-get download` into the cache (no install: that would run update-initramfs) and
# unpacked with dpkg-deb -x. Debian 12's cloud kernel has ext4, GPT and the TPM drivers
# built in; virtio-blk is a module, loaded by the initramfs, and so is vfat, copied into
# each rootfs for the ESP.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
CACHE=${UPKIT_E2E_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/upkit/e2e}
CONTRIB=${UPKIT_E2E_CONTRIB:-$repo/contrib}
OVERLAY=${UPKIT_E2E_OVERLAY:-}

say() { printf 'e2e/build: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# Sizes in MiB. The disk: 1 MiB for the GPT, then the partitions in this order.
ESP_MIB=32
ROOTFS_MIB=64
# Each release's root file system is smaller than its partition (as an
# image usually is than its slot): what the agent fetches, writes and reads
# back is this image.
ROOTFS_FS_MIB=32
DATA_MIB=64
STICK_MIB=64
BOOTFLASH_MIB=4
# Fixed identities, so the same inputs give the same partition table.
DISK_GUID=7b5e2a3c-1f00-4e2e-8a00-000000000001
ESP_TYPE=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
LINUX_TYPE=0FC63DAF-8483-4772-8E79-3D69D8477DE4

# Releases: NAME VERSION_ID HEALTH INIT. HEALTH is what /usr/lib/upkit-e2e/health exits
# with (the agent's health-check command); INIT=no makes /sbin/init exit at once, so the
# kernel panics and panic=5 resets the machine (an image whose init never comes up).
RELEASES='
1.0.0          1.0.0  0  yes
2.0.0          2.0.0  0  yes
3.0.0          3.0.0  1  yes
3.0.0-noinit   3.0.0  0  no
'

need() { # COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 || die "$1 not found: install the Debian package $2 (scripts/test-deps.sh --e2e)"
}
need mke2fs e2fsprogs
need mkfs.vfat dosfstools
need mcopy mtools
need mmd mtools
need sfdisk fdisk
need grub-mkstandalone grub-common
need grub-editenv grub-common
need mkimage u-boot-tools
need mkenvimage u-boot-tools
need dpkg-deb dpkg
need flock util-linux
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install the Debian package busybox-static"
# The guest has no libc: the busybox of busybox-static, not of busybox.
case $(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true) in
*"not a dynamic"*) ;;
*) die "$BUSYBOX is linked dynamically: install the Debian package busybox-static" ;;
esac
GRUB_EFI_DIR=/usr/lib/grub/x86_64-efi
[ -d "$GRUB_EFI_DIR" ] || die "$GRUB_EFI_DIR not found: install the Debian package grub-efi-amd64-bin"
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$OVMF_CODE" ] && [ -f "$OVMF_VARS" ] || die "$OVMF_CODE not found: install the Debian package ovmf"
UBOOT_ROM=/usr/lib/u-boot/qemu-x86/u-boot.rom
[ -f "$UBOOT_ROM" ] || die "$UBOOT_ROM not found: install the Debian package u-boot-qemu"

# mkext4 DIR OUT MIB LABEL: an ext4 file system image made from DIR. Without
# metadata_csum_seed and orphan_file, which GRUB 2.06 and U-Boot do not read.
mkext4() {
	rm -f "$2"
	mke2fs -q -F -t ext4 -b 4096 -L "$4" -O ^metadata_csum_seed,^orphan_file \
		-E root_owner=0:0,hash_seed=7b5e2a3c-1f00-4e2e-8a00-0000000000aa \
		-U 7b5e2a3c-1f00-4e2e-8a00-0000000000bb -d "$1" "$2" "${3}M" >/dev/null
}

# The stick subcommand needs only e2fsprogs.
if [ "${1:-}" = stick ]; then
	[ $# = 3 ] || die "usage: e2e/build.sh stick DIR OUT"
	[ -d "$2" ] || die "stick: $2 is not a folder"
	mkext4 "$2" "$3.tmp" "$STICK_MIB" upkit-stick
	mv -f "$3.tmp" "$3"
	exit 0
fi
[ $# = 0 ] || die "usage: e2e/build.sh | e2e/build.sh stick DIR OUT"

GRUB_CFG=$CONTRIB/grub/grub.cfg
UBOOT_CMD=$CONTRIB/u-boot/boot.cmd
[ -f "$GRUB_CFG" ] || die "$GRUB_CFG not found: the e2e device boots upkit's own GRUB script (issue 14); set UPKIT_E2E_CONTRIB to the folder holding grub/grub.cfg"
[ -f "$UBOOT_CMD" ] || die "$UBOOT_CMD not found: the e2e device boots upkit's own U-Boot script (issue 14); set UPKIT_E2E_CONTRIB to the folder holding u-boot/boot.cmd"
[ -z "$OVERLAY" ] || [ -d "$OVERLAY" ] || die "UPKIT_E2E_OVERLAY=$OVERLAY is not a folder"

# --- the kernel .deb ---------------------------------------------------------
mkdir -p "$CACHE/debs"
kernel_deb=${UPKIT_E2E_KERNEL_DEB:-}
if [ -z "$kernel_deb" ]; then
	# The package linux-image-cloud-amd64 depends on (linux-image-6.1.0-NN-cloud-amd64).
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
	if [ -n "$pkg" ]; then
		ver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
		kernel_deb=$(ls "$CACHE/debs/${pkg}_${ver//:/%3a}_amd64.deb" 2>/dev/null || true)
		if [ -z "$kernel_deb" ]; then
			say "downloading $pkg $ver (apt-get download, once)"
			(cd "$CACHE/debs" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) ||
				die "apt-get download $pkg=$ver failed (run apt-get update?)"
			kernel_deb=$(ls "$CACHE/debs/${pkg}_${ver//:/%3a}_amd64.deb")
		fi
	else
		# apt knows no linux-image-cloud-amd64 (no lists): use a .deb downloaded before.
		kernel_deb=$(ls -t "$CACHE"/debs/linux-image-*-cloud-amd64_*_amd64.deb 2>/dev/null | head -n1 || true)
		[ -n "$kernel_deb" ] || die "cannot find linux-image-cloud-amd64: run apt-get update, or set UPKIT_E2E_KERNEL_DEB"
	fi
fi
[ -f "$kernel_deb" ] || die "kernel .deb $kernel_deb not found"

# --- the cache key -------------------------------------------------------------
versions=$(dpkg-query -W -f='${Package}=${Version}\n' grub-efi-amd64-bin grub-common busybox-static \
	ovmf u-boot-qemu u-boot-tools e2fsprogs dosfstools mtools fdisk 2>/dev/null || true)
overlay_sum=none
if [ -n "$OVERLAY" ]; then
	overlay_sum=$(cd "$OVERLAY" && find . -print0 | LC_ALL=C sort -z |
		tar --numeric-owner --owner=0 --group=0 --mtime=@0 --null --no-recursion -cf - -T - | sha256sum | cut -c1-64)
fi
key=$({
	sha256sum "$0" "$here"/guest/* "$here"/grub/* "$here"/uboot/* "$GRUB_CFG" "$UBOOT_CMD" | cut -c1-64
	sha256sum "$kernel_deb" | cut -c1-64
	echo "$versions"
	echo "overlay $overlay_sum"
} | sha256sum | cut -c1-16)
out=$CACHE/img-$key
# One build at a time per cache (two test runs may start together).
exec 9>"$CACHE/build.lock"
flock 9
if [ -f "$out/manifest.txt" ]; then
	say "cached: $out"
	echo "$out"
	exit 0
fi

t0=$(date +%s)
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "building into $out (key $key)"

# --- kernel and modules --------------------------------------------------------
dpkg-deb -x "$kernel_deb" "$work/kernel"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-*)
kver=${vmlinuz##*/vmlinuz-}
mods=$work/kernel/lib/modules/$kver/kernel

# --- one rootfs per release ----------------------------------------------------
# The initramfs: busybox, the virtio-blk modules (virtio_blk and what it needs
# are modules of the cloud kernel) and e2e/guest/initramfs-init as /init, which
# loads them, mounts root= and hands over to the rootfs's /sbin/init. Its files
# get fixed times and owners, so the same inputs give the same image.
ird=$work/initrd
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules/$kver}
cp "$BUSYBOX" "$ird/bin/busybox"
for a in sh mount umount insmod switch_root sleep cat findfs mkdir echo; do
	ln -s busybox "$ird/bin/$a"
done
cp "$here/guest/initramfs-init" "$ird/init"
chmod 0755 "$ird/init"
# In dependency order (each module's modinfo depends=): /init loads them as
# listed in load-order.
for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_legacy_dev virtio/virtio_pci_modern_dev \
	virtio/virtio_pci block/virtio_blk; do
	cp "$mods/drivers/$m.ko" "$ird/lib/modules/$kver/"
	echo "${m##*/}" >>"$ird/lib/modules/$kver/load-order"
done
find "$ird" -exec touch -h -d @0 {} +
(cd "$ird" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9n >"$work/initrd.img"
applets=$("$BUSYBOX" --list)
mkroot() { # NAME VERSION HEALTH INIT
	local r=$work/root-$1
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,boot/efi,data,mnt/stick,lib/modules/$kver,usr/lib/upkit-e2e,etc/upkit}
	cp "$BUSYBOX" "$r/bin/busybox"
	local a
	for a in $applets; do
		case $a in init | linuxrc) continue ;; esac # the kernel must not find another init
		[ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
	done
	if [ "$4" = yes ]; then
		cp "$here/guest/init" "$r/sbin/init"
	else
		printf '#!/bin/sh\necho "UPKIT-E2E init-crash release=%s"\nexit 1\n' "$2" >"$r/sbin/init"
	fi
	chmod 0755 "$r/sbin/init"
	cp "$vmlinuz" "$r/boot/vmlinuz"
	cp "$work/initrd.img" "$r/boot/initrd.img"
	cp "$mods/fs/fat/fat.ko" "$mods/fs/fat/vfat.ko" "$mods/fs/nls/nls_cp437.ko" \
		"$mods/fs/nls/nls_ascii.ko" "$mods/fs/nls/nls_utf8.ko" "$r/lib/modules/$kver/"
	cat >"$r/etc/os-release" <<-EOF
		NAME="upkit e2e device"
		ID=upkit-e2e
		VERSION_ID=$2
		VERSION="$2 ($1)"
		PRETTY_NAME="upkit e2e device $2 ($1)"
	EOF
	printf '#!/bin/sh\n# The health check the agent runs after a boot: this release exits %s.\necho "health: release %s exits %s"\nexit %s\n' \
		"$3" "$1" "$3" "$3" >"$r/usr/lib/upkit-e2e/health"
	chmod 0755 "$r/usr/lib/upkit-e2e/health"
	# The agent's reboot command: the marker the harness waits for, then an
	# immediate reset (PID 1 is the e2e init, which handles no signals).
	printf '#!/bin/sh\nsync\necho "UPKIT-E2E rebooting" >/dev/console\nreboot -f\n' >"$r/usr/lib/upkit-e2e/reboot"
	chmod 0755 "$r/usr/lib/upkit-e2e/reboot"
	if [ -n "$OVERLAY" ]; then
		cp -a "$OVERLAY"/. "$r"/
	fi
	mkext4 "$r" "$work/rootfs-$1.ext4" "$ROOTFS_FS_MIB" rootfs
}
while read -r name vid health init; do
	[ -n "$name" ] || continue
	mkroot "$name" "$vid" "$health" "$init"
done <<<"$RELEASES"

# --- the ESP: GRUB (EFI), its environment, and U-Boot's variables' file ----------
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" --locales= --fonts= --themes= \
	--modules="part_gpt part_msdos fat ext2 loadenv normal configfile linux test echo serial terminal" \
	"boot/grub/grub.cfg=$here/grub/grub.cfg" "boot/grub/upkit.cfg=$GRUB_CFG"
grub-editenv "$work/grubenv" create
# Flashed at the factory with release 1.0.0 in slot A, slot B empty (RAUC's initial state).
grub-editenv "$work/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' >"$work/upkit.env.txt"
mkenvimage -s 0x4000 -o "$work/upkit.env" "$work/upkit.env.txt"
mkfs.vfat -C -n ESP "$work/esp.img" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" "$work/grubenv" ::/EFI/BOOT/
mcopy -i "$work/esp.img" "$work/upkit.env" ::/

# --- the data partition: empty ext4 for the agent's state and staging ----------
mkdir -p "$work/data-root"
mkext4 "$work/data-root" "$work/data.ext4" "$DATA_MIB" data

# --- the disk: GPT on a file, partitions copied in at their offsets --------------
MiB=$((1024 * 1024))
esp_start=1
a_start=$((esp_start + ESP_MIB))
b_start=$((a_start + ROOTFS_MIB))
data_start=$((b_start + ROOTFS_MIB))
disk_mib=$((data_start + DATA_MIB + 1))
truncate -s $((disk_mib * MiB)) "$work/disk.img"
part() { # NAME TYPE START_MIB SIZE_MIB N
	printf 'start=%d, size=%d, type=%s, uuid=7b5e2a3c-1f00-4e2e-8a00-00000000010%d, name="%s"\n' \
		$(($3 * 2048)) $(($4 * 2048)) "$2" "$5" "$1"
}
{
	echo "label: gpt"
	echo "label-id: $DISK_GUID"
	echo "unit: sectors"
	echo "first-lba: 2048"
	part esp "$ESP_TYPE" $esp_start $ESP_MIB 1
	part rootfs-a "$LINUX_TYPE" $a_start $ROOTFS_MIB 2
	part rootfs-b "$LINUX_TYPE" $b_start $ROOTFS_MIB 3
	part data "$LINUX_TYPE" $data_start $DATA_MIB 4
} | sfdisk -q --no-reread --no-tell-kernel "$work/disk.img" >/dev/null
put() { # IMAGE START_MIB
	dd if="$1" of="$work/disk.img" bs=1M seek="$2" conv=notrunc,sparse status=none
}
put "$work/esp.img" $esp_start
put "$work/rootfs-1.0.0.ext4" $a_start
put "$work/data.ext4" $data_start
{
	echo "# name start_bytes size_bytes (partitions of disk.img)"
	echo "esp $((esp_start * MiB)) $((ESP_MIB * MiB))"
	echo "rootfs-a $((a_start * MiB)) $((ROOTFS_MIB * MiB))"
	echo "rootfs-b $((b_start * MiB)) $((ROOTFS_MIB * MiB))"
	echo "data $((data_start * MiB)) $((DATA_MIB * MiB))"
} >"$work/layout.txt"

# --- U-Boot's boot flash: MBR, one FAT partition with boot.scr --------------------
cat "$here/uboot/prelude.cmd" "$UBOOT_CMD" >"$work/boot.cmd"
mkimage -q -A x86 -O linux -T script -C none -n "upkit e2e boot" -d "$work/boot.cmd" "$work/boot.scr" >/dev/null
mkfs.vfat -C -n BOOT "$work/bootpart.img" $(((BOOTFLASH_MIB - 1) * 1024)) >/dev/null
mcopy -i "$work/bootpart.img" "$work/boot.scr" ::/
truncate -s $((BOOTFLASH_MIB * MiB)) "$work/bootflash.img"
printf 'label: dos\nlabel-id: 0x7b5e2a3c\nstart=2048, type=c, bootable\n' |
	sfdisk -q --no-reread --no-tell-kernel "$work/bootflash.img" >/dev/null
dd if="$work/bootpart.img" of="$work/bootflash.img" bs=1M seek=1 conv=notrunc status=none

# --- firmware --------------------------------------------------------------------
cp "$OVMF_CODE" "$work/OVMF_CODE.fd"
cp "$OVMF_VARS" "$work/OVMF_VARS.fd"
cp "$UBOOT_ROM" "$work/u-boot.rom"

# --- publish -----------------------------------------------------------------------
mkdir "$work/out"
for f in disk.img bootflash.img OVMF_CODE.fd OVMF_VARS.fd u-boot.rom layout.txt; do
	mv "$work/$f" "$work/out/"
done
while read -r name _; do
	[ -n "$name" ] && mv "$work/rootfs-$name.ext4" "$work/out/"
done <<<"$RELEASES"
{
	echo "key $key"
	echo "kernel $(basename "$kernel_deb") $kver"
	echo "grub.cfg $GRUB_CFG $(sha256sum "$GRUB_CFG" | cut -c1-64)"
	echo "boot.cmd $UBOOT_CMD $(sha256sum "$UBOOT_CMD" | cut -c1-64)"
	echo "overlay ${OVERLAY:-none} $overlay_sum"
	echo "$versions"
	echo "releases"
	echo "$RELEASES" | sed '/^$/d'
} >"$work/out/manifest.txt"
rm -rf "$out"
mv "$work/out" "$out"
# Keep the three newest image sets.
ls -dt "$CACHE"/img-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
say "built $out in $(($(date +%s) - t0)) s"
echo "$out"
