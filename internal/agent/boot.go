package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
)

// BootResult says what Boot found and did.
type BootResult struct {
	// Outcome is what the boot means (boot.Classify).
	Outcome string `json:"outcome"`
	// Booted is the slot the kernel was booted from ("" if none).
	Booted string `json:"booted,omitempty"`
	// Committed: the update that booted was healthy and is committed.
	Committed bool `json:"committed,omitempty"`
	// RolledBack: the pending update was abandoned.
	RolledBack bool `json:"rolledBack,omitempty"`
	// Rebooting: the reboot command ran.
	Rebooting bool `json:"rebooting,omitempty"`
}

// Boot is what the agent does once per boot, early: it provisions the
// device on its first boot (and adopts the factory release), completes
// what a power cut interrupted, then compares the slot the bootloader
// booted with the state (boot.Classify):
//
//   - the pending update's slot booted (its first boot, or a later try):
//     the boot is counted (device.RecordBoot; past the limit the update is
//     rolled back), the health check runs, and if it passes the slot is
//     marked good in the bootloader first, then the update committed
//     (counters advance, the slot becomes the committed one). If it fails,
//     the reboot command runs: the bootloader tries the update again while
//     it has attempts, then falls back (ErrUnhealthy);
//   - the committed slot booted while an update is pending (the update
//     used up its attempts): the update is rolled back and its slot marked
//     bad (ErrRolledBack);
//   - nothing pending: the booted slot is marked good (with RAUC's
//     variables every boot spends an attempt). When the booted slot is
//     not the committed one (the committed one failed to boot), the
//     committed slot is made the bootloader's choice again, for the next
//     boot.
//
// Marking the slot good before the commit means that a power cut between
// the two boots the update again (still pending, then committed), never
// the old release with the update's state committed. An update that does
// not touch the bootloader's component (an application partition) is
// committed on the first healthy boot after it was installed. The caller
// holds the lock.
func (a *Agent) Boot(ctx context.Context, reboot bool) (*BootResult, error) {
	booted, err := a.prepare(ctx)
	if err != nil {
		return nil, err
	}
	st, err := a.dev.Status(ctx)
	if err != nil {
		return nil, err
	}
	comp := a.cfg.Bootloader.Component
	committed, pending := "", ""
	for _, c := range st.Components {
		if c.Component == comp {
			committed = c.Slot
		}
	}
	if st.Pending != nil {
		pending = st.Pending.Images[comp].Slot
	}
	outcome := boot.Classify(booted, committed, pending)
	res := &BootResult{Outcome: outcome.String(), Booted: booted}
	a.log.Infof("boot: booted slot %s (%s); committed: %s; pending: %s",
		orNone(bootname(booted)), outcome, orNone(bootname(committed)), pendingSummary(st))
	switch outcome {
	case boot.Elsewhere:
		a.log.Infof("boot: not booted from slot A or B (no %s= on the kernel command line): nothing to do", boot.ParamSlot)
		return res, nil
	case boot.FellBack:
		why := "the bootloader fell back to the committed slot: the update did not come up"
		if err := a.rollback(ctx, res, pending, why); err != nil {
			return res, err
		}
		return res, fmt.Errorf("%w: %s", ErrRolledBack, why)
	case boot.Unexpected:
		a.log.Warnf("boot: slot %s booted, but the committed release is in slot %s (it failed to boot?): the bootloader boots slot %s next",
			bootname(booted), bootname(committed), bootname(committed))
		if err := a.sw.Activate(ctx, comp, committed); err != nil {
			return res, err
		}
		return res, nil
	case boot.Normal:
		if st.Pending == nil {
			if committed != "" {
				if err := a.sw.MarkGood(ctx, booted); err != nil {
					return res, err
				}
			}
			return res, nil
		}
		// Pending, but not for the bootloader's component: judged on this boot.
	}
	return res, a.trial(ctx, res, booted, pending, reboot)
}

