package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

var errCut = errors.New("test: power cut")

// TestPowerLossBetweenSteps cuts the power after each step of an update,
// install (check, install, activate) and trial boot (record, markgood),
// for GRUB and U-Boot, with the counters in a TPM. After each cut the
// bootloader boots the committed slot, or the update's slot once it was
// activated; the agent's next runs (boot, then install again when the
// update was rolled back or never activated) complete the update; the TPM
// counter is never behind the committed release nor ahead of release 2,
// the newest ever installed.
func TestPowerLossBetweenSteps(t *testing.T) {
	steps := []string{"check", "install", "activate", "record", "markgood"}
	for _, kind := range []string{"grub", "u-boot"} {
		for _, cut := range steps {
			t.Run(kind+"/"+cut, func(t *testing.T) {
				r := newRig(t, kind, withTPM())
				ctx := context.Background()
				r.mustBoot("normal", nil)
				stick := r.stick(r.rel2)
				counter := func(when string) {
					t.Helper()
					st := r.status()
					hw, committed := st.HardwareCounters["rootfs"], st.Device.Components[0].SecurityVersion
					if hw < committed || hw > 2 {
						t.Fatalf("%s: TPM counter %d, committed security version %d (the newest installed is 2)", when, hw, committed)
					}
				}
				cutAt := func(a *Agent) *Agent {
					a.afterStep = func(step string) error {
						if step == cut {
							return errCut
						}
						return nil
					}
					return a
				}
				// The update, cut at the step.
				_, err := cutAt(r.agent()).Install(ctx, stick, true)
				if errors.Is(err, errCut) {
					r.t.Logf("cut during the install, after %s", cut)
				} else if err != nil {
					t.Fatal(err)
				} else {
					r.boot()
					if _, err := cutAt(r.agent()).Boot(ctx, true); !errors.Is(err, errCut) {
						t.Fatalf("the trial boot was not cut after %s: %v\n%s", cut, err, r.log())
					}
				}
				counter("after the cut")
				// Power on again, until release 2 is committed.
				for round := 0; ; round++ {
					if round == 4 {
						t.Fatalf("release 2 not committed after %d boots:\n%s", round, r.log())
					}
					st := r.status().Device
					committed, pending := bootname(st.Components[0].Slot), ""
					if st.Pending != nil {
						pending = bootname(st.Pending.Images["rootfs"].Slot)
					}
					booted := r.boot()
					if booted != committed && booted != pending {
						t.Fatalf("round %d: booted slot %s; committed %s, pending %q", round, booted, committed, pending)
					}
					res, err := r.agent().Boot(ctx, true)
					if err != nil && !errors.Is(err, ErrRolledBack) {
						t.Fatalf("round %d: boot: %v\n%s", round, err, r.log())
					}
					counter(fmt.Sprintf("round %d, after boot (%s)", round, res.Outcome))
					if v, slot, _ := r.committed(); v == 2 && slot == "B" {
						break
					}
					if r.status().Device.Pending == nil {
						if _, err := r.agent().Install(ctx, stick, true); err != nil {
							t.Fatalf("round %d: install again: %v\n%s", round, err, r.log())
						}
					}
				}
				if _, _, ctr := r.committed(); ctr != 2 || r.status().HardwareCounters["rootfs"] != 2 {
					t.Fatalf("counter %d after the update, TPM %d", ctr, r.status().HardwareCounters["rootfs"])
				}
				r.boot()
				r.mustBoot("normal", nil)
			})
		}
	}
}
