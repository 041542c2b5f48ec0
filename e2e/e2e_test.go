//go:build e2e

// The scenarios on the virtual device (docs/E2E.md). Built only with the e2e
// tag: `make e2e` runs them all, `make e2e RUN=GRUBFallback` one of them.

package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	flagCuts        = flag.Int("e2e.cuts", 20, "power cuts in TestGRUBPowerCuts")
	flagSeed        = flag.Uint64("e2e.seed", 0, "seed of the cut moments (0: from the clock, printed)")
	flagBootTimeout = flag.Duration("e2e.boot-timeout", 5*time.Minute, "longest wait for one boot (TCG on a busy machine is slow)")
	flagConsole     = flag.Bool("e2e.console", false, "copy every console line to standard output")
	flagKeep        = flag.Bool("e2e.keep", false, "keep each scenario's device folder (disks, console.log) and print where")
)

// images is the image set every scenario starts from, built by TestMain.
var images *Images

// seed is the seed of this run's cut moments.
var seed uint64

var (
	resultsMu sync.Mutex
	passed    int
	failed    int
)

func TestMain(m *testing.M) {
	flag.Parse()
	seed = *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	fmt.Printf("e2e: seed %d (rerun with: make e2e SEED=%d)\n", seed, seed)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t0 := time.Now()
	// The agent, its configurations and the trust root, copied into every
	// rootfs (agent_test.go).
	overlay, err := os.MkdirTemp("", "upkit-e2e-overlay-")
	if err == nil {
		err = makeOverlay(ctx, overlay)
	}
	if err != nil {
		cancel()
		fmt.Printf("e2e: images: FAIL (the agent's overlay: %v)\ne2e: 0 passed, 1 failed\n", err)
		os.Exit(1)
	}
	img, err := BuildImages(ctx, "..", []string{"UPKIT_E2E_OVERLAY=" + overlay}, os.Stderr)
	cancel()
	os.RemoveAll(overlay)
	if err != nil {
		fmt.Printf("e2e: images: FAIL (%v)\ne2e: 0 passed, 1 failed\n", err)
		os.Exit(1)
	}
	images = img
	fmt.Printf("e2e: images: %s (%.0f s)\n", img.Dir, time.Since(t0).Seconds())
	code := m.Run()
	fmt.Printf("e2e: %d passed, %d failed\n", passed, failed)
	if failed > 0 && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// scenario is one named test: it prints "e2e: NAME: ok (notes)" or
// "e2e: NAME: FAIL (first failure)" when it ends.
type scenario struct {
	*testing.T
	name    string
	context context.Context
	mu      sync.Mutex
	detail  string
	notes   []string
}

func begin(t *testing.T, name string) *scenario {
	s := &scenario{T: t, name: name}
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d.Add(-10*time.Second))
	}
	s.context = ctx
	t.Cleanup(func() {
		cancel()
		resultsMu.Lock()
		defer resultsMu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		if t.Failed() {
			failed++
			detail := s.detail
			if detail == "" {
				detail = "see the test log"
			}
			fmt.Printf("e2e: %s: FAIL (%s)\n", s.name, detail)
			return
		}
		passed++
		if len(s.notes) > 0 {
			fmt.Printf("e2e: %s: ok (%s)\n", s.name, strings.Join(s.notes, "; "))
		} else {
			fmt.Printf("e2e: %s: ok\n", s.name)
		}
	})
	return s
}

func (s *scenario) fail(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detail == "" {
		first, _, _ := strings.Cut(msg, "\n")
		if len(first) > 300 {
			first = first[:300] + "..."
		}
		s.detail = first
	}
}

// Fatalf records the first failure for the result line, then fails.
func (s *scenario) Fatalf(format string, args ...any) {
	s.Helper()
	s.fail(fmt.Sprintf(format, args...))
	s.T.Fatalf(format, args...)
}

// Errorf records the first failure for the result line, then fails later.
func (s *scenario) Errorf(format string, args ...any) {
	s.Helper()
	s.fail(fmt.Sprintf(format, args...))
	s.T.Errorf(format, args...)
}

