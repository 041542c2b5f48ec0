# Runs before upkit's contrib/u-boot/boot.cmd (the two are one boot.scr):
# the e2e device's settings for the "adapt to your device" part of it.
#
# QEMU's qemu-x86 U-Boot keeps its environment nowhere, so the device has a
# small IDE "boot flash" disk with this script, and the virtio disk with the
# same GPT as the GRUB device (ESP, rootfs-a, rootfs-b, data), whose ESP
# holds the boot variables' file.
echo "UPKIT-E2E uboot-start"
pci enum
virtio scan
setenv upkit_envdev "virtio 0:1"
setenv upkit_envfile upkit.env
setenv upkit_envsize 0x4000
setenv upkit_addr 0x9000000
setenv upkit_part_A 2
setenv upkit_part_B 3
# The 64-bit kernel loads at 0x3000000 and starts with zboot (measured; 0x1000000
# overlaps), its initramfs (which loads the virtio-blk modules) at 0x6000000.
setenv upkit_load 'load virtio 0:${upkit_part} 0x3000000 /boot/vmlinuz && load virtio 0:${upkit_part} 0x6000000 /boot/initrd.img && setenv upkit_initrd_size ${filesize}'
setenv upkit_start 'echo "UPKIT-E2E uboot-chose slot=${upkit_slot} a_left=${BOOT_A_LEFT} b_left=${BOOT_B_LEFT}"; zboot 0x3000000 0 0x6000000 ${upkit_initrd_size}'
# tpm_tis.force=1: the kernel probes the TPM at the TIS address itself. The
# ACPI tables this U-Boot hands over now and then describe no TPM (seen in
# about 1 boot in 20 on a loaded machine: no MSFT0101 device, no tpm0),
# and the agent keeps its anti-rollback counters there.
setenv upkit_bootargs "ro rootwait console=ttyS0,115200 panic=5 quiet upkit.e2e=uboot tpm_tis.force=1"
