package device

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/spec"
)

// Plan says what Install will do for a release. It is the result of Check;
// Install re-verifies everything, so a Plan grants nothing by itself.
type Plan struct {
	Product        string
	ReleaseVersion uint64
	Created        time.Time
	Expires        time.Time
	// RootVersion is the trust root version the release verified against
	// (higher than the stored one when the release came with rotations).
	RootVersion uint64
	// Images are the components to write, in release order.
	Images []PlannedImage
	// Unchanged are the components of the release already installed.
	Unchanged []string
	// Staged is true when this very update is already installed and
	// awaiting Commit.
	Staged bool

	releaseEnvelope []byte
	rootChain       [][]byte
	installed       map[string]string // component -> committed payload digest, at Check
	releaseKeys     []*spec.PublicKey // the verified root's release keys (MCUboot images)
}

// PlannedImage is one component of a Plan.
type PlannedImage struct {
	Component       string
	Type            string
	Version         string
	SecurityVersion uint64
	// Method is MethodDelta or MethodFull.
	Method string
	// BlobDigest and BlobSize name what is fetched: the delta or the
	// package.
	BlobDigest string
	BlobSize   int64
	// PackageDigest and PackageSize name the full package (what a full
	// update fetches).
	PackageDigest string
	PackageSize   int64
	// BaseDigest is the installed payload a delta applies to ("" for
	// MethodFull).
	BaseDigest    string
	PayloadDigest string
	PayloadSize   int64
	// Slot is the slot written (the one not committed).
	Slot string
	// Unlisted is true for a delta the signed release does not list (see
	// Plan.UseDelta).
	Unlisted bool
}

// UseDelta makes the plan fetch, for component, a delta that the signed
// release does not list: one published after the release, for instance
// attached to it as an OCI referrer, whose description (from, to, digest,
// size) comes from an unsigned source. This stays safe because nothing
// about the delta is trusted: its size must not exceed the full package's
// (ErrTooLarge), from must be the committed image (ErrBaseMismatch) and to
// the payload the release signs (ErrNotListed); Install then checks the
// blob against digest, the delta header against from and to before any
// output, and the written slot against the signed payload digest. The worst
// a forged delta can do is fail, after costing at most the package's size
// in download. Errors wrap ErrNotListed if component is not to be written.
func (p *Plan) UseDelta(component, from, to, digest string, size int64) error {
	for i := range p.Images {
		im := &p.Images[i]
		if im.Component != component {
			continue
		}
		switch {
		case !spec.ValidDigest(digest) || size < 1:
			return fmt.Errorf("%w: delta %q of %d bytes", ErrConfig, digest, size)
		case size > im.PackageSize:
			return fmt.Errorf("%w: delta %s of %d bytes for %s, larger than its full package (%d bytes)", ErrTooLarge, digest, size, component, im.PackageSize)
		case to != im.PayloadDigest:
			return fmt.Errorf("%w: delta %s for %s produces %s, the release signs %s", ErrNotListed, digest, component, to, im.PayloadDigest)
		case from != p.installed[component]:
			return fmt.Errorf("%w: delta %s for %s applies to %s, the committed image is %q", ErrBaseMismatch, digest, component, from, p.installed[component])
		}
		im.Method, im.BlobDigest, im.BlobSize, im.BaseDigest, im.Unlisted = MethodDelta, digest, size, from, true
		return nil
	}
	return fmt.Errorf("%w: component %s is not written by this plan", ErrNotListed, component)
}

// DeltaFinder finds a delta published outside the signed release (for
// example attached to it as an OCI referrer: oci.AttachedDeltas) from the
// payload from to the payload to, of 1 to maxSize bytes.
type DeltaFinder interface {
	FindDelta(from, to string, maxSize int64) (digest string, size int64, ok bool)
}

// WantsDeltas reports whether the plan fetches a full package for a
// component that has a committed image: UseDeltas could then save the
// download.
func (p *Plan) WantsDeltas() bool {
	for _, im := range p.Images {
		if im.Method == MethodFull && p.installed[im.Component] != "" {
			return true
		}
	}
	return false
}

