package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/testutil/registrytest"
)

// mustBoot runs `upkit-agent boot` on the rig and checks its outcome.
func (r *rig) mustBoot(wantOutcome string, wantErr error) *BootResult {
	r.t.Helper()
	res, err := r.agent().Boot(context.Background(), true)
	if wantErr == nil && err != nil || wantErr != nil && !errors.Is(err, wantErr) {
		r.t.Fatalf("boot: %v, want %v\nlog:\n%s", err, wantErr, r.log())
	}
	if res.Outcome != wantOutcome {
		r.t.Fatalf("boot outcome %s, want %s\nlog:\n%s", res.Outcome, wantOutcome, r.log())
	}
	return res
}

func (r *rig) status() *Status {
	r.t.Helper()
	st, err := r.agent().Status(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// committed returns the committed release version and rootfs slot.
func (r *rig) committed() (uint64, string, uint64) {
	r.t.Helper()
	st := r.status()
	if st.Device == nil || len(st.Device.Components) != 1 {
		r.t.Fatalf("status: %+v", st.Device)
	}
	c := st.Device.Components[0]
	return st.Device.ReleaseVersion, bootname(c.Slot), c.Counter
}

func (r *rig) expectVars(want ...string) {
	r.t.Helper()
	v := r.vars()
	for _, kv := range want {
		k, val, _ := strings.Cut(kv, "=")
		if v[k] != val {
			r.t.Fatalf("bootloader variable %s=%q, want %q (all: %v)", k, v[k], val, v)
		}
	}
}

// TestUpdateFromStick, for GRUB and U-Boot: on its first boot the agent
// provisions the device and adopts the factory release in slot A; `install`
// from a USB stick's OCI layout writes release 2 into slot B by delta,
// makes the bootloader try B and reboots; the bootloader boots B; `boot`
// finds the trial healthy, marks B good and commits: counters advance, B
// is the committed slot and stays the bootloader's choice.
func TestUpdateFromStick(t *testing.T) {
	for _, kind := range []string{"grub", "u-boot"} {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t, kind)
			ctx := context.Background()
			r.mustBoot("normal", nil)
			if v, slot, ctr := r.committed(); v != 1 || slot != "A" || ctr != 1 {
				t.Fatalf("after the first boot: release %d in slot %s, counter %d; want the factory release 1 in A", v, slot, ctr)
			}
			stick := r.stick(r.rel1, r.rel2)
			res, err := r.agent().Install(ctx, stick, true)
			if err != nil {
				t.Fatalf("install: %v\n%s", err, r.log())
			}
			if !res.Rebooting || res.Tried != device.SlotB || len(res.Images) != 1 || res.Images[0].Method != device.MethodDelta || res.Images[0].Fetched >= res.Images[0].PackageSize {
				t.Fatalf("install: %+v", res)
			}
			if r.rebootCount() != 1 || !r.slotHolds("B", payloadV2) {
				t.Fatalf("reboots %d, slot B holds v2: %v", r.rebootCount(), r.slotHolds("B", payloadV2))
			}
			if v, slot, _ := r.committed(); v != 1 || slot != "A" {
				t.Fatalf("committed before the trial boot: %d in %s", v, slot)
			}
			if got := r.boot(); got != "B" {
				t.Fatalf("the bootloader booted %s after the install, want B (vars %v)", got, r.vars())
			}
			b := r.mustBoot("trial-booted", nil)
			if !b.Committed {
				t.Fatalf("boot: %+v", b)
			}
			if v, slot, ctr := r.committed(); v != 2 || slot != "B" || ctr != 2 {
				t.Fatalf("after the commit: release %d in slot %s, counter %d", v, slot, ctr)
			}
			for i := 0; i < 3; i++ {
				if got := r.boot(); got != "B" {
					t.Fatalf("boot %d after the commit: %s", i, got)
				}
				r.mustBoot("normal", nil)
			}
			if kind == "grub" {
				r.expectVars("ORDER=B A", "B_OK=1", "B_TRY=0", "upkit_active=rootfs=B")
			} else {
				r.expectVars("BOOT_ORDER=B A", "BOOT_B_LEFT=3", "upkit_active=rootfs=B")
			}
			for _, want := range []string{"adopt: the factory release", "check: release acme-gw version 2 verified", "by delta",
				"activate: slot B boots next", "reboot: /bin/sh", "health: passed", "commit: release acme-gw version 2 committed"} {
				if !strings.Contains(r.log(), want) {
					t.Errorf("the log lacks %q:\n%s", want, r.log())
				}
			}
			// The stick again: nothing to do.
			if _, err := r.agent().Install(ctx, stick, true); !errors.Is(err, device.ErrNothingToDo) {
				t.Fatalf("install of the committed release: %v", err)
			}
		})
	}
}

