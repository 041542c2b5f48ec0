package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/upkit/upkit/manifest"
)

// Check verifies a release against the device, before anything is
// downloaded, and returns what Install would do. It writes nothing: the
// update flow calls CheckAndRecord, which also keeps what it verified. In
// order:
//  1. trust: the root chain (rotations N+1, N+2, ... shipped with the
//     release; may be empty) verifies from the stored root
//     (manifest.VerifyRootChain), and the release envelope verifies
//     against the newest root: signatures, threshold, expiry
//     (manifest.VerifyRelease: ErrThreshold, ErrUnknownKey,
//     ErrBadSignature, ErrExpired pass through);
//  2. policy: the product is the device's (ErrProduct); the release
//     version is not lower than the committed one (ErrRollback); the
//     release was not created before the newest release already seen
//     (ErrFreeze); at least one image lists the device's hardware
//     (ErrHardware; images for other hardware are ignored); no image's
//     security version is lower than its component's counter
//     (ErrSecurityVersion; equal is allowed); signed payload sizes are
//     within Limits (ErrTooLarge);
//  3. planning: per component whose payload differs from the installed
//     one, a delta if the release lists one whose base is the installed
//     payload, else the full package (ErrTooLarge if the blob is over
//     Limits). When nothing differs and the release is the committed one,
//     Check returns ErrNothingToDo (with the plan).
//
// Expiry is checked against the later of now and the newest creation time
// seen, so a device without a clock (now zero) still refuses releases that
// expired before ones it has seen.
func (d *Device) Check(ctx context.Context, releaseEnvelope []byte, rootChain [][]byte, now time.Time) (*Plan, error) {
	return d.check(ctx, releaseEnvelope, rootChain, now, false)
}

// CheckAndRecord is Check, and then it saves in the state what it verified
// and the device may not forget: the newer trust root of a verified root
// chain (even when the release it came with is refused), and the creation
// time of the release, only if the release passed every check for this
// device. It never advances counters or versions (Commit does). This is
// what an update agent calls before Install.
func (d *Device) CheckAndRecord(ctx context.Context, releaseEnvelope []byte, rootChain [][]byte, now time.Time) (*Plan, error) {
	return d.check(ctx, releaseEnvelope, rootChain, now, true)
}