// UseDeltas switches each component the plan fetches as a full package,
// and whose committed image f has a delta from, to that delta (UseDelta:
// nothing about it is trusted), and returns the components switched.
func (p *Plan) UseDeltas(f DeltaFinder) []string {
	var switched []string
	for _, im := range p.Images {
		from := p.installed[im.Component]
		if im.Method != MethodFull || from == "" {
			continue
		}
		digest, size, ok := f.FindDelta(from, im.PayloadDigest, im.PackageSize)
		if ok && p.UseDelta(im.Component, from, im.PayloadDigest, digest, size) == nil {
			switched = append(switched, im.Component)
		}
	}
	return switched
}

// UseFullPackages switches every delta of the plan to the component's full
// package (for instance after ErrBaseMismatch: the committed slot does not
// hold the image the state records, so no delta can apply).
func (p *Plan) UseFullPackages() {
	for i := range p.Images {
		im := &p.Images[i]
		im.Method, im.BlobDigest, im.BlobSize, im.BaseDigest, im.Unlisted = MethodFull, im.PackageDigest, im.PackageSize, "", false
	}
}

// FetchBytes is the total size of the blobs the plan fetches.
func (p *Plan) FetchBytes() (fetch, full int64) {
	for _, im := range p.Images {
		fetch += im.BlobSize
		full += im.PackageSize
	}
	return fetch, full
}

// plan is planning: what Install writes for the verified release rel,
// which passed the policy checks.
func (d *Device) plan(ctx context.Context, st *State, ev *evaluation, releaseEnvelope []byte) (*Plan, error) {
	rel := ev.rel
	keys, err := releaseKeys(ev.root)
	if err != nil {
		return nil, err
	}
	plan := &Plan{
		releaseKeys:     keys,
		Product:         rel.Product,
		ReleaseVersion:  rel.Version,
		Created:         rel.Created,
		Expires:         rel.Expires,
		RootVersion:     ev.root.Version,
		releaseEnvelope: bytes.Clone(releaseEnvelope),
		rootChain:       ev.chain,
		installed:       map[string]string{},
	}
	for c, im := range st.Installed {
		plan.installed[c] = im.PayloadDigest
	}
	for i := range rel.Images {
		img := &rel.Images[i]
		if !img.Supports(d.cfg.Hardware) {
			continue
		}
		inst, installed := st.Installed[img.Component]
		if installed && inst.PayloadDigest == img.Payload.Digest {
			plan.Unchanged = append(plan.Unchanged, img.Component)
			continue
		}
		pi := plannedImage(img, inst, installed)
		if pi.BlobSize > d.cfg.Limits.MaxBlobSize {
			return nil, fmt.Errorf("%w: component %s %s of %d bytes, limit %d", ErrTooLarge, img.Component, pi.Method, pi.BlobSize, d.cfg.Limits.MaxBlobSize)
		}
		if err := d.checkSlotSize(ctx, &pi); err != nil {
			return nil, err
		}
		plan.Images = append(plan.Images, pi)
	}
	if st.Pending != nil && pendingMatches(st.Pending, plan) {
		plan.Staged = true
		return plan, nil
	}
	if len(plan.Images) == 0 && rel.Version == st.ReleaseVersion {
		return plan, fmt.Errorf("%w: release %s version %d", ErrNothingToDo, rel.Product, rel.Version)
	}
	return plan, nil
}

// plannedImage writes img: into the slot the installed image (if any) is
// not in, from the delta the release lists for the installed payload, else
// from the full package.
func plannedImage(img *manifest.Image, inst InstalledImage, installed bool) PlannedImage {
	pi := PlannedImage{
		Component:       img.Component,
		Type:            img.Type,
		Version:         img.Version,
		SecurityVersion: img.SecurityVersion,
		Method:          MethodFull,
		BlobDigest:      img.Package.Digest,
		BlobSize:        img.Package.Size,
		PackageDigest:   img.Package.Digest,
		PackageSize:     img.Package.Size,
		PayloadDigest:   img.Payload.Digest,
		PayloadSize:     img.Payload.Size,
		Slot:            SlotB,
	}
	if installed {
		pi.Slot = OtherSlot(inst.Slot)
		if dl, ok := img.DeltaFrom(inst.PayloadDigest); ok {
			pi.Method, pi.BlobDigest, pi.BlobSize, pi.BaseDigest = MethodDelta, dl.Digest, dl.Size, inst.PayloadDigest
		}
	}
	return pi
}