// TestFailedUpdateFallsBack, for GRUB and U-Boot: release 3's health check
// fails on its trial boot; the agent reboots without marking it good, as
// often as the bootloader gives it attempts (GRUB one, U-Boot three); the
// bootloader falls back to slot A; `boot` sees the fallback, rolls back and
// marks B bad: release 2 stays committed with its counter. The variant
// whose kernel never reaches the agent (the bootloader spends the
// attempts alone) ends the same.
func TestFailedUpdateFallsBack(t *testing.T) {
	for _, kind := range []string{"grub", "u-boot"} {
		for _, noinit := range []bool{false, true} {
			name := kind
			if noinit {
				name += "/noinit"
			}
			t.Run(name, func(t *testing.T) {
				r := newRig(t, kind)
				ctx := context.Background()
				r.mustBoot("normal", nil)
				if _, err := r.agent().Install(ctx, r.stick(r.rel2), true); err != nil {
					t.Fatal(err)
				}
				r.boot()
				r.mustBoot("trial-booted", nil)
				r.boot()
				r.mustBoot("normal", nil) // release 2 committed in B
				if _, err := r.agent().Install(ctx, r.stick(r.rel3), true); err != nil {
					t.Fatal(err)
				}
				if !r.slotHolds("A", payloadV3) {
					t.Fatal("release 3 is not in slot A")
				}
				r.setHealthy(false)
				tries := map[string]int{"grub": 1, "u-boot": 3}[kind]
				reboots := r.rebootCount()
				for i := 0; i < tries; i++ {
					if got := r.boot(); got != "A" {
						t.Fatalf("try %d booted %s, want A (release 3)", i+1, got)
					}
					if noinit {
						continue // the kernel panics: the agent never runs
					}
					res := r.mustBoot("trial-booted", ErrUnhealthy)
					if !res.Rebooting || res.Committed || r.rebootCount() != reboots+i+1 {
						t.Fatalf("unhealthy trial %d: %+v, %d reboots", i+1, res, r.rebootCount())
					}
				}
				if got := r.boot(); got != "B" {
					t.Fatalf("after %d failed tries the bootloader booted %s, want B (vars %v)", tries, got, r.vars())
				}
				res := r.mustBoot("fell-back", ErrRolledBack)
				if !res.RolledBack {
					t.Fatalf("boot: %+v", res)
				}
				if v, slot, ctr := r.committed(); v != 2 || slot != "B" || ctr != 2 {
					t.Fatalf("after the fallback: release %d in slot %s, counter %d; want 2 in B, counter 2", v, slot, ctr)
				}
				if st := r.status(); st.Device.Pending != nil {
					t.Fatalf("still pending: %+v", st.Device.Pending)
				}
				if kind == "grub" {
					r.expectVars("ORDER=B A", "A_OK=0", "B_OK=1", "B_TRY=0")
				} else {
					r.expectVars("BOOT_ORDER=B", "BOOT_A_LEFT=0", "BOOT_B_LEFT=3")
				}
				r.setHealthy(true)
				for i := 0; i < 2; i++ {
					if got := r.boot(); got != "B" {
						t.Fatalf("boot %d after the rollback: %s", i, got)
					}
					r.mustBoot("normal", nil)
				}
			})
		}
	}
}

// TestRollbackRefused: a validly signed older release on the stick is
// refused (ErrRefused wrapping device.ErrRollback); nothing is written,
// the bootloader is untouched, nothing reboots.
func TestRollbackRefused(t *testing.T) {
	r := newRig(t, "grub")
	ctx := context.Background()
	r.mustBoot("normal", nil)
	if _, err := r.agent().Install(ctx, r.stick(r.rel2), true); err != nil {
		t.Fatal(err)
	}
	r.boot()
	r.mustBoot("trial-booted", nil)
	before := r.vars()
	reboots := r.rebootCount()
	_, err := r.agent().Install(ctx, r.stick(r.rel1), true)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, device.ErrRollback) {
		t.Fatalf("install of release 1 after 2: %v", err)
	}
	if r.rebootCount() != reboots || !r.slotHolds("A", payloadV1) {
		t.Fatal("a refused release rebooted the device or wrote a slot")
	}
	after := r.vars()
	for _, k := range []string{"ORDER", "A_OK", "A_TRY", "B_OK", "B_TRY", "upkit_active"} {
		if before[k] != after[k] {
			t.Fatalf("%s changed from %q to %q", k, before[k], after[k])
		}
	}
	if v, slot, _ := r.committed(); v != 2 || slot != "B" {
		t.Fatalf("committed %d in %s", v, slot)
	}
	if !strings.Contains(r.log(), "check: release refused") {
		t.Fatalf("log:\n%s", r.log())
	}
}