// note adds to the result line of a scenario that passes.
func (s *scenario) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// ctx returns a context that ends shortly before the test's deadline.
func (s *scenario) ctx() context.Context { return s.context }

// newDevice makes a device in the scenario's folder.
func (s *scenario) newDevice(fw Firmware) *Device {
	s.Helper()
	dir := s.TempDir()
	if *flagKeep {
		var err error
		if dir, err = os.MkdirTemp("", "upkit-e2e-"+s.name+"-"); err != nil {
			s.Fatalf("%v", err)
		}
		fmt.Printf("e2e: %s: device folder %s (kept)\n", s.name, dir)
	}
	d, err := NewDevice(s.ctx(), dir, images, fw)
	if err != nil {
		s.Fatalf("making the device: %v", err)
	}
	if *flagConsole {
		d.Console = os.Stdout
	}
	s.Logf("device %s in %s; console: %s", fw, dir, d.ConsoleLog)
	// A failed scenario's log carries the end of each device's console
	// (the folder is removed unless -e2e.keep): what CI shows is enough to
	// see what the device did. Cleanups run last first: the machine is
	// stopped by then.
	s.Cleanup(func() {
		if s.Failed() {
			s.Logf("the end of %s:\n%s", d.ConsoleLog, tailFile(d.ConsoleLog, 100))
		}
	})
	return d
}

// start powers the device on; the machine is stopped when the test ends.
func (s *scenario) start(d *Device) *Machine {
	s.Helper()
	m, err := d.Start(s.ctx())
	if err != nil {
		s.Fatalf("starting the device: %v", err)
	}
	s.Cleanup(m.Stop)
	return m
}

// waitBoot waits for the next boot, bounded by -e2e.boot-timeout.
func (s *scenario) waitBoot(m *Machine) Boot {
	s.Helper()
	ctx, cancel := context.WithTimeout(s.ctx(), *flagBootTimeout)
	defer cancel()
	b, err := m.WaitBoot(ctx)
	if err != nil {
		s.Fatalf("%v", err)
	}
	s.Logf("booted %s slot %s (tries %v) in %s", b.Release, b.Slot, b.Tries, b.Timings())
	return b
}

func (s *scenario) reboot(m *Machine) Boot {
	s.Helper()
	if err := m.Send("@e2e reboot"); err != nil {
		s.Fatalf("%v", err)
	}
	return s.waitBoot(m)
}

func (s *scenario) powerOff(m *Machine) {
	s.Helper()
	ctx, cancel := context.WithTimeout(s.ctx(), time.Minute)
	defer cancel()
	if err := m.PowerOff(ctx); err != nil {
		s.Fatalf("%v", err)
	}
}

// expectBoot checks which slot and release a boot came up with.
func (s *scenario) expectBoot(b Boot, loader, slot, release string) {
	s.Helper()
	if b.Loader != loader || b.Slot != slot || b.Release != release || b.Tries[len(b.Tries)-1] != slot {
		s.Fatalf("booted %s slot %s (kernel command line) via %s, which chose %v; want %s slot %s via %s%s",
			b.Release, b.Slot, loader, b.Tries, release, slot, loader, b.agentSummary())
	}
	if b.Problems != "" {
		s.Fatalf("the device booted with problems: %s", b.Problems)
	}
}

func (s *scenario) grubenv(d *Device) map[string]string {
	s.Helper()
	env, err := d.Grubenv(s.ctx())
	if err != nil {
		s.Fatalf("reading the grubenv: %v", err)
	}
	return env
}

func (s *scenario) setGrubenv(d *Device, vars ...string) {
	s.Helper()
	if err := d.SetGrubenv(s.ctx(), vars...); err != nil {
		s.Fatalf("setting the grubenv: %v", err)
	}
}

// expectVars checks variables of an environment, name=value each.
func (s *scenario) expectVars(what string, env map[string]string, want ...string) {
	s.Helper()
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		if env[k] != v {
			s.Fatalf("%s: %s=%q, want %q (all: %v)", what, k, env[k], v, env)
		}
	}
}

