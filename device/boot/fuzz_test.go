package boot_test

import (
	"context"
	"errors"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/device/ubootenv"
)

// memEnv is an Env in memory (ubootenv's variables, which take any name
// and value without NUL).
type memEnv struct{ e *ubootenv.Env }

func (m *memEnv) Read(ctx context.Context) (boot.Vars, error) { return m.e.Clone(), nil }

func (m *memEnv) Update(ctx context.Context, fn func(boot.Vars) error) error {
	c := m.e.Clone()
	if err := fn(c); err != nil {
		return err
	}
	m.e = c
	return nil
}

// FuzzSwitch: whatever the bootloader's variables hold (they are written
// by the bootloader, by hand, or damaged), the switch's operations do what
// they say: Try and Activate make the slot the one booted next, Activate
// records it, MarkBad never leaves no slot bootable.
func FuzzSwitch(f *testing.F) {
	f.Add(true, "A B", "1", "0", "1", "1", "3", "0", "rootfs=A app=B", false)
	f.Add(false, "B", "0", "0x1", "", "", "ff", "zz", "rootfs=C", true)
	f.Add(false, "", "", "", "", "", "", "", "", false)
	f.Add(true, "C D A", "01", "00", "1", "0", "0x3", "-1", "=A rootfs=", true)
	f.Fuzz(func(t *testing.T, grub bool, order, aOK, aTry, bOK, bTry, aLeft, bLeft, active string, slotB bool) {
		ctx := context.Background()
		e := ubootenv.NewEnv()
		scheme := boot.UBoot
		orderVar := "BOOT_ORDER"
		if grub {
			scheme, orderVar = boot.GRUB, "ORDER"
		}
		for k, v := range map[string]string{orderVar: order, "A_OK": aOK, "A_TRY": aTry, "B_OK": bOK, "B_TRY": bTry,
			"BOOT_A_LEFT": aLeft, "BOOT_B_LEFT": bLeft, boot.VarActive: active} {
			if e.Set(k, v) != nil {
				return // a NUL: no environment holds it
			}
		}
		sw, err := boot.New(boot.Config{Env: &memEnv{e}, Scheme: scheme, Component: "rootfs"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := sw.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p := st.Primary; p != "" && p != device.SlotA && p != device.SlotB {
			t.Fatalf("primary %q", p)
		}
		slot := device.SlotA
		if slotB {
			slot = device.SlotB
		}
		primary := func() string {
			p, err := sw.Primary(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		if err := sw.Try(ctx, slot); err != nil {
			t.Fatal(err)
		}
		if p := primary(); p != slot {
			t.Fatalf("after Try(%s) the bootloader boots %q", slot, p)
		}
		if err := sw.MarkGood(ctx, slot); err != nil || primary() != slot {
			t.Fatalf("MarkGood: %v, primary %q", err, primary())
		}
		if err := sw.Activate(ctx, "rootfs", slot); err != nil {
			t.Fatal(err)
		}
		if a, err := sw.Active(ctx, "rootfs"); err != nil || a != slot {
			t.Fatalf("after Activate(%s): active %q, %v", slot, a, err)
		}
		if p := primary(); p != slot {
			t.Fatalf("after Activate(%s) the bootloader boots %q", slot, p)
		}
		if err := sw.MarkBad(ctx, device.OtherSlot(slot)); err != nil || primary() != slot {
			t.Fatalf("MarkBad of the other slot: %v, primary %q", err, primary())
		}
		if err := sw.MarkBad(ctx, slot); !errors.Is(err, boot.ErrNoBootableSlot) {
			t.Fatalf("MarkBad of the last bootable slot: %v", err)
		}
	})
}

// FuzzBootedSlot: any kernel command line names slot a, b or none.
func FuzzBootedSlot(f *testing.F) {
	f.Add("ro upkit.slot=A rauc.slot=B")
	f.Add(`upkit.slot="B" quiet`)
	f.Fuzz(func(t *testing.T, cmdline string) {
		if s := boot.BootedSlot(cmdline); s != "" && s != device.SlotA && s != device.SlotB {
			t.Fatalf("BootedSlot(%q) = %q", cmdline, s)
		}
	})
}
