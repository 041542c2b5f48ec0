package manifest

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Release is a release manifest: the signed list of the images of one
// release of a product. It is the payload of an envelope of type
// ReleasePayloadType.
type Release struct {
	SchemaVersion int       `json:"schemaVersion"` // SchemaVersion (NewReleaseEnvelope fills 0 in)
	Product       string    `json:"product"`       // product name: spec.CheckName
	Version       uint64    `json:"version"`       // release sequence number, at least 1, monotonic per product
	Created       time.Time `json:"created"`       // UTC, whole seconds
	Expires       time.Time `json:"expires"`       // UTC, whole seconds, after Created
	Images        []Image   `json:"images"`        // 1 to MaxImages, distinct components and package digests
}

// Image describes one image package (.upk) of a release.
type Image struct {
	Component       string   `json:"component"`        // e.g. "rootfs"; unique in the release; spec.CheckName
	Type            string   `json:"type"`             // e.g. "os", "app", "firmware", "bootloader"; same rule
	Version         string   `json:"version"`          // semantic version of the image
	SecurityVersion uint64   `json:"securityVersion"`  // anti-rollback counter
	Hardware        []string `json:"hardware"`         // 1 to MaxHardware distinct names, [A-Za-z0-9][A-Za-z0-9._:+-]*
	Package         Blob     `json:"package"`          // the whole .upk file (or MCUboot image)
	Payload         Blob     `json:"payload"`          // the uncompressed payload inside it (an MCUboot image's is itself)
	Deltas          []Delta  `json:"deltas,omitempty"` // 0 to MaxDeltas patches that produce Payload
}

// Blob is the digest and size of a byte stream.
type Blob struct {
	Digest string `json:"digest"` // "sha256:<64 lowercase hex>"
	Size   int64  `json:"size"`   // bytes, 0 to MaxBlobSize
}

// Delta is a patch that turns an older payload into the image's payload.
type Delta struct {
	FromPayloadDigest string `json:"fromPayloadDigest"`           // payload the patch applies to
	FromPackageDigest string `json:"fromPackageDigest,omitempty"` // optional: the package that payload came in
	Digest            string `json:"digest"`                      // sha256 of the delta file
	Size              int64  `json:"size"`                        // size of the delta file, at least 1
}

// releaseWire is the JSON form of Release.
type releaseWire struct {
	SchemaVersion int     `json:"schemaVersion"`
	Product       string  `json:"product"`
	Version       uint64  `json:"version"`
	Created       string  `json:"created"`
	Expires       string  `json:"expires"`
	Images        []Image `json:"images"`
}

// Clone returns a deep copy of r.
func (r *Release) Clone() *Release {
	c := *r
	c.Images = slices.Clone(r.Images)
	for i := range c.Images {
		c.Images[i].Hardware = slices.Clone(c.Images[i].Hardware)
		c.Images[i].Deltas = slices.Clone(c.Images[i].Deltas)
	}
	return &c
}