func (s *scenario) writeSlot(d *Device, part, release string) {
	s.Helper()
	if err := d.WritePartition(part, images.Rootfs(release)); err != nil {
		s.Fatalf("%v", err)
	}
}

// trialB is what the agent's Activate writes for slot B (RAUC's GRUB
// scheme): B first, marked good, with its one try unspent.
var trialB = []string{"ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0"}

// TestGRUBBoot: the device as flashed boots release 1.0.0 from slot A
// through OVMF and GRUB, with its TPM and the USB stick, the ESP and the
// data partition writable, and GRUB spends slot A's try in the grubenv.
func TestGRUBBoot(t *testing.T) {
	s := begin(t, "grub-boot")
	d := s.newDevice(GRUB)
	layout := s.TempDir()
	const ociLayout = `{"imageLayoutVersion": "1.0.0"}`
	if err := os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(ociLayout), 0o644); err != nil {
		s.Fatalf("%v", err)
	}
	if err := d.SetStick(s.ctx(), layout); err != nil {
		s.Fatalf("%v", err)
	}
	m := s.start(d)
	b := s.waitBoot(m)
	s.expectBoot(b, "grub", "A", "1.0.0")
	if b.Root != "/dev/vda2" || !b.TPM || !b.Stick {
		s.Fatalf("root %s, TPM %v, stick %v; want /dev/vda2 (rootfs-a), a TPM and the stick", b.Root, b.TPM, b.Stick)
	}
	checks := []struct{ cmd, want string }{
		{"cat /mnt/stick/oci-layout", ociLayout},
		{"cat /sys/class/tpm/tpm0/tpm_version_major", "2"},
		{"readlink /dev/disk/by-partlabel/rootfs-b", "/dev/vda3"},
		{"grep -c ' /boot/efi vfat rw' /proc/mounts", "1"},
		// What the agent will write: the grubenv's folder on the ESP, and /data.
		{"echo x >/boot/efi/EFI/BOOT/probe && cat /boot/efi/EFI/BOOT/probe && rm /boot/efi/EFI/BOOT/probe", "x"},
		{"echo y >/data/probe && sync && cat /data/probe && rm /data/probe", "y"},
	}
	for _, c := range checks {
		out, rc, err := m.Run(s.ctx(), c.cmd)
		if err != nil || rc != 0 || out != c.want {
			s.Fatalf("%s: %q, exit %d, %v; want %q", c.cmd, out, rc, err, c.want)
		}
	}
	s.powerOff(m)
	s.expectVars("grubenv after the boot", s.grubenv(d), "ORDER=A B", "A_OK=1", "A_TRY=1", "B_OK=0", "B_TRY=0")
	s.note("boot %s", b.Timings())
}

// TestGRUBFallback: slot B activated for a trial boots once; when nothing
// marks it good, the next boot falls back to slot A.
func TestGRUBFallback(t *testing.T) {
	s := begin(t, "grub-fallback")
	d := s.newDevice(GRUB)
	s.writeSlot(d, "rootfs-b", "2.0.0")
	s.setGrubenv(d, trialB...)
	m := s.start(d)
	b1 := s.waitBoot(m)
	s.expectBoot(b1, "grub", "B", "2.0.0")
	s.expectVars("GRUB's variables on the trial boot", b1.LoaderVars, "b_try=1", "order=B A")
	b2 := s.reboot(m)
	s.expectBoot(b2, "grub", "A", "1.0.0")
	s.powerOff(m)
	s.expectVars("grubenv after the fallback", s.grubenv(d), "ORDER=B A", "B_OK=1", "B_TRY=1", "A_TRY=1")
	s.note("trial boot %s; fallback boot %s", b1.Timings(), b2.Timings())
}

