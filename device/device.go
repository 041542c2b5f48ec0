package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/manifest"
)

// Default limits (see Limits).
const (
	DefaultMaxBlobSize     = 16 << 30
	DefaultMaxImageSize    = 16 << 30
	DefaultMaxBootAttempts = 3
	DefaultBufferSize      = 64 << 10
)

// Methods of a PlannedImage.
const (
	MethodDelta = "delta" // a patch applied to the committed image
	MethodFull  = "full"  // the whole image package
)

// Limits bound what the device accepts, whatever a release signs. The zero
// value of a field selects its default.
type Limits struct {
	// MaxBlobSize bounds the signed size of a package or delta to fetch
	// (default DefaultMaxBlobSize).
	MaxBlobSize int64
	// MaxImageSize bounds the signed size of a payload (an image in a
	// slot; default DefaultMaxImageSize).
	MaxImageSize int64
	// MaxBootAttempts is how many RecordBoot calls a pending update gets
	// before RecordBoot reports ErrBootLimit (default
	// DefaultMaxBootAttempts).
	MaxBootAttempts int
	// BufferSize is the size of the one copy buffer each operation uses
	// (default DefaultBufferSize).
	BufferSize int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBlobSize <= 0 {
		l.MaxBlobSize = DefaultMaxBlobSize
	}
	if l.MaxImageSize <= 0 {
		l.MaxImageSize = DefaultMaxImageSize
	}
	if l.MaxBootAttempts <= 0 {
		l.MaxBootAttempts = DefaultMaxBootAttempts
	}
	if l.BufferSize <= 0 {
		l.BufferSize = DefaultBufferSize
	}
	return l
}

// Config configures a Device.
type Config struct {
	// Store keeps the state (required).
	Store Store
	// Slots holds the images (required).
	Slots Slots
	// Hardware is the device's hardware name, matched exactly against
	// the hardware lists of releases and packages (required).
	Hardware string
	// Product, when set, is the only product whose releases the device
	// accepts. When empty, the product of the first committed release is
	// remembered (State.Product) and enforced from then on.
	Product string
	// StagingDir keeps downloads until they are verified and applied, so
	// that an interrupted download resumes (required). It needs room for
	// the largest package or delta of a release.
	StagingDir string
	// FS is the file layer of the staging directory (nil: OSFS).
	FS FS
	// Limits bounds sizes (zero value: defaults).
	Limits Limits
	// Secondaries are the microcontrollers behind the device, by component:
	// their images are MCUboot images (upkit pack --format mcuboot,
	// imgtool sign), installed into Slots like any component and handed
	// to the Secondary once committed (see Secondary). Nil: none.
	Secondaries map[string]Secondary
	// Progress, if set, is called as Install and Commit advance: after
	// each buffer fetched, written or read back. It must return quickly;
	// it is called from the goroutine running the operation.
	Progress func(Progress)
}

// Progress reports how far one phase of one component has come.
type Progress struct {
	Component string
	Phase     string // PhaseFetch, PhaseWrite or PhaseVerify
	Done      int64  // bytes so far
	Total     int64  // bytes in all (the signed size)
}

// Phases reported through Config.Progress.
const (
	PhaseFetch  = "fetch"  // downloading the blob into staging
	PhaseWrite  = "write"  // writing the inactive slot
	PhaseVerify = "verify" // reading a slot back
)

func (d *Device) progress(component, phase string, done, total int64) {
	if d.cfg.Progress != nil {
		d.cfg.Progress(Progress{Component: component, Phase: phase, Done: done, Total: total})
	}
}

// progressWriter reports bytes written through it.
type progressWriter struct {
	w                io.Writer
	d                *Device
	component, phase string
	done, total      int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.d.progress(p.component, p.phase, p.done, p.total)
	return n, err
}

// Device is the update engine of one device: it decides whether a release
// may be installed, installs it into inactive slots, and commits or rolls
// it back, keeping its State in a Store. Its methods are safe for
// concurrent use (they are serialized); time is always a parameter.
type Device struct {
	cfg Config
	mu  sync.Mutex
}

