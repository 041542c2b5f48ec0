package boot_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/device/grubenv"
	"github.com/upkit/upkit/device/ubootenv"
	"github.com/upkit/upkit/internal/testutil/faultfs"
)

// layout is a bootloader environment in a directory, which the power-loss
// test copies to restart from.
type layout struct {
	name   string
	scheme boot.Scheme
	// setup creates the environment in dir.
	setup func(t *testing.T, dir string)
	// env opens it.
	env func(t *testing.T, dir string, fsys device.FS) boot.Env
	// list is what the real tool reads from it.
	list func(t *testing.T, dir string) map[string]string
}

func ubootLayout(name, lines string, allowEmpty bool, setup func(t *testing.T, dir string)) layout {
	config := func(dir string) []byte { return []byte(fmt.Sprintf(lines, dir, dir)) }
	return layout{
		name: name, scheme: boot.UBoot, setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "fw_env.config"), config(dir), 0o644)
			setup(t, dir)
		},
		env: func(t *testing.T, dir string, fsys device.FS) boot.Env {
			cfg, err := ubootenv.ParseConfig(config(dir))
			if err != nil {
				t.Fatal(err)
			}
			cfg.LockFile = filepath.Join(dir, "lock")
			cfg.AllowEmpty = allowEmpty
			st, err := ubootenv.Open(*cfg, fsys)
			if err != nil {
				t.Fatal(err)
			}
			return boot.UBootEnv(st)
		},
		list: func(t *testing.T, dir string) map[string]string {
			// The configuration names dir (a copied one names its source).
			os.WriteFile(filepath.Join(dir, "fw_env.config"), config(dir), 0o644)
			return parseListing(run(t, "fw_printenv", "-c", filepath.Join(dir, "fw_env.config")))
		},
	}
}

var powerLayouts = []layout{
	{
		name: "grubenv", scheme: boot.GRUB,
		setup: func(t *testing.T, dir string) {
			run(t, "grub-editenv", filepath.Join(dir, "grubenv"), "create")
		},
		env: func(t *testing.T, dir string, fsys device.FS) boot.Env {
			return boot.GRUBEnv(grubenv.NewFile(filepath.Join(dir, "grubenv"), fsys))
		},
		list: func(t *testing.T, dir string) map[string]string {
			return parseListing(run(t, "grub-editenv", filepath.Join(dir, "grubenv"), "list"))
		},
	},
	ubootLayout("u-boot redundant", "%s/env.img 0x0 0x2000\n%s/env.img 0x2000 0x2000\n", false, func(t *testing.T, dir string) {
		defaults := filepath.Join(dir, "defaults.txt")
		os.WriteFile(defaults, []byte("bootcmd=run upkit_boot\n"), 0o644)
		img := filepath.Join(dir, "defaults.bin")
		run(t, "mkenvimage", "-r", "-s", "0x2000", "-o", img, defaults)
		data, _ := os.ReadFile(img)
		os.WriteFile(filepath.Join(dir, "env.img"), append(data, make([]byte, 0x2000)...), 0o644)
	}),
	ubootLayout("u-boot file (env import -c)", "%s/upkit.env 0x0 0x4000\n%.0s", true, func(t *testing.T, dir string) {
		// An empty environment file, as an image build lays it down.
		empty := filepath.Join(dir, "empty.txt")
		os.WriteFile(empty, nil, 0o644)
		run(t, "mkenvimage", "-s", "0x4000", "-o", filepath.Join(dir, "upkit.env"), empty)
	}),
}