// Validate checks r against every rule ParseRelease applies:
// schemaVersion SchemaVersion; product a valid name; version at least 1;
// created and expires set, whole seconds, expires after created; 1 to
// MaxImages images with distinct components and distinct package digests;
// per image: component and type valid names, version a semantic version,
// 1 to MaxHardware distinct valid hardware names, package size 1 to
// MaxBlobSize, payload size 0 to MaxBlobSize, valid digests, 0 to MaxDeltas
// deltas with distinct fromPayloadDigest values (none equal to the image's
// own payload digest) and sizes 1 to MaxBlobSize.
func (r *Release) Validate() error {
	if r == nil {
		return fmt.Errorf("%w: nil release", ErrMalformed)
	}
	if r.SchemaVersion != SchemaVersion {
		return errorf(ErrSchemaVersion, []error{ErrMalformed}, "release has schemaVersion %d, want %d", r.SchemaVersion, SchemaVersion)
	}
	if err := checkName("release product", r.Product); err != nil {
		return err
	}
	if r.Version == 0 {
		return fmt.Errorf("%w: release version must be at least 1", ErrMalformed)
	}
	if err := checkTime("release created", r.Created); err != nil {
		return err
	}
	if err := checkTime("release expires", r.Expires); err != nil {
		return err
	}
	if !r.Expires.After(r.Created) {
		return fmt.Errorf("%w: release expires (%s) is not after created (%s)", ErrMalformed, formatTime(r.Expires), formatTime(r.Created))
	}
	if len(r.Images) == 0 {
		return fmt.Errorf("%w: release lists no images", ErrMalformed)
	}
	if len(r.Images) > MaxImages {
		return fmt.Errorf("%w: release lists %d images, limit %d", ErrTooLarge, len(r.Images), MaxImages)
	}
	components := make(map[string]bool, len(r.Images))
	packages := make(map[string]string, len(r.Images))
	for i := range r.Images {
		img := &r.Images[i]
		if err := img.validate(fmt.Sprintf("images[%d]", i)); err != nil {
			return err
		}
		if components[img.Component] {
			return fmt.Errorf("%w: release lists component %q twice", ErrMalformed, img.Component)
		}
		components[img.Component] = true
		if other, dup := packages[img.Package.Digest]; dup {
			return fmt.Errorf("%w: components %q and %q have the same package digest %s", ErrMalformed, other, img.Component, img.Package.Digest)
		}
		packages[img.Package.Digest] = img.Component
	}
	return nil
}

func checkSize(field string, n, min int64) error {
	if n < min || n > MaxBlobSize {
		return fmt.Errorf("%w: %s %d: want %d to %d bytes", ErrMalformed, field, n, min, int64(MaxBlobSize))
	}
	return nil
}

func (img *Image) validate(at string) error {
	if err := checkName(at+".component", img.Component); err != nil {
		return err
	}
	at = fmt.Sprintf("%s (component %s)", at, img.Component)
	if err := checkName(at+" type", img.Type); err != nil {
		return err
	}
	if err := checkSemver(at+" version", img.Version); err != nil {
		return err
	}
	if len(img.Hardware) == 0 {
		return fmt.Errorf("%w: %s lists no hardware", ErrMalformed, at)
	}
	if len(img.Hardware) > MaxHardware {
		return fmt.Errorf("%w: %s lists %d hardware names, limit %d", ErrTooLarge, at, len(img.Hardware), MaxHardware)
	}
	hw := make(map[string]bool, len(img.Hardware))
	for _, h := range img.Hardware {
		if err := checkHardware(at+" hardware", h); err != nil {
			return err
		}
		if hw[h] {
			return fmt.Errorf("%w: %s lists hardware %q twice", ErrMalformed, at, h)
		}
		hw[h] = true
	}
	if err := checkDigest(at+" package digest", img.Package.Digest); err != nil {
		return err
	}
	if err := checkSize(at+" package size", img.Package.Size, 1); err != nil {
		return err
	}
	if err := checkDigest(at+" payload digest", img.Payload.Digest); err != nil {
		return err
	}
	if err := checkSize(at+" payload size", img.Payload.Size, 0); err != nil {
		return err
	}
	if len(img.Deltas) > MaxDeltas {
		return fmt.Errorf("%w: %s lists %d deltas, limit %d", ErrTooLarge, at, len(img.Deltas), MaxDeltas)
	}
	from := make(map[string]bool, len(img.Deltas))
	for j, d := range img.Deltas {
		dat := fmt.Sprintf("%s deltas[%d]", at, j)
		if err := checkDigest(dat+" fromPayloadDigest", d.FromPayloadDigest); err != nil {
			return err
		}
		if d.FromPayloadDigest == img.Payload.Digest {
			return fmt.Errorf("%w: %s starts from the image's own payload", ErrMalformed, dat)
		}
		if from[d.FromPayloadDigest] {
			return fmt.Errorf("%w: %s: two deltas from payload %s", ErrMalformed, dat, d.FromPayloadDigest)
		}
		from[d.FromPayloadDigest] = true
		if d.FromPackageDigest != "" {
			if err := checkDigest(dat+" fromPackageDigest", d.FromPackageDigest); err != nil {
				return err
			}
		}
		if err := checkDigest(dat+" digest", d.Digest); err != nil {
			return err
		}
		if err := checkSize(dat+" size", d.Size, 1); err != nil {
			return err
		}
	}
	return nil
}

