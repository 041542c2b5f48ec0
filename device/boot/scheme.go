package boot

import (
	"strconv"
	"strings"

	"github.com/upkit/upkit/device"
)

// Bootnames: what the bootloader scripts and the kernel command line call
// the slots (RAUC's "bootname"s).
const (
	BootnameA = "A"
	BootnameB = "B"
)

// Bootname returns the bootname of a device slot (device.SlotA -> "A").
func Bootname(slot string) string {
	if slot == device.SlotB {
		return BootnameB
	}
	return BootnameA
}

// SlotOf returns the device slot of a bootname ("A" -> device.SlotA).
func SlotOf(bootname string) (string, bool) {
	switch bootname {
	case BootnameA:
		return device.SlotA, true
	case BootnameB:
		return device.SlotB, true
	}
	return "", false
}

// Scheme is the set of environment variables a bootloader script reads and
// writes to choose a slot: GRUB or UBoot, both RAUC's. The zero value is
// not usable.
type Scheme struct {
	kind int
}

var (
	// GRUB is RAUC's GRUB scheme (contrib/grub.conf): ORDER="A B" lists
	// the slots in the order they are tried; a slot is booted if X_OK=1
	// and X_TRY=0, and the script sets X_TRY=1 (save_env) when it boots it,
	// so each slot made primary gets one try until it is marked good
	// (X_OK=1, X_TRY=0) again.
	GRUB = Scheme{kind: 1}
	// UBoot is RAUC's U-Boot scheme (contrib/uboot.sh): BOOT_ORDER="A B"
	// lists the slots in order; BOOT_X_LEFT (hexadecimal) counts the boot
	// attempts left; the script boots the first slot with attempts left
	// and decrements its count (saveenv). A slot marked good gets its
	// attempts back; a bad one leaves BOOT_ORDER.
	UBoot = Scheme{kind: 2}
)

// DefaultTries is the boot attempts the U-Boot scheme gives a slot made
// primary or marked good (RAUC's default, and what contrib/u-boot/boot.cmd
// assumes for a missing count).
const DefaultTries = 3

// String returns "grub" or "u-boot".
func (s Scheme) String() string {
	switch s.kind {
	case 1:
		return "grub"
	case 2:
		return "u-boot"
	}
	return "invalid"
}

func (s Scheme) valid() bool { return s.kind == 1 || s.kind == 2 }

// Variable names.
const (
	varGRUBOrder  = "ORDER"
	varUBootOrder = "BOOT_ORDER"
	// VarActive is upkit's record of the slot each component was last
	// activated to for good (Switch.Activate), in the bootloader's
	// environment next to the scheme's variables so that both change in
	// one write: "COMPONENT=BOOTNAME ..." sorted by component, such as
	// "app=A rootfs=B". Bootloader scripts ignore it (and must keep it:
	// contrib/u-boot/boot.cmd exports it with the scheme's variables).
	VarActive = "upkit_active"
)

func (s Scheme) orderVar() string {
	if s.kind == 1 {
		return varGRUBOrder
	}
	return varUBootOrder
}

func okVar(b string) string   { return b + "_OK" }
func tryVar(b string) string  { return b + "_TRY" }
func leftVar(b string) string { return "BOOT_" + b + "_LEFT" }

// order returns the bootnames of the boot order, as the script reads it:
// unknown names are skipped (no branch of the script matches them); a
// missing variable (GRUB) or an empty one (U-Boot, "test -n") means "A B".
func (s Scheme) order(v Vars) []string {
	val, ok := v.Get(s.orderVar())
	if !ok || s.kind == 2 && val == "" {
		val = BootnameA + " " + BootnameB
	}
	var out []string
	for _, f := range strings.Fields(val) {
		if f == BootnameA || f == BootnameB {
			out = append(out, f)
		}
	}
	return out
}

// cInt reads a number as GRUB's test and RAUC do (C base 0: 0x hex, 0
// octal, decimal); what does not parse is 0.
func cInt(s string) uint64 {
	s = strings.TrimSpace(s)
	base := 10
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0
	}
	return n
}