func (d *Device) check(ctx context.Context, releaseEnvelope []byte, rootChain [][]byte, now time.Time, record bool) (*Plan, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if record {
		// (Check reads one state, saved atomically: it needs no lock.)
		unlock, err := d.lockStore(ctx)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	st, err := d.cfg.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	ev, err := d.evaluate(ctx, st, releaseEnvelope, rootChain, now)
	if record {
		if rerr := d.record(ctx, st, ev); rerr != nil {
			return nil, rerr
		}
	}
	return ev.plan, err
}

// evaluation is what evaluate established, step by step: each field is
// set once its step passed.
type evaluation struct {
	root  *manifest.Root    // the newest verified root (the stored one without rotations)
	chain [][]byte          // the verified rotations beyond the stored root
	rel   *manifest.Release // the verified release
	// record says what the device must remember: the rotations (once the
	// chain verified), and the release's creation time (once the release
	// passed every check).
	recordRoot, recordCreated bool
	plan                      *Plan
}

// evaluate runs Check's steps on a loaded state; it writes nothing. The
// evaluation it returns (never nil) holds what passed, also on error.
func (d *Device) evaluate(ctx context.Context, st *State, releaseEnvelope []byte, rootChain [][]byte, now time.Time) (*evaluation, error) {
	ev := &evaluation{}
	ref := now
	if ref.Before(st.NewestCreated) {
		ref = st.NewestCreated
	}
	if err := d.verifyTrust(ev, st, releaseEnvelope, rootChain, ref); err != nil {
		return ev, err
	}
	if err := d.checkRelease(st, ev.rel); err != nil {
		return ev, err
	}
	if err := d.checkImages(st, ev.rel); err != nil {
		return ev, err
	}
	if err := d.checkSecondaries(ctx, ev.rel); err != nil {
		return ev, err
	}
	plan, err := d.plan(ctx, st, ev, releaseEnvelope)
	ev.plan = plan
	// Only a release that passed every check for this device moves the
	// newest-seen time: one refused (for other hardware, say) could
	// otherwise freeze the device out of its own releases.
	ev.recordCreated = err == nil || errors.Is(err, ErrNothingToDo)
	return ev, err
}

// verifyTrust is trust verification: the root chain from the stored root,
// then the release against the newest root, at the reference time ref.
func (d *Device) verifyTrust(ev *evaluation, st *State, releaseEnvelope []byte, rootChain [][]byte, ref time.Time) error {
	trusted, err := d.trustedRoot(st)
	if err != nil {
		return err
	}
	ev.root = trusted
	if chain := newerRoots(rootChain, trusted.Version); len(chain) > 0 {
		root, err := manifest.VerifyRootChain(trusted, chain, ref)
		if err != nil {
			return fmt.Errorf("device: verifying root rotations: %w", err)
		}
		// A verified rotation is kept whatever becomes of the release it
		// came with: forgetting it would let the next release, signed by a
		// key it revoked, through without the chain.
		ev.root, ev.chain, ev.recordRoot = root, chain, true
	}
	rel, err := manifest.VerifyRelease(ev.root, releaseEnvelope, ref)
	if err != nil {
		return fmt.Errorf("device: verifying release: %w", err)
	}
	ev.rel = rel
	return nil
}

// trustedRoot returns the trust root kept in the state (verified when it
// was stored; the state checksum protects it since), parsed once per
// envelope.
func (d *Device) trustedRoot(st *State) (*manifest.Root, error) {
	if d.root != nil && bytes.Equal(d.rootEnvelope, st.RootEnvelope) {
		return d.root, nil
	}
	env, err := manifest.ParseEnvelope(st.RootEnvelope)
	if err != nil {
		return nil, fmt.Errorf("%w: stored trust root: %v", ErrStateCorrupt, err)
	}
	r, err := manifest.ParseRoot(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: stored trust root: %v", ErrStateCorrupt, err)
	}
	d.root, d.rootEnvelope = r, bytes.Clone(st.RootEnvelope)
	return r, nil
}

// newerRoots drops the leading envelopes of a root chain whose version is
// not above have (a release may ship the whole chain from version 1; the
// device needs only what follows its root). Entries that do not parse are
// kept, for VerifyRootChain to report.
func newerRoots(chain [][]byte, have uint64) [][]byte {
	for len(chain) > 0 {
		env, err := manifest.ParseEnvelope(chain[0])
		if err != nil {
			return chain
		}
		r, err := manifest.ParseRoot(env.Payload)
		if err != nil || r.Version > have {
			return chain
		}
		chain = chain[1:]
	}
	return chain
}

// checkRelease is the release-level policy: product, rollback, freeze.
func (d *Device) checkRelease(st *State, rel *manifest.Release) error {
	product := st.Product
	if d.cfg.Product != "" {
		product = d.cfg.Product
	}
	if product != "" && rel.Product != product {
		return fmt.Errorf("%w: release is for %q, device runs %q", ErrProduct, rel.Product, product)
	}
	if rel.Version < st.ReleaseVersion {
		return fmt.Errorf("%w: release %s version %d is lower than the installed version %d", ErrRollback, rel.Product, rel.Version, st.ReleaseVersion)
	}
	if rel.Created.Before(st.NewestCreated) {
		return fmt.Errorf("%w: release %s version %d was created %s, the device has seen a release created %s",
			ErrFreeze, rel.Product, rel.Version, rel.Created.UTC().Format(time.RFC3339), st.NewestCreated.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkImages is the image-level policy for the images that list the
// device's hardware: at least one does, component names fit slots,
// security versions do not go below the counters, payloads fit Limits.
func (d *Device) checkImages(st *State, rel *manifest.Release) error {
	matched := 0
	for i := range rel.Images {
		img := &rel.Images[i]
		if !img.Supports(d.cfg.Hardware) {
			continue
		}
		matched++
		if !validComponent(img.Component) {
			return fmt.Errorf("%w: component name %q cannot be stored in a slot", ErrConfig, img.Component)
		}
		if c, ok := st.SecurityCounters[img.Component]; ok && img.SecurityVersion < c {
			return fmt.Errorf("%w: component %s security version %d is lower than the device's counter %d",
				ErrSecurityVersion, img.Component, img.SecurityVersion, c)
		}
		if img.Payload.Size > d.cfg.Limits.MaxImageSize {
			return fmt.Errorf("%w: component %s image of %d bytes, limit %d", ErrTooLarge, img.Component, img.Payload.Size, d.cfg.Limits.MaxImageSize)
		}
	}
	if matched == 0 {
		return fmt.Errorf("%w: %w: no image of release %s version %d lists hardware %q",
			ErrHardware, manifest.ErrHardware, rel.Product, rel.Version, d.cfg.Hardware)
	}
	return nil
}

// record changes st to remember what ev says must be remembered, and saves
// it if anything changed.
func (d *Device) record(ctx context.Context, st *State, ev *evaluation) error {
	dirty := false
	if ev.recordRoot && len(ev.chain) > 0 && ev.root.Version > st.RootVersion {
		st.RootEnvelope = bytes.Clone(ev.chain[len(ev.chain)-1])
		st.RootVersion = ev.root.Version
		dirty = true
	}
	if ev.recordCreated && ev.rel.Created.After(st.NewestCreated) {
		st.NewestCreated = ev.rel.Created
		dirty = true
	}
	if !dirty {
		return nil
	}
	return d.cfg.Store.Save(ctx, st)
}