// trial handles the boot of a pending update.
func (a *Agent) trial(ctx context.Context, res *BootResult, booted, pending string, reboot bool) error {
	n, err := a.dev.RecordBoot(ctx)
	if errors.Is(err, device.ErrBootLimit) {
		if err := a.rollback(ctx, res, pending, fmt.Sprintf("the update booted %d times without being committed", n)); err != nil {
			return err
		}
		if reboot {
			if err := a.reboot(ctx); err != nil {
				return err
			}
			res.Rebooting = true
		}
		return fmt.Errorf("%w: boot limit", ErrRolledBack)
	}
	if err != nil {
		return err
	}
	if err := a.step("record"); err != nil {
		return err
	}
	if err := a.health(ctx, booted); err != nil {
		a.log.Errorf("health: %v", err)
		if reboot {
			a.log.Infof("health: rebooting: the bootloader tries the update again while it has attempts, then falls back")
			if err := a.reboot(ctx); err != nil {
				return err
			}
			res.Rebooting = true
		}
		return fmt.Errorf("%w: %w", ErrUnhealthy, err)
	}
	if booted != "" {
		if err := a.sw.MarkGood(ctx, booted); err != nil {
			return err
		}
	}
	if err := a.step("markgood"); err != nil {
		return err
	}
	if err := a.dev.Commit(ctx); err != nil {
		a.log.Errorf("commit: %v", err)
		if errors.Is(err, device.ErrDigest) {
			// The slot no longer holds the signed image: never commit it.
			if rerr := a.rollback(ctx, res, pending, "the new slot does not read back as the signed image"); rerr != nil {
				return rerr
			}
			if reboot {
				if err := a.reboot(ctx); err != nil {
					return err
				}
				res.Rebooting = true
			}
			return fmt.Errorf("%w: %w", ErrRolledBack, err)
		}
		return err
	}
	res.Committed = true
	st, err := a.dev.Status(ctx)
	if err != nil {
		return err
	}
	a.log.Infof("commit: release %s version %d committed (%s)%s", st.Product, st.ReleaseVersion, componentList(st), a.counterNote(ctx))
	return nil
}

// rollback abandons the pending update and marks its slot bad.
func (a *Agent) rollback(ctx context.Context, res *BootResult, pending, why string) error {
	if err := a.dev.Rollback(ctx); err != nil {
		return fmt.Errorf("agent: rolling back: %w", err)
	}
	res.RolledBack = true
	if pending != "" {
		if err := a.sw.MarkBad(ctx, pending); err != nil {
			a.log.Warnf("rollback: marking slot %s bad: %v", bootname(pending), err)
		}
	}
	st, err := a.dev.Status(ctx)
	if err != nil {
		return err
	}
	a.log.Warnf("rollback: %s; rolled back: release %s version %d stays committed (%s)", why, st.Product, st.ReleaseVersion, componentList(st))
	return nil
}

// health runs the health check; nil when it passes or none is configured.
func (a *Agent) health(ctx context.Context, booted string) error {
	hc := a.cfg.HealthCheck
	if len(hc.Command) == 0 {
		a.log.Infof("health: no health check configured: the update is healthy once it boots")
		return nil
	}
	a.log.Infof("health: running %s", hc.Command[0])
	if err := a.runCommand(ctx, "health", hc, "UPKIT_SLOT="+bootname(booted)); err != nil {
		return err
	}
	a.log.Infof("health: passed")
	return nil
}

// counterNote reads the TPM counters, for the commit's log line.
func (a *Agent) counterNote(ctx context.Context) string {
	if a.counters == nil {
		return ""
	}
	out := ""
	for _, c := range a.counters.Components() {
		v, err := a.counters.Read(ctx, c)
		if err != nil {
			return fmt.Sprintf("; TPM counters unreadable: %v", err)
		}
		out += fmt.Sprintf(" %s=%d", c, v)
	}
	return "; TPM counters:" + out
}

func bootname(slot string) string {
	if slot == "" {
		return ""
	}
	return boot.Bootname(slot)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func pendingSummary(st *device.Status) string {
	if st.Pending == nil {
		return "none"
	}
	s := fmt.Sprintf("release %d", st.Pending.ReleaseVersion)
	for _, c := range slices.Sorted(maps.Keys(st.Pending.Images)) {
		im := st.Pending.Images[c]
		s += fmt.Sprintf(", %s %s in slot %s", c, im.Version, bootname(im.Slot))
	}
	return s
}