// left returns BOOT_X_LEFT: hexadecimal (U-Boot's setexpr writes hex, the
// script tests 0x${BOOT_X_LEFT}); missing or empty is the script's default.
func left(v Vars, b string) uint64 {
	val, ok := v.Get(leftVar(b))
	if !ok || val == "" {
		return DefaultTries
	}
	val = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(val), "0x"), "0X")
	n, err := strconv.ParseUint(val, 16, 64)
	if err != nil {
		return 0
	}
	return n
}

func flag(v Vars, name string) uint64 {
	val, _ := v.Get(name)
	return cInt(val)
}

// bootable reports whether the script would boot bootname b when it
// reaches it in the order.
func (s Scheme) bootable(v Vars, b string) bool {
	if s.kind == 1 {
		return flag(v, okVar(b)) == 1 && flag(v, tryVar(b)) == 0
	}
	return left(v, b) > 0
}

// primary returns the bootname the script boots next without falling back
// (the first bootable one in the order), or "".
func (s Scheme) primary(v Vars) string {
	for _, b := range s.order(v) {
		if s.bootable(v, b) {
			return b
		}
	}
	return ""
}

// anyBootable reports whether some slot in the order is bootable.
func (s Scheme) anyBootable(v Vars) bool { return s.primary(v) != "" }

// setPrimary makes b the first slot of the order and bootable: RAUC's
// set_primary. GRUB: ORDER="b other", b_OK=1, b_TRY=0. U-Boot: b first in
// BOOT_ORDER (the rest of the order kept), BOOT_b_LEFT=tries.
func (s Scheme) setPrimary(v Vars, b string, tries int) error {
	other := BootnameB
	if b == BootnameB {
		other = BootnameA
	}
	if s.kind == 1 {
		if err := v.Set(varGRUBOrder, b+" "+other); err != nil {
			return err
		}
		return s.markGood(v, b, tries)
	}
	order := []string{b}
	for _, x := range s.order(v) {
		if x != b {
			order = append(order, x)
		}
	}
	if err := v.Set(varUBootOrder, strings.Join(order, " ")); err != nil {
		return err
	}
	return v.Set(leftVar(b), strconv.FormatUint(uint64(tries), 16))
}

// markGood records a healthy boot of b: RAUC's set_state(good). GRUB:
// b_OK=1, b_TRY=0. U-Boot: BOOT_b_LEFT=tries. The order is not changed.
func (s Scheme) markGood(v Vars, b string, tries int) error {
	if s.kind == 1 {
		if err := v.Set(okVar(b), "1"); err != nil {
			return err
		}
		return v.Set(tryVar(b), "0")
	}
	return v.Set(leftVar(b), strconv.FormatUint(uint64(tries), 16))
}

// markBad stops the bootloader from booting b: RAUC's set_state(bad).
// GRUB: b_OK=0, b_TRY=0. U-Boot: b leaves BOOT_ORDER, BOOT_b_LEFT=0.
func (s Scheme) markBad(v Vars, b string) error {
	if s.kind == 1 {
		if err := v.Set(okVar(b), "0"); err != nil {
			return err
		}
		return v.Set(tryVar(b), "0")
	}
	var order []string
	for _, x := range s.order(v) {
		if x != b {
			order = append(order, x)
		}
	}
	if err := v.Set(varUBootOrder, strings.Join(order, " ")); err != nil {
		return err
	}
	return v.Set(leftVar(b), "0")
}

// triesLeft reports the boot attempts b has left: U-Boot's count; for
// GRUB 1 if b is bootable, else 0.
func (s Scheme) triesLeft(v Vars, b string) int {
	if s.kind == 1 {
		if s.bootable(v, b) {
			return 1
		}
		return 0
	}
	n := left(v, b)
	if n > 1<<20 {
		n = 1 << 20
	}
	return int(n)
}