// pendingMatches reports whether the pending update is exactly plan.
func pendingMatches(p *Pending, plan *Plan) bool {
	if p.ReleaseVersion != plan.ReleaseVersion || !p.Created.Equal(plan.Created) || p.Product != plan.Product || len(p.Images) != len(plan.Images) {
		return false
	}
	for _, pi := range plan.Images {
		im, ok := p.Images[pi.Component]
		if !ok || im.PayloadDigest != pi.PayloadDigest || im.Slot != pi.Slot {
			return false
		}
	}
	return true
}

// checkPlan checks that a caller's plan asks only for what the verified
// fresh plan allows: the same components, payloads and slots, each blob
// listed by the release for that component (ErrNotListed), a delta only
// from the installed payload (ErrBaseMismatch).
func checkPlan(given, fresh *Plan, rel *manifest.Release) error {
	if len(given.Images) != len(fresh.Images) {
		return fmt.Errorf("%w: plan writes %d components, the release needs %d", ErrNotListed, len(given.Images), len(fresh.Images))
	}
	for i, g := range given.Images {
		f := fresh.Images[i]
		if g.Component != f.Component || g.PayloadDigest != f.PayloadDigest || g.PayloadSize != f.PayloadSize || g.Slot != f.Slot {
			return fmt.Errorf("%w: plan entry %d (%s %s) differs from the release's %s %s", ErrNotListed, i, g.Component, g.PayloadDigest, f.Component, f.PayloadDigest)
		}
		img, ok := rel.Image(g.Component)
		if !ok {
			return fmt.Errorf("%w: component %s", ErrNotListed, g.Component)
		}
		switch g.Method {
		case MethodFull:
			if g.BlobDigest != img.Package.Digest || g.BlobSize != img.Package.Size {
				return fmt.Errorf("%w: %w: package %s for component %s", ErrNotListed, manifest.ErrNotListed, g.BlobDigest, g.Component)
			}
		case MethodDelta:
			if g.Unlisted {
				// Nothing about it is trusted; see Plan.UseDelta.
				if g.BaseDigest == "" || g.BaseDigest != fresh.installed[g.Component] {
					return fmt.Errorf("%w: plan applies a delta from %s, component %s has %q committed", ErrBaseMismatch, g.BaseDigest, g.Component, fresh.installed[g.Component])
				}
				if !spec.ValidDigest(g.BlobDigest) || g.BlobSize < 1 || g.BlobSize > img.Package.Size {
					return fmt.Errorf("%w: unlisted delta %q of %d bytes for component %s (package is %d bytes)", ErrTooLarge, g.BlobDigest, g.BlobSize, g.Component, img.Package.Size)
				}
				continue
			}
			dl, ok := img.DeltaFrom(g.BaseDigest)
			if !ok || dl.Digest != g.BlobDigest || dl.Size != g.BlobSize {
				return fmt.Errorf("%w: %w: delta %s for component %s", ErrNotListed, manifest.ErrNotListed, g.BlobDigest, g.Component)
			}
			if g.BaseDigest != f.BaseDigest && g.BaseDigest != "" {
				return fmt.Errorf("%w: plan applies a delta from %s, component %s has %s installed", ErrBaseMismatch, g.BaseDigest, g.Component, f.BaseDigest)
			}
			if f.Method != MethodDelta {
				return fmt.Errorf("%w: plan applies a delta to component %s, which has no installed base for it", ErrBaseMismatch, g.Component)
			}
		default:
			return fmt.Errorf("%w: plan entry %d has method %q", ErrConfig, i, g.Method)
		}
	}
	return nil
}
