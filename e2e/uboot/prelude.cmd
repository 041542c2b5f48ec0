# Runs before upkit's contrib/u-boot/boot.cmd (the two are one boot.scr):
# the e2e device's settings for the "adapt to your device" part of it.
#
# QEMU's qemu-x86 U-Boot keeps its environment nowhere and its distro boot
# does not scan NVMe, so the device has a small IDE "boot flash" disk with
# this script, and the NVMe disk with the same GPT as the GRUB device (ESP,
# rootfs-a, rootfs-b, data), whose ESP holds the boot variables' file.
echo "UPKIT-E2E uboot-start"
pci enum
nvme scan
setenv upkit_envdev "nvme 0:1"
setenv upkit_envfile upkit.env
setenv upkit_envsize 0x4000
setenv upkit_addr 0x9000000
setenv upkit_part_A 2
setenv upkit_part_B 3
# The 64-bit kernel loads at 0x3000000 and starts with zboot (measured; 0x1000000 overlaps).
setenv upkit_load 'load nvme 0:${upkit_part} 0x3000000 /boot/vmlinuz'
setenv upkit_start 'echo "UPKIT-E2E uboot-chose slot=${upkit_slot} a_left=${BOOT_A_LEFT} b_left=${BOOT_B_LEFT}"; zboot 0x3000000'
setenv upkit_bootargs "ro rootwait console=ttyS0,115200 panic=5 quiet upkit.e2e=uboot"