// TestGRUBCommit: slot B marked good after its trial boot (what the agent's
// commit writes) stays the slot GRUB boots.
func TestGRUBCommit(t *testing.T) {
	s := begin(t, "grub-commit")
	d := s.newDevice(GRUB)
	s.writeSlot(d, "rootfs-b", "2.0.0")
	s.setGrubenv(d, trialB...)
	m := s.start(d)
	s.expectBoot(s.waitBoot(m), "grub", "B", "2.0.0")
	s.powerOff(m)
	// The booted system marks B good: one more try, as RAUC's mark-good does
	// (here from outside; TestAgentUpdateDelta has upkit-agent do it in the
	// guest, with the commit).
	s.setGrubenv(d, "B_OK=1", "B_TRY=0")
	m = s.start(d)
	b := s.waitBoot(m)
	s.expectBoot(b, "grub", "B", "2.0.0")
	s.note("boot %s", b.Timings())
}

// TestGRUBNoInitFallback: a release whose init never comes up (the kernel
// panics, panic=5 resets the machine) spends its try, and GRUB falls back
// to slot A without any help from the guest.
func TestGRUBNoInitFallback(t *testing.T) {
	s := begin(t, "grub-noinit-fallback")
	d := s.newDevice(GRUB)
	s.writeSlot(d, "rootfs-b", "3.0.0-noinit")
	s.setGrubenv(d, trialB...)
	m := s.start(d)
	b := s.waitBoot(m)
	s.expectBoot(b, "grub", "A", "1.0.0")
	if strings.Join(b.Tries, " ") != "B A" {
		s.Fatalf("GRUB chose %v; want B (the trial, whose init never came up), then A", b.Tries)
	}
	s.note("trial, panic, reset and fallback %s", b.Timings())
}

