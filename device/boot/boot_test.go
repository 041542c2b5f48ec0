package boot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/device/grubenv"
	"github.com/upkit/upkit/device/ubootenv"
)

// tool returns the path of a real tool; the test fails (never skips) when
// it is missing.
func tool(t *testing.T, name string) string {
	t.Helper()
	pkgs := map[string]string{
		"grub-editenv": "grub-common", "grub-script-check": "grub-common",
		"fw_printenv": "libubootenv-tool", "fw_setenv": "libubootenv-tool",
		"mkimage": "u-boot-tools", "dumpimage": "u-boot-tools", "mkenvimage": "u-boot-tools",
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install it (Debian/Ubuntu: apt-get install %s)", name, pkgs[name])
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rig is a device's bootloader environment, a Switch over it, and the real
// tool that reads and writes it as the bootloader would (grub-editenv for
// GRUB's save_env, fw_setenv for U-Boot's saveenv: both write the way the
// bootloader does, in place of it).
type rig struct {
	name    string
	scheme  boot.Scheme
	sw      *boot.Switch
	cmdline string
	list    func(t *testing.T) map[string]string
	set     func(t *testing.T, vars map[string]string)
	fsys    device.FS
	newEnv  func(fsys device.FS) boot.Env
}

func parseListing(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func newGRUBRig(t *testing.T) *rig {
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	r := &rig{name: "grub", scheme: boot.GRUB, cmdline: filepath.Join(dir, "cmdline")}
	r.newEnv = func(fsys device.FS) boot.Env { return boot.GRUBEnv(grubenv.NewFile(path, fsys)) }
	r.list = func(t *testing.T) map[string]string {
		if _, err := os.Stat(path); err != nil {
			return map[string]string{}
		}
		return parseListing(run(t, "grub-editenv", path, "list"))
	}
	r.set = func(t *testing.T, vars map[string]string) {
		args := []string{path, "set"}
		for _, k := range sortedKeys(vars) {
			args = append(args, k+"="+vars[k])
		}
		run(t, "grub-editenv", args...)
	}
	r.sw = r.newSwitch(t, nil)
	return r
}

func newUBootRig(t *testing.T) *rig {
	dir := t.TempDir()
	disk := filepath.Join(dir, "env.img")
	config := filepath.Join(dir, "fw_env.config")
	text := fmt.Sprintf("%s 0x0 0x2000\n%s 0x2000 0x2000\n", disk, disk)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// U-Boot's saved environment, set up once from its defaults (as a
	// factory does with mkenvimage): copy 0 holds it, copy 1 is blank.
	defaults := filepath.Join(dir, "defaults.txt")
	os.WriteFile(defaults, []byte("bootcmd=run upkit_boot\n"), 0o644)
	img := filepath.Join(dir, "defaults.bin")
	run(t, "mkenvimage", "-r", "-s", "0x2000", "-o", img, defaults)
	data, _ := os.ReadFile(img)
	if err := os.WriteFile(disk, append(data, make([]byte, 0x2000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &rig{name: "u-boot", scheme: boot.UBoot, cmdline: filepath.Join(dir, "cmdline")}
	r.newEnv = func(fsys device.FS) boot.Env {
		cfg, err := ubootenv.ParseConfig([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		st, err := ubootenv.Open(*cfg, fsys)
		if err != nil {
			t.Fatal(err)
		}
		return boot.UBootEnv(st)
	}
	r.list = func(t *testing.T) map[string]string { return parseListing(run(t, "fw_printenv", "-c", config)) }
	r.set = func(t *testing.T, vars map[string]string) {
		// fw_setenv -s takes a file of "name=value" lines: all
		// changes in one write, as U-Boot's saveenv.
		var sb strings.Builder
		for _, k := range sortedKeys(vars) {
			sb.WriteString(k + "=" + vars[k] + "\n")
		}
		script := filepath.Join(dir, "set.txt")
		os.WriteFile(script, []byte(sb.String()), 0o644)
		run(t, "fw_setenv", "-c", config, "-s", script)
	}
	r.sw = r.newSwitch(t, nil)
	return r
}

func (r *rig) newSwitch(t *testing.T, fsys device.FS) *boot.Switch {
	sw, err := boot.New(boot.Config{Env: r.newEnv(fsys), Scheme: r.scheme, Component: "rootfs", Cmdline: r.cmdline})
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func rigs(t *testing.T) []*rig { return []*rig{newGRUBRig(t), newUBootRig(t)} }

// powerOn is the bootloader at power-on: the contrib script's choice (the
// model below) made on what the real tool lists, its saves written by the
// real tool, and the kernel command line it passes. It returns the booted
// slot.
func (r *rig) powerOn(t *testing.T) string {
	t.Helper()
	vars := r.list(t)
	b, changes := scriptBoot(r.scheme, vars)
	r.set(t, changes)
	if err := os.WriteFile(r.cmdline, []byte("ro quiet root=PARTLABEL=rootfs upkit.slot="+b+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	slot, err := r.sw.Booted("rootfs")
	if err != nil {
		t.Fatal(err)
	}
	return slot
}

// scriptBoot models contrib/grub/grub.cfg and contrib/u-boot/boot.cmd: the
// bootname booted from vars, and the variables the script saves.
func scriptBoot(s boot.Scheme, vars map[string]string) (string, map[string]string) {
	get := func(k, def string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return def
	}
	if s == boot.GRUB {
		v := map[string]string{"ORDER": get("ORDER", "A B")}
		for _, k := range []string{"A_OK", "A_TRY", "B_OK", "B_TRY"} {
			v[k] = get(k, "0")
		}
		order := strings.Fields(v["ORDER"])
		for _, b := range order {
			if (b == "A" || b == "B") && v[b+"_OK"] == "1" && v[b+"_TRY"] == "0" {
				v[b+"_TRY"] = "1"
				return b, v
			}
		}
		for _, b := range []string{"A", "B"} {
			if v[b+"_OK"] == "1" {
				v[b+"_TRY"] = "0"
			}
		}
		for _, b := range order {
			if (b == "A" || b == "B") && v[b+"_OK"] == "1" {
				v[b+"_TRY"] = "1"
				return b, v
			}
		}
		return "A", v
	}
	v := map[string]string{"BOOT_ORDER": get("BOOT_ORDER", ""), "BOOT_A_LEFT": get("BOOT_A_LEFT", ""), "BOOT_B_LEFT": get("BOOT_B_LEFT", "")}
	if v["BOOT_ORDER"] == "" {
		v["BOOT_ORDER"] = "A B"
	}
	for _, b := range []string{"A", "B"} {
		if v["BOOT_"+b+"_LEFT"] == "" {
			v["BOOT_"+b+"_LEFT"] = "3"
		}
	}
	for pass := 0; pass < 2; pass++ {
		for _, b := range strings.Fields(v["BOOT_ORDER"]) {
			if b != "A" && b != "B" {
				continue
			}
			var n int
			fmt.Sscanf(v["BOOT_"+b+"_LEFT"], "%x", &n)
			if n > 0 {
				v["BOOT_"+b+"_LEFT"] = fmt.Sprintf("%x", n-1)
				return b, v
			}
		}
		// None: both get 3 attempts, saveenv, reset (and the script runs again).
		v["BOOT_A_LEFT"], v["BOOT_B_LEFT"] = "3", "3"
	}
	panic("unreachable: after a reset A and B have attempts")
}

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func mustState(t *testing.T, sw *boot.Switch) (active, primary string) {
	t.Helper()
	ctx := context.Background()
	a, err := sw.Active(ctx, "rootfs")
	if err != nil {
		t.Fatal(err)
	}
	p, err := sw.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a, p
}

// An update of slot B that boots healthy is committed; from then on B
// boots, attempts restored on each healthy boot. The variables after
// every step are what RAUC's scripts expect.
func TestUpdateCommitted(t *testing.T) {
	ctx := context.Background()
	for _, r := range rigs(t) {
		t.Run(r.name, func(t *testing.T) {
			sw := r.sw
			// Factory: slot A committed.
			if err := sw.Activate(ctx, "rootfs", device.SlotA); err != nil {
				t.Fatal(err)
			}
			booted := r.powerOn(t)
			check(t, "booted", booted, device.SlotA)
			check(t, "outcome", boot.Classify(booted, device.SlotA, ""), boot.Normal)
			if err := sw.MarkGood(ctx, booted); err != nil {
				t.Fatal(err)
			}
			// Install wrote B; try it.
			if err := sw.Try(ctx, device.SlotB); err != nil {
				t.Fatal(err)
			}
			active, primary := mustState(t, sw)
			check(t, "active during the trial", active, device.SlotA)
			check(t, "primary during the trial", primary, device.SlotB)
			vars := r.list(t)
			if r.scheme == boot.GRUB {
				check(t, "ORDER", vars["ORDER"], "B A")
				check(t, "B_OK B_TRY", vars["B_OK"]+" "+vars["B_TRY"], "1 0")
			} else {
				check(t, "BOOT_ORDER", vars["BOOT_ORDER"], "B A")
				check(t, "BOOT_B_LEFT", vars["BOOT_B_LEFT"], "3")
				check(t, "bootcmd kept", vars["bootcmd"], "run upkit_boot")
			}
			check(t, "upkit_active", vars[boot.VarActive], "rootfs=A")

			booted = r.powerOn(t)
			check(t, "booted", booted, device.SlotB)
			check(t, "outcome", boot.Classify(booted, device.SlotA, device.SlotB), boot.TrialBooted)
			// The bootloader counted the attempt.
			vars = r.list(t)
			if r.scheme == boot.GRUB {
				check(t, "B_TRY after booting B", vars["B_TRY"], "1")
			} else {
				check(t, "BOOT_B_LEFT after booting B", vars["BOOT_B_LEFT"], "2")
			}
			// Healthy: Device.Commit activates B.
			if err := sw.Activate(ctx, "rootfs", device.SlotB); err != nil {
				t.Fatal(err)
			}
			active, primary = mustState(t, sw)
			check(t, "active", active, device.SlotB)
			check(t, "primary", primary, device.SlotB)
			for i := 0; i < 5; i++ {
				booted = r.powerOn(t)
				check(t, fmt.Sprintf("boot %d", i), booted, device.SlotB)
				check(t, "outcome", boot.Classify(booted, device.SlotB, ""), boot.Normal)
				if err := sw.MarkGood(ctx, booted); err != nil {
					t.Fatal(err)
				}
			}
			vars = r.list(t)
			if r.scheme == boot.GRUB {
				check(t, "B_OK B_TRY", vars["B_OK"]+" "+vars["B_TRY"], "1 0")
			} else {
				check(t, "BOOT_B_LEFT", vars["BOOT_B_LEFT"], "3")
			}
			check(t, "upkit_active", vars[boot.VarActive], "rootfs=B")
		})
	}
}

// An update of slot B that never becomes healthy: the bootloader falls
// back to A once B's attempts are spent (one for GRUB, three for U-Boot);
// the agent sees it, rolls back and marks B bad; A boots from then on.
func TestTrialFallsBack(t *testing.T) {
	ctx := context.Background()
	for _, r := range rigs(t) {
		t.Run(r.name, func(t *testing.T) {
			sw := r.sw
			if err := sw.Activate(ctx, "rootfs", device.SlotA); err != nil {
				t.Fatal(err)
			}
			if err := sw.Try(ctx, device.SlotB); err != nil {
				t.Fatal(err)
			}
			tries := 1
			if r.scheme == boot.UBoot {
				tries = boot.DefaultTries
			}
			for i := 0; i < tries; i++ {
				// B boots but never marks itself good (it hangs,
				// panics, or fails its health check and reboots).
				check(t, fmt.Sprintf("attempt %d", i+1), r.powerOn(t), device.SlotB)
			}
			booted := r.powerOn(t)
			check(t, "booted after the attempts", booted, device.SlotA)
			check(t, "outcome", boot.Classify(booted, device.SlotA, device.SlotB), boot.FellBack)
			// Device.Rollback activates the committed slot; the agent
			// marks the abandoned one bad.
			if err := sw.Activate(ctx, "rootfs", device.SlotA); err != nil {
				t.Fatal(err)
			}
			if err := sw.MarkBad(ctx, device.SlotB); err != nil {
				t.Fatal(err)
			}
			if err := sw.MarkGood(ctx, booted); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				booted := r.powerOn(t)
				check(t, fmt.Sprintf("boot %d after the rollback", i), booted, device.SlotA)
				if err := sw.MarkGood(ctx, booted); err != nil {
					t.Fatal(err)
				}
			}
			st, err := sw.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "B tries left", st.Slots[1].TriesLeft, 0)
			check(t, "active", st.Active["rootfs"], device.SlotA)
		})
	}
}

// A committed slot that stops booting: the bootloader falls back to the
// other one, and the agent (nothing pending) sees an unexpected boot.
func TestCommittedSlotFails(t *testing.T) {
	ctx := context.Background()
	for _, r := range rigs(t) {
		t.Run(r.name, func(t *testing.T) {
			sw := r.sw
			sw.Activate(ctx, "rootfs", device.SlotA)
			sw.Try(ctx, device.SlotB)
			check(t, "trial", r.powerOn(t), device.SlotB)
			sw.Activate(ctx, "rootfs", device.SlotB) // committed
			// B breaks: it never marks itself good again.
			booted := ""
			for i := 0; i < 10 && booted != device.SlotA; i++ {
				booted = r.powerOn(t)
			}
			check(t, "fallback", booted, device.SlotA)
			check(t, "outcome", boot.Classify(booted, device.SlotB, ""), boot.Unexpected)
		})
	}
}

// MarkBad refuses to leave no slot bootable.
func TestMarkBadKeepsOneSlot(t *testing.T) {
	ctx := context.Background()
	for _, r := range rigs(t) {
		t.Run(r.name, func(t *testing.T) {
			sw := r.sw
			sw.Activate(ctx, "rootfs", device.SlotA)
			if err := sw.MarkBad(ctx, device.SlotB); err != nil {
				t.Fatal(err)
			}
			before := r.list(t)
			if err := sw.MarkBad(ctx, device.SlotA); !errors.Is(err, boot.ErrNoBootableSlot) {
				t.Fatalf("MarkBad of the last bootable slot: %v", err)
			}
			check(t, "variables after the refused MarkBad", r.list(t), before)
			check(t, "boots", r.powerOn(t), device.SlotA)
		})
	}
}

// Other components' slots are recorded without moving the bootloader.
func TestOtherComponents(t *testing.T) {
	ctx := context.Background()
	for _, r := range rigs(t) {
		t.Run(r.name, func(t *testing.T) {
			sw := r.sw
			sw.Activate(ctx, "rootfs", device.SlotA)
			if err := sw.Activate(ctx, "app", device.SlotB); err != nil {
				t.Fatal(err)
			}
			if a, _ := sw.Active(ctx, "app"); a != device.SlotB {
				t.Fatalf("app active %q", a)
			}
			_, primary := mustState(t, sw)
			check(t, "primary", primary, device.SlotA)
			check(t, "upkit_active", r.list(t)[boot.VarActive], "app=B rootfs=A")
			if b, err := sw.Booted("app"); err != nil || b != "" {
				t.Fatalf("Booted(app) = %q, %v", b, err)
			}
			for _, bad := range []string{"", "c", "A"} {
				if err := sw.Activate(ctx, "app", bad); !errors.Is(err, boot.ErrConfig) {
					t.Errorf("Activate(app, %q): %v", bad, err)
				}
			}
		})
	}
}

// A damaged upkit_active record reads as never activated (the device then
// activates its committed slot again, which rewrites it).
func TestDamagedRecord(t *testing.T) {
	ctx := context.Background()
	r := newGRUBRig(t)
	r.set(t, map[string]string{boot.VarActive: "rootfs=C app=A junk ..=A"})
	if a, err := r.sw.Active(ctx, "rootfs"); err != nil || a != "" {
		t.Fatalf("rootfs active %q, %v", a, err)
	}
	if a, _ := r.sw.Active(ctx, "app"); a != device.SlotA {
		t.Fatalf("app active %q", a)
	}
	if err := r.sw.Activate(ctx, "rootfs", device.SlotB); err != nil {
		t.Fatal(err)
	}
	check(t, "upkit_active", r.list(t)[boot.VarActive], "app=A rootfs=B")
}

func TestBootedSlot(t *testing.T) {
	for cmdline, want := range map[string]string{
		"ro quiet upkit.slot=A":                    device.SlotA,
		"BOOT_IMAGE=/vmlinuz upkit.slot=B root=/x": device.SlotB,
		"rauc.slot=B":                              device.SlotB,
		"rauc.slot=A upkit.slot=B":                 device.SlotB,
		`upkit.slot="A"`:                           device.SlotA,
		"upkit.slot=A upkit.slot=B":                device.SlotB,
		"rauc.slot=R":                              "",
		"rauc.slot=recovery.0":                     "",
		"upkit.slot=a":                             "",
		"root=/dev/sda2":                           "",
		"":                                         "",
		"upkit.slotx=A xupkit.slot=A upkit.slot":   "",
		"upkit.slot=C rauc.slot=A":                 "",
	} {
		if got := boot.BootedSlot(cmdline); got != want {
			t.Errorf("BootedSlot(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	a, b := device.SlotA, device.SlotB
	for _, c := range []struct {
		booted, committed, pending string
		want                       boot.Outcome
	}{
		{a, a, "", boot.Normal},
		{a, "", "", boot.Normal},
		{b, a, b, boot.TrialBooted},
		{a, a, b, boot.FellBack},
		{b, a, "", boot.Unexpected},
		{"", a, b, boot.Elsewhere},
		{"", a, "", boot.Elsewhere},
	} {
		if got := boot.Classify(c.booted, c.committed, c.pending); got != c.want {
			t.Errorf("Classify(%q, %q, %q) = %v, want %v", c.booted, c.committed, c.pending, got, c.want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	env := boot.GRUBEnv(grubenv.NewFile(filepath.Join(t.TempDir(), "grubenv"), nil))
	for name, cfg := range map[string]boot.Config{
		"no env":        {Scheme: boot.GRUB, Component: "rootfs"},
		"no scheme":     {Env: env, Component: "rootfs"},
		"no component":  {Env: env, Scheme: boot.GRUB},
		"bad component": {Env: env, Scheme: boot.GRUB, Component: "../x"},
		"tries":         {Env: env, Scheme: boot.UBoot, Component: "rootfs", Tries: 256},
	} {
		if _, err := boot.New(cfg); !errors.Is(err, boot.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The contrib GRUB configuration is valid GRUB script.
func TestGRUBConfigSyntax(t *testing.T) {
	run(t, "grub-script-check", filepath.Join("..", "..", "contrib", "grub", "grub.cfg"))
}

// The contrib U-Boot script wraps into a script image (mkimage -T script)
// that holds exactly the script.
func TestUBootScriptImage(t *testing.T) {
	src := filepath.Join("..", "..", "contrib", "u-boot", "boot.cmd")
	dir := t.TempDir()
	scr := filepath.Join(dir, "boot.scr")
	run(t, "mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-n", "upkit boot", "-d", src, scr)
	if out := run(t, "mkimage", "-l", scr); !strings.Contains(out, "Script") {
		t.Fatalf("mkimage -l: %s", out)
	}
	out := filepath.Join(dir, "extracted")
	run(t, "dumpimage", "-T", "script", "-p", "0", "-o", out, scr)
	want, _ := os.ReadFile(src)
	got, _ := os.ReadFile(out)
	// A script image's data is a table of lengths (here one, then a
	// zero) and the script.
	if len(got) < 8 || string(got[8:]) != string(want) {
		t.Fatalf("the image does not hold the script (%d bytes, want 8 + %d)", len(got), len(want))
	}
}