// NewReleaseEnvelope validates r and returns an unsigned envelope whose
// payload is r's canonical JSON encoding. A zero SchemaVersion is written as
// SchemaVersion. Sign it with Sign.
func NewReleaseEnvelope(r *Release) (*Envelope, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil release", ErrMalformed)
	}
	c := r.Clone()
	if c.SchemaVersion == 0 {
		c.SchemaVersion = SchemaVersion
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p, err := json.Marshal(releaseWire{
		SchemaVersion: c.SchemaVersion,
		Product:       c.Product,
		Version:       c.Version,
		Created:       formatTime(c.Created),
		Expires:       formatTime(c.Expires),
		Images:        c.Images,
	})
	if err != nil {
		return nil, fmt.Errorf("manifest: encoding release: %w", err)
	}
	if len(p) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: release is %d bytes, limit %d", ErrTooLarge, len(p), MaxDocumentSize)
	}
	return &Envelope{PayloadType: ReleasePayloadType, Payload: p, Signatures: []Signature{}}, nil
}

// ParseRelease parses a release payload strictly, without verifying its
// signatures or expiry: at most MaxDocumentSize bytes, one JSON object,
// schemaVersion SchemaVersion, no unknown, duplicate or null members, no
// trailing data, times as RFC 3339 UTC whole seconds, and every rule of
// Validate. Errors wrap ErrTooLarge, ErrDuplicateKey, ErrSchemaVersion or
// ErrMalformed.
func ParseRelease(payload []byte) (*Release, error) {
	var w releaseWire
	if err := decodeStrict(payload, "release", &w, true); err != nil {
		return nil, err
	}
	created, err := parseTime("release created", w.Created)
	if err != nil {
		return nil, err
	}
	exp, err := parseTime("release expires", w.Expires)
	if err != nil {
		return nil, err
	}
	r := &Release{SchemaVersion: w.SchemaVersion, Product: w.Product, Version: w.Version, Created: created, Expires: exp, Images: w.Images}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyRelease verifies a release envelope against a trusted root at the
// reference time now. In order:
//  1. root passes Root.Validate and has not expired at now (ErrExpired);
//  2. the envelope is well formed (ParseEnvelope) and of type
//     ReleasePayloadType (ErrPayloadType);
//  3. a threshold of distinct keys of root's release role signed it
//     (ErrThreshold, with ErrUnknownKey or ErrBadSignature when no
//     signature verified);
//  4. the payload parses (ParseRelease);
//  5. the release has not expired at now (ErrExpired).
//
// It does not check the release version against the last one installed or
// the hardware: that is device state (see Image.Supports and the device
// package).
func VerifyRelease(root *Root, envelope []byte, now time.Time) (*Release, error) {
	keys, err := root.verifiers()
	if err != nil {
		return nil, fmt.Errorf("trust root: %w", err)
	}
	if err := checkExpiry(fmt.Sprintf("trust root version %d", root.Version), root.Expires, now); err != nil {
		return nil, err
	}
	env, err := parseTypedEnvelope(envelope, ReleasePayloadType, "release")
	if err != nil {
		return nil, err
	}
	if err := verifyRole(env, keys, root.Roles.Release, fmt.Sprintf("release by the release role of root version %d", root.Version)); err != nil {
		return nil, err
	}
	r, err := ParseRelease(env.Payload)
	if err != nil {
		return nil, err
	}
	if err := checkExpiry(fmt.Sprintf("release %s version %d", r.Product, r.Version), r.Expires, now); err != nil {
		return nil, err
	}
	return r, nil
}

// Image returns the image of a component.
func (r *Release) Image(component string) (*Image, bool) {
	for i := range r.Images {
		if r.Images[i].Component == component {
			return &r.Images[i], true
		}
	}
	return nil, false
}

// IsMCUboot reports whether the release lists img as an MCUboot image
// (docs/FORMAT.md, "MCUboot images"): a file that is its own payload,
// installed as it is. An image package never is: its header precedes the
// payload, so their digests differ.
func (img *Image) IsMCUboot() bool { return img.Package == img.Payload }

// Supports reports whether the image lists hardware (exact, case-sensitive
// match). An image always lists at least one hardware name; there is no
// wildcard.
func (img *Image) Supports(hardware string) bool {
	return slices.Contains(img.Hardware, hardware)
}

// CheckHardware returns nil if the image supports hardware, else an error
// wrapping ErrHardware that names the component and what it supports.
func (img *Image) CheckHardware(hardware string) error {
	if img.Supports(hardware) {
		return nil
	}
	return fmt.Errorf("%w: component %s supports %v, not %q", ErrHardware, img.Component, img.Hardware, hardware)
}

// FindPackage returns the image whose package digest is digest. A package
// that the release does not list, for instance one taken from another
// release (mix-and-match), gives ErrNotListed.
func (r *Release) FindPackage(digest string) (*Image, error) {
	for i := range r.Images {
		if r.Images[i].Package.Digest == digest {
			return &r.Images[i], nil
		}
	}
	return nil, fmt.Errorf("%w: package %.80s is not in release %s version %d", ErrNotListed, digest, r.Product, r.Version)
}

// FindDelta returns the image and delta whose delta digest is digest, or
// ErrNotListed.
func (r *Release) FindDelta(digest string) (*Image, *Delta, error) {
	for i := range r.Images {
		for j := range r.Images[i].Deltas {
			if r.Images[i].Deltas[j].Digest == digest {
				return &r.Images[i], &r.Images[i].Deltas[j], nil
			}
		}
	}
	return nil, nil, fmt.Errorf("%w: delta %.80s is not in release %s version %d", ErrNotListed, digest, r.Product, r.Version)
}

// DeltaFrom returns the image's delta that applies to the payload with
// digest fromPayload, if the release lists one.
func (img *Image) DeltaFrom(fromPayload string) (*Delta, bool) {
	for j := range img.Deltas {
		if img.Deltas[j].FromPayloadDigest == fromPayload {
			return &img.Deltas[j], true
		}
	}
	return nil, false
}

// AddDelta lists d under the image of r whose payload a patch produces:
// the payload with digest to and size toSize. It fails with ErrNotListed
// if no image has that payload, ErrMismatch if its size differs, and
// ErrMalformed if the image already lists a delta from d's base payload;
// r is then unchanged. d itself is checked by Validate.
func (r *Release) AddDelta(to string, toSize int64, d Delta) error {
	var img *Image
	for i := range r.Images {
		if r.Images[i].Payload.Digest == to {
			img = &r.Images[i]
		}
	}
	switch {
	case img == nil:
		return fmt.Errorf("%w: no image of the release has payload %s", ErrNotListed, to)
	case toSize != img.Payload.Size:
		return fmt.Errorf("%w: the patch produces %d bytes, component %s's payload is %d", ErrMismatch, toSize, img.Component, img.Payload.Size)
	}
	if _, dup := img.DeltaFrom(d.FromPayloadDigest); dup {
		return fmt.Errorf("%w: component %s already has a delta from payload %s", ErrMalformed, img.Component, d.FromPayloadDigest)
	}
	img.Deltas = append(img.Deltas, d)
	return nil
}