// Power is cut at every step of every change the agent makes to the
// bootloader's environment. After each cut the environment reads (with
// upkit and with the real tool) as it was before the change or as it is
// after it, never torn, and the bootloader script boots a slot.
func TestPowerLossAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	type op struct {
		name string
		// boot: the bootloader boots (and saves its count) first.
		boot bool
		fn   func(sw *boot.Switch) error
	}
	ops := []op{
		{"activate A (factory)", false, func(sw *boot.Switch) error { return sw.Activate(ctx, "rootfs", device.SlotA) }},
		{"mark A good", true, func(sw *boot.Switch) error { return sw.MarkGood(ctx, device.SlotA) }},
		{"try B", false, func(sw *boot.Switch) error { return sw.Try(ctx, device.SlotB) }},
		{"commit B", true, func(sw *boot.Switch) error { return sw.Activate(ctx, "rootfs", device.SlotB) }},
		{"mark B good", true, func(sw *boot.Switch) error { return sw.MarkGood(ctx, device.SlotB) }},
		{"activate app", false, func(sw *boot.Switch) error { return sw.Activate(ctx, "app", device.SlotB) }},
		{"try A", false, func(sw *boot.Switch) error { return sw.Try(ctx, device.SlotA) }},
		{"roll back to B", true, func(sw *boot.Switch) error { return sw.Activate(ctx, "rootfs", device.SlotB) }},
		{"mark A bad", false, func(sw *boot.Switch) error { return sw.MarkBad(ctx, device.SlotA) }},
	}
	for _, l := range powerLayouts {
		t.Run(l.name, func(t *testing.T) {
			newSwitch := func(dir string, fsys device.FS) *boot.Switch {
				sw, err := boot.New(boot.Config{Env: l.env(t, dir, fsys), Scheme: l.scheme, Component: "rootfs"})
				if err != nil {
					t.Fatal(err)
				}
				return sw
			}
			state := t.TempDir() // the environment before each op
			l.setup(t, state)
			cuts := 0
			for _, o := range ops {
				if o.boot {
					_, saved := scriptBoot(l.scheme, l.list(t, state))
					err := l.env(t, state, nil).Update(ctx, func(v boot.Vars) error {
						for k, val := range saved {
							if err := v.Set(k, val); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				}
				before := l.list(t, state)
				// The op without a cut: the state after it, and its steps.
				afterDir := t.TempDir()
				copyTree(t, state, afterDir)
				count := faultfs.New(0)
				if err := o.fn(newSwitch(afterDir, count)); err != nil {
					t.Fatalf("%s: %v", o.name, err)
				}
				after := l.list(t, afterDir)
				if fmt.Sprint(after) == fmt.Sprint(before) {
					t.Fatalf("%s changed nothing: the test would prove nothing", o.name)
				}
				for k := 1; k <= count.Steps(); k++ {
					dir := t.TempDir()
					copyTree(t, state, dir)
					ffs := faultfs.New(k)
					if err := o.fn(newSwitch(dir, ffs)); err == nil {
						t.Fatalf("%s, cut at step %d: no error", o.name, k)
					}
					cuts++
					// Restart: read with a healthy file system.
					got := l.list(t, dir)
					if fmt.Sprint(got) != fmt.Sprint(before) && fmt.Sprint(got) != fmt.Sprint(after) {
						t.Fatalf("%s, cut at step %d: environment is neither before nor after:\n%v\nbefore %v\nafter  %v", o.name, k, got, before, after)
					}
					// The bootloader boots what it would have booted before or after.
					booted, _ := scriptBoot(l.scheme, got)
					b0, _ := scriptBoot(l.scheme, before)
					b1, _ := scriptBoot(l.scheme, after)
					if booted != b0 && booted != b1 {
						t.Fatalf("%s, cut at step %d: boots %s, not %s or %s", o.name, k, booted, b0, b1)
					}
					sw := newSwitch(dir, nil)
					// The op completes when redone after the restart.
					if err := o.fn(sw); err != nil {
						t.Fatalf("%s, cut at step %d, redone: %v", o.name, k, err)
					}
					if got := l.list(t, dir); fmt.Sprint(got) != fmt.Sprint(after) {
						t.Fatalf("%s, cut at step %d, redone: %v, want %v", o.name, k, got, after)
					}
				}
				state = afterDir
			}
			t.Logf("%d power cuts", cuts)
			if cuts < len(ops) {
				t.Fatalf("only %d cuts", cuts)
			}
		})
	}
}

// copyTree copies the regular files of a directory.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
