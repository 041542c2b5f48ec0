package device

import (
	"context"
	"fmt"
	"time"
)

// load loads the state and repairs what a crash may have interrupted: the
// bootloader's slot choice (Slots.Active) is set again to the committed
// slot of every component whose Activate call did not complete.
func (d *Device) load(ctx context.Context) (*State, error) {
	st, err := d.cfg.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range sortedKeys(st.Installed) {
		want := st.Installed[c].Slot
		got, err := d.cfg.Slots.Active(ctx, c)
		if err != nil {
			return nil, err
		}
		if got != want {
			if err := d.cfg.Slots.Activate(ctx, c, want); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// Recover finishes what a crash interrupted: it points the bootloader at the
// committed slots again where a Commit or Rollback was cut short, and hands
// each Secondary its committed MCUboot image if it does not hold it (a
// crash or a failed link after Commit: ErrSecondary when that fails again).
// Install, Commit and Rollback repair the slots themselves; firmware may
// call Recover early at boot, and again while a hand-over keeps failing.
func (d *Device) Recover(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lockStore(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := d.load(ctx)
	if err != nil {
		return err
	}
	return d.syncSecondaries(ctx, st)
}

// Commit makes the pending update the committed one, once the firmware has
// booted it and confirmed it healthy. It reads every pending slot back
// (ErrDigest if it no longer holds the signed image: call Rollback), then
// saves, in one atomic state write: the new images as installed, each
// component's security counter raised to the image's security version, the
// release version and newest creation time raised to the release's (none
// of them ever lowered), and no pending update. Then it activates the new
// slots. ErrNoPending if nothing is pending. A crash before the state write
// leaves the update pending (Commit again); after it, the next operation
// (or Recover) completes the activation.
func (d *Device) Commit(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lockStore(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := d.load(ctx)
	if err != nil {
		return err
	}
	p := st.Pending
	if p == nil {
		return ErrNoPending
	}
	buf := make([]byte, d.cfg.Limits.BufferSize)
	comps := sortedKeys(p.Images)
	for _, c := range comps {
		im := p.Images[c]
		if err := d.verifySlot(ctx, c, im.Slot, im.PayloadDigest, im.PayloadSize, buf); err != nil {
			return fmt.Errorf("device: refusing to commit: %w", err)
		}
	}
	recordCommitted(st, p.Images, p.ReleaseVersion, p.Created, p.Product)
	st.Pending = nil
	if err := d.cfg.Store.Save(ctx, st); err != nil {
		return err
	}
	for _, c := range comps {
		if err := d.cfg.Slots.Activate(ctx, c, st.Installed[c].Slot); err != nil {
			return fmt.Errorf("device: committed, but activating %s (repaired on the next operation): %w", c, err)
		}
	}
	if err := d.syncSecondaries(ctx, st); err != nil {
		return fmt.Errorf("device: committed, but (retried by Recover): %w", err)
	}
	return nil
}

// Rollback abandons the pending update (the new image did not boot or was
// not healthy): the state forgets it and the bootloader is pointed at the
// committed slots again. Counters and versions are untouched; the trust
// root and the newest creation time seen are kept. ErrNoPending if nothing
// is pending.
func (d *Device) Rollback(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lockStore(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := d.load(ctx)
	if err != nil {
		return err
	}
	p := st.Pending
	if p == nil {
		return ErrNoPending
	}
	st.Pending = nil
	if err := d.cfg.Store.Save(ctx, st); err != nil {
		return err
	}
	for _, c := range sortedKeys(p.Images) {
		if im, ok := st.Installed[c]; ok {
			if err := d.cfg.Slots.Activate(ctx, c, im.Slot); err != nil {
				return err
			}
		}
	}
	return d.cleanStaging(nil)
}

// RecordBoot counts one boot attempt of the pending update and returns the
// attempts so far. Past Limits.MaxBootAttempts it returns ErrBootLimit: the
// firmware should call Rollback. ErrNoPending if nothing is pending.
func (d *Device) RecordBoot(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lockStore(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	st, err := d.cfg.Store.Load(ctx)
	if err != nil {
		return 0, err
	}
	if st.Pending == nil {
		return 0, ErrNoPending
	}
	st.Pending.BootAttempts++
	n := st.Pending.BootAttempts
	if err := d.cfg.Store.Save(ctx, st); err != nil {
		return n, err
	}
	if n > d.cfg.Limits.MaxBootAttempts {
		return n, fmt.Errorf("%w: %d attempts, limit %d", ErrBootLimit, n, d.cfg.Limits.MaxBootAttempts)
	}
	return n, nil
}

// Status describes the device.
type Status struct {
	Hardware       string            `json:"hardware"`
	Product        string            `json:"product"`
	RootVersion    uint64            `json:"rootVersion"`
	ReleaseVersion uint64            `json:"releaseVersion"`
	NewestCreated  time.Time         `json:"newestCreated"`
	Components     []ComponentStatus `json:"components"`
	Pending        *PendingStatus    `json:"pending,omitempty"`
}

// ComponentStatus is one committed component.
type ComponentStatus struct {
	Component       string `json:"component"`
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"securityVersion"`
	// Counter is the stored anti-rollback counter (at least
	// SecurityVersion).
	Counter       uint64 `json:"counter"`
	PayloadDigest string `json:"payloadDigest"`
	PayloadSize   int64  `json:"payloadSize"`
	Slot          string `json:"slot"`
	// BootSlot is what Slots.Active reports ("" if never activated).
	BootSlot string `json:"bootSlot"`
}

// PendingStatus is the update awaiting Commit.
type PendingStatus struct {
	ReleaseVersion uint64                    `json:"releaseVersion"`
	Created        time.Time                 `json:"created"`
	BootAttempts   int                       `json:"bootAttempts"`
	Images         map[string]InstalledImage `json:"images"`
}

// Status reads the state (it writes nothing).
func (d *Device) Status(ctx context.Context) (*Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.cfg.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	s := &Status{
		Hardware:       d.cfg.Hardware,
		Product:        st.Product,
		RootVersion:    st.RootVersion,
		ReleaseVersion: st.ReleaseVersion,
		NewestCreated:  st.NewestCreated,
		Components:     []ComponentStatus{},
	}
	if s.Product == "" {
		s.Product = d.cfg.Product
	}
	for _, c := range sortedKeys(st.Installed) {
		im := st.Installed[c]
		boot, err := d.cfg.Slots.Active(ctx, c)
		if err != nil {
			return nil, err
		}
		s.Components = append(s.Components, ComponentStatus{
			Component: c, Version: im.Version, SecurityVersion: im.SecurityVersion,
			Counter: st.SecurityCounters[c], PayloadDigest: im.PayloadDigest, PayloadSize: im.PayloadSize,
			Slot: im.Slot, BootSlot: boot,
		})
	}
	if p := st.Pending; p != nil {
		s.Pending = &PendingStatus{ReleaseVersion: p.ReleaseVersion, Created: p.Created, BootAttempts: p.BootAttempts, Images: p.Images}
	}
	return s, nil
}

// recordCommitted writes images into st as the committed ones of release
// version of product, created then: the counters only ever go up, and so
// do the release version and the newest creation time. Commit and Adopt
// share it.
func recordCommitted(st *State, images map[string]InstalledImage, version uint64, created time.Time, product string) {
	for c, im := range images {
		st.Installed[c] = im
		if im.SecurityVersion > st.SecurityCounters[c] {
			st.SecurityCounters[c] = im.SecurityVersion
		}
	}
	if version > st.ReleaseVersion {
		st.ReleaseVersion = version
	}
	if created.After(st.NewestCreated) {
		st.NewestCreated = created
	}
	st.Product = product
}