// New returns a Device. It does no I/O.
func New(cfg Config) (*Device, error) {
	switch {
	case cfg.Store == nil:
		return nil, fmt.Errorf("%w: no Store", ErrConfig)
	case cfg.Slots == nil:
		return nil, fmt.Errorf("%w: no Slots", ErrConfig)
	case cfg.Hardware == "":
		return nil, fmt.Errorf("%w: no Hardware", ErrConfig)
	case cfg.StagingDir == "":
		return nil, fmt.Errorf("%w: no StagingDir", ErrConfig)
	}
	for c, s := range cfg.Secondaries {
		if !validComponent(c) || s == nil {
			return nil, fmt.Errorf("%w: secondary %q", ErrConfig, c)
		}
	}
	if cfg.FS == nil {
		cfg.FS = OSFS{}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Device{cfg: cfg}, nil
}

// Provision stores the first state of a device: the trust root it starts
// from (a self-signed root envelope, checked against now), and nothing
// installed. It fails with ErrProvisioned if the store already holds a
// state, and with the store's error (ErrStateCorrupt, ...) if it cannot
// tell. Firmware embeds the root at build time and calls Provision on
// first boot, or provisions at the factory.
func (d *Device) Provision(ctx context.Context, rootEnvelope []byte, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := d.cfg.Store.Load(ctx)
	if err == nil {
		return ErrProvisioned
	}
	if !errors.Is(err, ErrNoState) {
		return err
	}
	root, err := manifest.VerifySelfSignedRoot(rootEnvelope, now)
	if err != nil {
		return fmt.Errorf("device: verifying the trust root: %w", err)
	}
	st := &State{
		RootEnvelope:     bytes.Clone(rootEnvelope),
		RootVersion:      root.Version,
		Product:          d.cfg.Product,
		SecurityCounters: map[string]uint64{},
		Installed:        map[string]InstalledImage{},
	}
	return d.cfg.Store.Save(ctx, st)
}

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
	releaseKeys     []*pubkey.Key     // the verified root's release keys (MCUboot images)
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
		case !validDigest(digest) || size < 1:
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

// storedRoot parses the trusted root kept in the state (verified when it
// was stored; the state checksum protects it since).
func storedRoot(st *State) (*manifest.Root, error) {
	env, err := manifest.ParseEnvelope(st.RootEnvelope)
	if err != nil {
		return nil, fmt.Errorf("%w: stored trust root: %v", ErrStateCorrupt, err)
	}
	r, err := manifest.ParseRoot(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: stored trust root: %v", ErrStateCorrupt, err)
	}
	return r, nil
}

// Check verifies a release against the device, before anything is
// downloaded, and returns what Install would do. In order:
//  1. the root chain (rotations N+1, N+2, ... shipped with the release;
//     may be empty) verifies from the stored root (manifest.VerifyRootChain);
//  2. the release envelope verifies against the newest root: signatures,
//     threshold, expiry (manifest.VerifyRelease: ErrThreshold,
//     ErrUnknownKey, ErrBadSignature, ErrExpired pass through);
//  3. the product is the device's (ErrProduct);
//  4. the release version is not lower than the committed one
//     (ErrRollback);
//  5. the release was not created before the newest release already seen
//     (ErrFreeze);
//  6. at least one image lists the device's hardware (ErrHardware); images
//     for other hardware are ignored;
//  7. no image's security version is lower than its component's counter
//     (ErrSecurityVersion); equal is allowed;
//  8. signed sizes are within Limits (ErrTooLarge).
//
// Expiry (steps 1 and 2) is checked against the later of now and the
// newest creation time seen, so a device without a clock (now zero) still
// refuses releases that expired before ones it has seen.
//
// Check writes state only to remember what it verified and may not forget:
// a newer trust root from the chain, and the creation time of the newest
// release (steps 1-5 passed). It never advances counters.
//
// The plan writes, per component whose payload differs from the installed
// one, a delta if the release lists one whose base is the installed
// payload, else the full package. When nothing differs and the release is
// the committed one, Check returns ErrNothingToDo.
func (d *Device) Check(ctx context.Context, releaseEnvelope []byte, rootChain [][]byte, now time.Time) (*Plan, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.cfg.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	plan, _, err := d.evaluate(ctx, st, releaseEnvelope, rootChain, now)
	return plan, err
}

// evaluate is Check on a loaded state. It may save st (root, newest
// created) and returns the verified release with the plan.
func (d *Device) evaluate(ctx context.Context, st *State, releaseEnvelope []byte, rootChain [][]byte, now time.Time) (*Plan, *manifest.Release, error) {
	ref := now
	if ref.Before(st.NewestCreated) {
		ref = st.NewestCreated
	}
	trusted, err := storedRoot(st)
	if err != nil {
		return nil, nil, err
	}
	root := trusted
	rootChain = newerRoots(rootChain, trusted.Version)
	if len(rootChain) > 0 {
		root, err = manifest.VerifyRootChain(trusted, rootChain, ref)
		if err != nil {
			return nil, nil, fmt.Errorf("device: verifying root rotations: %w", err)
		}
	}
	rel, err := manifest.VerifyRelease(root, releaseEnvelope, ref)
	if err != nil {
		return nil, nil, fmt.Errorf("device: verifying release: %w", err)
	}
	product := st.Product
	if d.cfg.Product != "" {
		product = d.cfg.Product
	}
	if product != "" && rel.Product != product {
		return nil, nil, fmt.Errorf("%w: release is for %q, device runs %q", ErrProduct, rel.Product, product)
	}
	if rel.Version < st.ReleaseVersion {
		return nil, nil, fmt.Errorf("%w: release %s version %d is lower than the installed version %d", ErrRollback, rel.Product, rel.Version, st.ReleaseVersion)
	}
	if rel.Created.Before(st.NewestCreated) {
		return nil, nil, fmt.Errorf("%w: release %s version %d was created %s, the device has seen a release created %s",
			ErrFreeze, rel.Product, rel.Version, rel.Created.UTC().Format(time.RFC3339), st.NewestCreated.UTC().Format(time.RFC3339))
	}

	// Remember what was verified: a rotated root, the newest time seen.
	dirty := false
	if root.Version > st.RootVersion && len(rootChain) > 0 {
		st.RootEnvelope = bytes.Clone(rootChain[len(rootChain)-1])
		st.RootVersion = root.Version
		dirty = true
	}
	if rel.Created.After(st.NewestCreated) {
		st.NewestCreated = rel.Created
		dirty = true
	}
	if dirty {
		if err := d.cfg.Store.Save(ctx, st); err != nil {
			return nil, nil, err
		}
	}

	keys, err := releaseKeys(root)
	if err != nil {
		return nil, nil, err
	}
	plan := &Plan{
		releaseKeys:     keys,
		Product:         rel.Product,
		ReleaseVersion:  rel.Version,
		Created:         rel.Created,
		Expires:         rel.Expires,
		RootVersion:     root.Version,
		releaseEnvelope: bytes.Clone(releaseEnvelope),
		rootChain:       rootChain,
		installed:       map[string]string{},
	}
	for c, im := range st.Installed {
		plan.installed[c] = im.PayloadDigest
	}
	matched := 0
	for i := range rel.Images {
		img := &rel.Images[i]
		if !img.Supports(d.cfg.Hardware) {
			continue
		}
		matched++
		if !validComponent(img.Component) {
			return nil, nil, fmt.Errorf("%w: component name %q cannot be stored in a slot", ErrConfig, img.Component)
		}
		if c, ok := st.SecurityCounters[img.Component]; ok && img.SecurityVersion < c {
			return nil, nil, fmt.Errorf("%w: component %s security version %d is lower than the device's counter %d",
				ErrSecurityVersion, img.Component, img.SecurityVersion, c)
		}
		if sec, ok := d.cfg.Secondaries[img.Component]; ok {
			if !isMCUbootImage(img) {
				return nil, nil, fmt.Errorf("%w: component %s is handed to a secondary, which boots MCUboot images; the release lists an image package", ErrNotListed, img.Component)
			}
			c, err := sec.SecurityCounter(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: reading the security counter of %s: %w", ErrSecondary, img.Component, err)
			}
			if img.SecurityVersion < c {
				return nil, nil, fmt.Errorf("%w: component %s security version %d is lower than its secondary's security counter %d",
					ErrSecurityVersion, img.Component, img.SecurityVersion, c)
			}
		}
		if img.Payload.Size > d.cfg.Limits.MaxImageSize {
			return nil, nil, fmt.Errorf("%w: component %s image of %d bytes, limit %d", ErrTooLarge, img.Component, img.Payload.Size, d.cfg.Limits.MaxImageSize)
		}
		inst, installed := st.Installed[img.Component]
		if installed && inst.PayloadDigest == img.Payload.Digest {
			plan.Unchanged = append(plan.Unchanged, img.Component)
			continue
		}
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
				pi.Method = MethodDelta
				pi.BlobDigest = dl.Digest
				pi.BlobSize = dl.Size
				pi.BaseDigest = inst.PayloadDigest
			}
		}
		if pi.BlobSize > d.cfg.Limits.MaxBlobSize {
			return nil, nil, fmt.Errorf("%w: component %s %s of %d bytes, limit %d", ErrTooLarge, img.Component, pi.Method, pi.BlobSize, d.cfg.Limits.MaxBlobSize)
		}
		plan.Images = append(plan.Images, pi)
	}
	if matched == 0 {
		return nil, nil, fmt.Errorf("%w: %w: no image of release %s version %d lists hardware %q",
			ErrHardware, manifest.ErrHardware, rel.Product, rel.Version, d.cfg.Hardware)
	}
	if st.Pending != nil && pendingMatches(st.Pending, plan) {
		plan.Staged = true
		return plan, rel, nil
	}
	if len(plan.Images) == 0 && rel.Version == st.ReleaseVersion {
		return plan, rel, fmt.Errorf("%w: release %s version %d", ErrNothingToDo, rel.Product, rel.Version)
	}
	return plan, rel, nil
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
				if !validDigest(g.BlobDigest) || g.BlobSize < 1 || g.BlobSize > img.Package.Size {
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
