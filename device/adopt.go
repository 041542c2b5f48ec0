package device

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// Adopt records the release a device was flashed with (at the factory, by
// an installer) as its committed release, so that the first update may come
// as a delta from it and no later release may go below it. A device that
// was only provisioned has nothing installed: without Adopt its first
// update is a full package written to slot B, whatever slot A holds.
//
// releaseEnvelope (with the rotations rootChain, as for Check) is verified
// as Check verifies a release: trust, expiry, product, hardware, freeze,
// security versions, size limits. slots names, for each component of the
// release the device's hardware runs, the slot holding its image (the one
// the device booted from, say); each slot is read back against the signed
// payload digest (ErrDigest when it holds something else). Then, in one
// state write, the images become the installed ones and the counters,
// release version and newest creation time advance as Commit advances
// them; then the slots are activated.
//
// Adopt refuses (ErrProvisioned) a device that already has an image
// installed or an update pending, and ErrConfig when slots misses a
// component of the release or names an invalid slot. Nothing is written
// when it fails, except what CheckAndRecord would keep (a verified root
// rotation).
func (d *Device) Adopt(ctx context.Context, releaseEnvelope []byte, rootChain [][]byte, slots map[string]string, now time.Time) error {
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
	if len(st.Installed) > 0 || st.Pending != nil {
		return fmt.Errorf("%w: the device has a release installed or pending; Adopt is for a device that was only provisioned", ErrProvisioned)
	}
	// Trust and policy as Check has them; planning (which slot to write,
	// from what) does not apply to images already in place.
	ev := &evaluation{}
	ref := now
	if ref.Before(st.NewestCreated) {
		ref = st.NewestCreated
	}
	err = d.verifyTrust(ev, st, releaseEnvelope, rootChain, ref)
	if err == nil {
		err = d.checkRelease(st, ev.rel)
	}
	if err == nil {
		err = d.checkImages(st, ev.rel)
	}
	if err != nil {
		if rerr := d.record(ctx, st, ev); rerr != nil {
			return rerr
		}
		return err
	}
	rel := ev.rel
	buf := make([]byte, d.cfg.Limits.BufferSize)
	adopted := map[string]InstalledImage{}
	for i := range rel.Images {
		img := &rel.Images[i]
		if !img.Supports(d.cfg.Hardware) {
			continue
		}
		slot, ok := slots[img.Component]
		if !ok {
			return fmt.Errorf("%w: no slot given for component %s of release %s version %d", ErrConfig, img.Component, rel.Product, rel.Version)
		}
		if err := checkSlotName(img.Component, slot); err != nil {
			return err
		}
		if err := d.verifySlot(ctx, img.Component, slot, img.Payload.Digest, img.Payload.Size, buf); err != nil {
			return fmt.Errorf("device: adopting release %s version %d: %w", rel.Product, rel.Version, err)
		}
		adopted[img.Component] = InstalledImage{
			Version: img.Version, SecurityVersion: img.SecurityVersion,
			PayloadDigest: img.Payload.Digest, PayloadSize: img.Payload.Size, Slot: slot,
		}
	}
	if ev.recordRoot && len(ev.chain) > 0 && ev.root.Version > st.RootVersion {
		st.RootEnvelope = bytes.Clone(ev.chain[len(ev.chain)-1])
		st.RootVersion = ev.root.Version
	}
	recordCommitted(st, adopted, rel.Version, rel.Created, rel.Product)
	if err := d.cfg.Store.Save(ctx, st); err != nil {
		return err
	}
	for _, c := range sortedKeys(adopted) {
		if err := d.cfg.Slots.Activate(ctx, c, adopted[c].Slot); err != nil {
			return fmt.Errorf("device: adopted, but activating %s (repaired on the next operation): %w", c, err)
		}
	}
	return nil
}
