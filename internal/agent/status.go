package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
)

// Status is what `upkit-agent status` shows.
type Status struct {
	// Provisioned is false before the first run (no state yet).
	Provisioned bool `json:"provisioned"`
	// Device is the device library's status (nil before provisioning).
	Device *device.Status `json:"device,omitempty"`
	// BootComponent is the component the bootloader boots; Booted the
	// slot it booted ("" when not from a slot).
	BootComponent string `json:"bootComponent"`
	Booted        string `json:"booted"`
	// Bootloader is the bootloader environment's view of the slots.
	Bootloader *boot.Status `json:"bootloader"`
	// HardwareCounters are the anti-rollback counters as the TPM holds
	// them (counters of type tpm only).
	HardwareCounters map[string]uint64 `json:"hardwareCounters,omitempty"`
	// Source is what `run` checks.
	Source string `json:"source,omitempty"`
}

// Status reads the state, the bootloader environment and the counters. It
// writes nothing and needs no lock.
func (a *Agent) Status(ctx context.Context) (*Status, error) {
	s := &Status{BootComponent: a.cfg.Bootloader.Component, Source: a.cfg.Source.target()}
	booted, err := a.sw.Booted(a.cfg.Bootloader.Component)
	if err != nil {
		return nil, err
	}
	s.Booted = booted
	if s.Bootloader, err = a.sw.Status(ctx); err != nil {
		return nil, fmt.Errorf("agent: reading the bootloader environment: %w", err)
	}
	st, err := a.dev.Status(ctx)
	switch {
	case errors.Is(err, device.ErrNoState):
	case err != nil:
		return nil, err
	default:
		s.Provisioned, s.Device = true, st
	}
	if a.counters != nil {
		s.HardwareCounters = map[string]uint64{}
		for _, c := range a.counters.Components() {
			v, err := a.counters.Read(ctx, c)
			if err != nil {
				return nil, fmt.Errorf("agent: reading the TPM counter of %s: %w", c, err)
			}
			s.HardwareCounters[c] = v
		}
	}
	return s, nil
}

// Print writes the status for people.
func (s *Status) Print(w io.Writer) {
	if !s.Provisioned {
		fmt.Fprintln(w, "not provisioned yet: the first `upkit-agent boot`, `run` or `install` provisions the trust root")
	} else {
		st := s.Device
		product := st.Product
		if product == "" {
			product = "(none yet)"
		}
		fmt.Fprintf(w, "hardware %s, product %s, trust root version %d, release version %d\n", st.Hardware, product, st.RootVersion, st.ReleaseVersion)
		if !st.NewestCreated.IsZero() {
			fmt.Fprintf(w, "newest release seen: created %s\n", st.NewestCreated.Format(time.RFC3339))
		}
		if len(st.Components) == 0 {
			fmt.Fprintln(w, "nothing installed")
		}
		for _, c := range st.Components {
			fmt.Fprintf(w, "  %s %s: slot %s, security version %d, counter %d, %s\n",
				c.Component, c.Version, bootname(c.Slot), c.SecurityVersion, c.Counter, c.PayloadDigest)
		}
		if p := st.Pending; p != nil {
			fmt.Fprintf(w, "pending: release version %d, booted %d times, awaiting a healthy boot\n", p.ReleaseVersion, p.BootAttempts)
			for _, c := range slices.Sorted(maps.Keys(p.Images)) {
				im := p.Images[c]
				fmt.Fprintf(w, "  %s %s: slot %s, security version %d\n", c, im.Version, bootname(im.Slot), im.SecurityVersion)
			}
		}
	}
	fmt.Fprintf(w, "booted: %s slot %s\n", s.BootComponent, orNone(bootname(s.Booted)))
	if b := s.Bootloader; b != nil {
		fmt.Fprintf(w, "bootloader (%s): order %v, next %s", b.Scheme, bootnames(b.Order), orNone(bootname(b.Primary)))
		for _, sl := range b.Slots {
			fmt.Fprintf(w, ", %s %d %s left", bootname(sl.Slot), sl.TriesLeft, plural(sl.TriesLeft, "try", "tries"))
		}
		fmt.Fprintln(w)
	}
	for _, c := range slices.Sorted(maps.Keys(s.HardwareCounters)) {
		fmt.Fprintf(w, "TPM counter %s: %d\n", c, s.HardwareCounters[c])
	}
	if s.Source != "" {
		fmt.Fprintf(w, "source: %s\n", s.Source)
	}
}

func bootnames(slots []string) []string {
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = bootname(s)
	}
	return out
}
