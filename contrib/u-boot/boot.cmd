# upkit: A/B slot selection with boot counting for U-Boot.
#
# RAUC's U-Boot variables (BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT), which
# upkit's device/boot (boot.UBoot) writes from Linux. The first slot of
# BOOT_ORDER with attempts left (hexadecimal) is booted and its count goes
# down by one; the booted system gives the attempts back once it is healthy.
# The kernel gets upkit.slot=A or upkit.slot=B. See contrib/README.md.
#
# Build: mkimage -A arm64 -T script -C none -n "upkit boot" -d boot.cmd boot.scr
# Needs: CONFIG_CMD_SAVEENV (saved environment) or CONFIG_CMD_IMPORTENV,
# CONFIG_CMD_EXPORTENV and file-system write support (environment file).
# Counting down uses setexpr when U-Boot has it (CONFIG_CMD_SETEXPR); without
# it (Debian's QEMU builds, for one) counts up to f (15) go down one by one
# and higher ones go to e.

# ---- adapt to your device (or set these in U-Boot's default environment) ----
# Where the variables are kept:
#  - unset upkit_envfile: U-Boot's saved environment (saveenv). Linux reads it
#    through fw_env.config; give it two copies (CONFIG_SYS_REDUNDAND_ENVIRONMENT).
#  - upkit_envfile set: a file in U-Boot's binary format (CRC32 + variables,
#    upkit_envsize bytes, "env export -c") on a partition U-Boot can write,
#    merged into the environment at each boot. For boards whose environment
#    cannot be written, such as QEMU's. Linux: fw_env.config
#    "/boot/efi/upkit.env 0x0 0x4000" with boot.Config AllowEmpty.
test -n "${upkit_envdev}" || setenv upkit_envdev "${devtype} ${devnum}:${distro_bootpart}"
test -n "${upkit_envsize}" || setenv upkit_envsize 0x4000
test -n "${upkit_addr}" || setenv upkit_addr ${scriptaddr}
# Each slot's partition (same device as this script) and the root= it gets.
test -n "${upkit_part_A}" || setenv upkit_part_A 2
test -n "${upkit_part_B}" || setenv upkit_part_B 3
test -n "${upkit_root_A}" || setenv upkit_root_A PARTLABEL=rootfs-a
test -n "${upkit_root_B}" || setenv upkit_root_B PARTLABEL=rootfs-b
# How a slot's kernel is loaded and started ('booti' for arm64, 'bootz' for
# arm, 'zboot' for x86); ${upkit_part} is the chosen slot's partition.
test -n "${upkit_load}" || setenv upkit_load 'load ${devtype} ${devnum}:${upkit_part} ${kernel_addr_r} /boot/Image'
test -n "${upkit_start}" || setenv upkit_start 'booti ${kernel_addr_r} - ${fdtcontroladdr}'
test -n "${upkit_bootargs}" || setenv upkit_bootargs "ro rootwait panic=10"
# ------------------------------------------------------------------------------

if test -n "${upkit_envfile}"; then
  if load ${upkit_envdev} ${upkit_addr} ${upkit_envfile}; then
    if env import -c ${upkit_addr} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT upkit_active; then
      echo "upkit: boot variables from ${upkit_envfile}"
    fi
  fi
fi

# upkit_dec: upkit_n = upkit_n - 1, in hexadecimal as setexpr writes it.
setenv upkit_dec 'if setexpr upkit_n ${upkit_n} - 1; then true; else run upkit_dec_ladder; fi'
setenv upkit_dec_ladder 'if test "${upkit_n}" = 1; then setenv upkit_n 0; elif test "${upkit_n}" = 2; then setenv upkit_n 1; elif test "${upkit_n}" = 3; then setenv upkit_n 2; elif test "${upkit_n}" = 4; then setenv upkit_n 3; elif test "${upkit_n}" = 5; then setenv upkit_n 4; elif test "${upkit_n}" = 6; then setenv upkit_n 5; elif test "${upkit_n}" = 7; then setenv upkit_n 6; elif test "${upkit_n}" = 8; then setenv upkit_n 7; elif test "${upkit_n}" = 9; then setenv upkit_n 8; elif test "${upkit_n}" = a; then setenv upkit_n 9; elif test "${upkit_n}" = b; then setenv upkit_n a; elif test "${upkit_n}" = c; then setenv upkit_n b; elif test "${upkit_n}" = d; then setenv upkit_n c; elif test "${upkit_n}" = e; then setenv upkit_n d; else setenv upkit_n e; fi'

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv upkit_slot
for BOOT_SLOT in "${BOOT_ORDER}"; do
  if test -n "${upkit_slot}"; then
    # a slot is chosen: skip the rest
  elif test "x${BOOT_SLOT}" = "xA"; then
    if test 0x${BOOT_A_LEFT} -gt 0; then
      echo "upkit: slot A, ${BOOT_A_LEFT} attempts left"
      setenv upkit_n ${BOOT_A_LEFT}
      run upkit_dec
      setenv BOOT_A_LEFT ${upkit_n}
      setenv upkit_slot A
      setenv upkit_part ${upkit_part_A}
      setenv upkit_root ${upkit_root_A}
    fi
  elif test "x${BOOT_SLOT}" = "xB"; then
    if test 0x${BOOT_B_LEFT} -gt 0; then
      echo "upkit: slot B, ${BOOT_B_LEFT} attempts left"
      setenv upkit_n ${BOOT_B_LEFT}
      run upkit_dec
      setenv BOOT_B_LEFT ${upkit_n}
      setenv upkit_slot B
      setenv upkit_part ${upkit_part_B}
      setenv upkit_root ${upkit_root_B}
    fi
  fi
done

if test -z "${upkit_slot}"; then
  # As RAUC's script: every slot gets its attempts back, and the board resets.
  echo "upkit: no slot has attempts left; giving both 3 more"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
fi

# Save the counts before booting anything.
if test -n "${upkit_envfile}"; then
  env export -c -s ${upkit_envsize} ${upkit_addr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT upkit_active
  save ${upkit_envdev} ${upkit_addr} ${upkit_envfile} ${upkit_envsize}
else
  saveenv
fi

if test -z "${upkit_slot}"; then
  reset
fi

setenv bootargs "${upkit_bootargs} root=${upkit_root} upkit.slot=${upkit_slot}"
run upkit_load
run upkit_start
echo "upkit: slot ${upkit_slot} did not start; resetting"
reset