// TestRunLoop: `run` against a real registry (CNCF distribution) follows a
// tag: nothing there yet is retried with growing back-off; release 2
// published under the tag is installed and the reboot command runs, which
// ends the loop; after the commit, a second `run` finds nothing to do and
// waits a poll interval until it is stopped (SIGTERM: its context ends),
// returning nil.
func TestRunLoop(t *testing.T) {
	addr := registrytest.Start(t, registrytest.Distribution)
	r := newRig(t, "grub")
	r.cfg.Source = Source{Registry: addr + "/acme/gateway", Tag: "stable"}
	r.mustBoot("normal", nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.agent().Run(ctx) }()
	// The tag does not exist yet: the loop waits and checks again.
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(r.log(), "wait: next check") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not check three times:\n%s", r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.srv.Publish(addr+"/acme/gateway:stable", r.rel2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, r.log())
		}
	case <-ctx.Done():
		t.Fatalf("run did not install release 2:\n%s", r.log())
	}
	if r.rebootCount() != 1 {
		t.Fatalf("%d reboots", r.rebootCount())
	}
	r.expectVars("ORDER=B A", "B_OK=1", "B_TRY=0")
	r.boot()
	r.mustBoot("trial-booted", nil)

	// Nothing new: the loop polls until it is stopped.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- r.agent().Run(ctx2) }()
	for strings.Count(r.log(), "is the committed one") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not poll twice:\n%s", r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel2()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop when its context ended")
	}
	if r.rebootCount() != 1 {
		t.Fatalf("%d reboots", r.rebootCount())
	}
}

// TestRunBacksOff: while the registry cannot be reached, the loop waits
// retryMin, then twice as long each time up to retryMax.
func TestRunBacksOff(t *testing.T) {
	r := newRig(t, "grub")
	r.cfg.Source = Source{Registry: "127.0.0.1:1/acme/gateway", Tag: "stable"}
	r.mustBoot("normal", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.agent().Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(r.log(), "wait: next check") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not retry:\n%s", r.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var waits []string
	for _, l := range strings.Split(r.log(), "\n") {
		if w, ok := strings.CutPrefix(l, "upkit-agent: wait: next check in "); ok {
			waits = append(waits, w)
		}
	}
	if strings.Join(waits[:4], " ") != "10ms 20ms 40ms 40ms" {
		t.Fatalf("waits %v, want 10ms 20ms 40ms 40ms\n%s", waits, r.log())
	}
	if !strings.Contains(r.log(), "error: ") {
		t.Fatalf("the error was not logged:\n%s", r.log())
	}
}

// TestLock: a second agent fails at once with ErrLocked naming the holder.
func TestLock(t *testing.T) {
	r := newRig(t, "grub")
	unlock, err := r.agent().Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.agent().Lock(); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "process") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := r.agent().Lock()
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

// TestTPMCounterAdvancesAtCommit: with the counters in a TPM (swtpm), the
// factory adoption raises the counter to 1, the install leaves it, the
// commit raises it to 2; the status shows what the TPM holds (and
// tpm2_nvread agrees: raw value = counter + 1).
func TestTPMCounterAdvancesAtCommit(t *testing.T) {
	r := newRig(t, "grub", withTPM())
	ctx := context.Background()
	r.mustBoot("normal", nil)
	hw := func() uint64 {
		t.Helper()
		return r.status().HardwareCounters["rootfs"]
	}
	if c := hw(); c != 1 {
		t.Fatalf("after adopting release 1: TPM counter %d", c)
	}
	if _, err := r.agent().Install(ctx, r.stick(r.rel2), true); err != nil {
		t.Fatal(err)
	}
	if c := hw(); c != 1 {
		t.Fatalf("after installing release 2: TPM counter %d, want 1 until the commit", c)
	}
	r.boot()
	r.mustBoot("trial-booted", nil)
	if c := hw(); c != 2 {
		t.Fatalf("after the commit: TPM counter %d", c)
	}
	out := r.tpm.Tool("tpm2_nvread", "-C", "o", "-s", "8", "0x01800100")
	if len(out) != 8 || out[7] != 3 {
		t.Fatalf("tpm2_nvread: %x, want the raw value 3", out)
	}
	if !strings.Contains(r.log(), "TPM counters: rootfs=2") {
		t.Fatalf("log:\n%s", r.log())
	}
}

// TestRunLoopLayout: `run` with an OCI image layout folder as its source
// (a USB stick's mount point): no stick yet is no source, checked again at
// the next interval; a stick with releases 1 and 2 appears, and the loop
// installs 2 (the newest it accepts), reboots and ends.
func TestRunLoopLayout(t *testing.T) {
	r := newRig(t, "u-boot")
	stick := filepath.Join(t.TempDir(), "usb")
	r.cfg.Source = Source{Layout: stick}
	r.mustBoot("normal", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.agent().Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(r.log(), "(no USB stick?)") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not look for the stick twice:\n%s", r.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.MkdirAll(stick, 0o755) // mounted, still empty
	before := strings.Count(r.log(), "no update source")
	for strings.Count(r.log(), "no update source") < before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("an empty mount point:\n%s", r.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.srv.Publish("oci:"+stick+":r1", r.rel1)
	r.srv.Publish("oci:"+stick+":r2", r.rel2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, r.log())
		}
	case <-ctx.Done():
		t.Fatalf("run did not install from the stick:\n%s", r.log())
	}
	if r.rebootCount() != 1 || !r.slotHolds("B", payloadV2) || strings.Contains(r.log(), "error: ") {
		t.Fatalf("reboots %d, slot B holds v2 %v:\n%s", r.rebootCount(), r.slotHolds("B", payloadV2), r.log())
	}
	r.expectVars("BOOT_ORDER=B A", "BOOT_B_LEFT=3")
}