// TestGRUBPowerCuts: power cuts at random moments of a trial boot of slot B.
// After each, the grubenv is whole and in one of the two states a cut can
// leave (B's try unspent or spent), and the device boots the slot that
// state promises: B while its try is unspent, else A.
func TestGRUBPowerCuts(t *testing.T) {
	s := begin(t, "grub-power-cuts")
	n := *flagCuts
	rng := rand.New(rand.NewPCG(seed, 15))
	d := s.newDevice(GRUB)
	s.writeSlot(d, "rootfs-b", "2.0.0")

	// One boot without a cut measures how long a boot lasts here: cuts fall
	// anywhere in it, firmware to init.
	s.setGrubenv(d, trialB...)
	m := s.start(d)
	calib := s.waitBoot(m)
	s.expectBoot(calib, "grub", "B", "2.0.0")
	m.Cut()
	span := calib.ReadyAt
	s.Logf("a boot takes %s: cuts at 0..%d ms, seed %d", calib.Timings(), span.Milliseconds(), seed)

	release := map[string]string{"A": "1.0.0", "B": "2.0.0"}
	phases := map[string]int{}
	bad := 0
	for k := 1; k <= n; k++ {
		at := time.Duration(rng.Int64N(int64(span)))
		s.setGrubenv(d, trialB...)
		m := s.start(d)
		time.Sleep(at - m.Elapsed())
		phase := m.Phase()
		m.Cut()
		phases[phase]++

		env, err := d.Grubenv(s.ctx())
		want := ""
		switch {
		case err != nil:
			s.Errorf("cut %d: the grubenv does not read: %v", k, err)
		case env["ORDER"] != "B A" || env["A_OK"] != "1" || env["B_OK"] != "1" || env["A_TRY"] != "0":
			s.Errorf("cut %d: the grubenv is in no state a cut can leave: %v", k, env)
		case env["B_TRY"] == "0":
			want = "B"
		case env["B_TRY"] == "1":
			want = "A"
		default:
			s.Errorf("cut %d: B_TRY=%q", k, env["B_TRY"])
		}

		m = s.start(d)
		ctx, cancel := context.WithTimeout(s.ctx(), *flagBootTimeout)
		b, err := m.WaitBoot(ctx)
		cancel()
		outcome := "COMPLETED"
		switch {
		case err != nil:
			s.Errorf("cut %d at +%d ms during %s: the device did not boot: %v", k, at.Milliseconds(), phase, err)
			outcome = "FAIL"
		case want == "" || b.Slot != want || b.Release != release[b.Slot] || b.Problems != "":
			s.Errorf("cut %d at +%d ms during %s: booted %s slot %s (problems %q); want slot %q",
				k, at.Milliseconds(), phase, b.Release, b.Slot, b.Problems, want)
			outcome = "FAIL"
		}
		if outcome == "FAIL" {
			bad++
		}
		fmt.Printf("e2e: cut %d/%d at +%d ms during %s: booted %s slot %s, then %s\n",
			k, n, at.Milliseconds(), phase, orDash(b.Release), orDash(b.Slot), outcome)
		m.Cut()
	}
	var seen []string
	for _, p := range []string{"firmware", "grub", "kernel", "init", "running"} {
		if phases[p] > 0 {
			seen = append(seen, fmt.Sprintf("%s %d", p, phases[p]))
		}
	}
	s.note("%d cuts, %d failed, seed %d; during %s; boot %s", n, bad, seed, strings.Join(seen, ", "), calib.Timings())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ubootEnv reads U-Boot's variables' file with fw_printenv.
func (s *scenario) ubootEnv(d *Device) map[string]string {
	s.Helper()
	env, err := d.UBootEnv(s.ctx())
	if err != nil {
		s.Fatalf("reading U-Boot's variables: %v", err)
	}
	return env
}

func (s *scenario) setUBootEnv(d *Device, vars map[string]string) {
	s.Helper()
	if err := d.SetUBootEnv(s.ctx(), vars); err != nil {
		s.Fatalf("writing U-Boot's variables: %v", err)
	}
}

// TestUBootSlots: U-Boot boots the slot its variables' file puts first:
// slot A as flashed, slot B once BOOT_ORDER="B A".
func TestUBootSlots(t *testing.T) {
	s := begin(t, "uboot-slots")
	d := s.newDevice(UBoot)
	s.writeSlot(d, "rootfs-b", "2.0.0")
	m := s.start(d)
	b1 := s.waitBoot(m)
	s.expectBoot(b1, "uboot", "A", "1.0.0")
	if !b1.TPM {
		s.Fatalf("no TPM in the guest")
	}
	s.powerOff(m)
	s.setUBootEnv(d, map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"})
	m = s.start(d)
	b2 := s.waitBoot(m)
	s.expectBoot(b2, "uboot", "B", "2.0.0")
	s.powerOff(m)
	s.expectVars("U-Boot's variables after booting B", s.ubootEnv(d), "BOOT_ORDER=B A")
	s.note("boot A %s; boot B %s", b1.Timings(), b2.Timings())
}

// TestUBootFallback: slot B with one attempt left boots once, U-Boot counts
// the attempt down in its variables' file, and the next boot falls back to
// slot A.
func TestUBootFallback(t *testing.T) {
	s := begin(t, "uboot-fallback")
	d := s.newDevice(UBoot)
	s.writeSlot(d, "rootfs-b", "2.0.0")
	s.setUBootEnv(d, map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1"})
	m := s.start(d)
	b1 := s.waitBoot(m)
	s.expectBoot(b1, "uboot", "B", "2.0.0")
	s.powerOff(m)
	env := s.ubootEnv(d)
	if env["BOOT_B_LEFT"] != "0" {
		why := ""
		for _, l := range m.Lines() {
			if strings.Contains(l.Text, "Unknown command") {
				why = "; U-Boot said: " + l.Text
				break
			}
		}
		s.Fatalf("U-Boot did not count B's attempt down: BOOT_B_LEFT=%q after the boot%s", env["BOOT_B_LEFT"], why)
	}
	m = s.start(d)
	b2 := s.waitBoot(m)
	s.expectBoot(b2, "uboot", "A", "1.0.0")
	s.note("trial boot %s; fallback boot %s", b1.Timings(), b2.Timings())
}

// The agent's scenarios (update by delta, failed update, rollback refused,
// power cuts during an update, and U-Boot) are in agent_test.go.
