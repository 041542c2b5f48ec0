package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// Secondary is a microcontroller behind the device that boots MCUboot
// images (a sensor MCU on a gateway, a motor controller, a modem): the
// device installs its component like any other, into the device's own A/B
// slots, and hands the committed image to the Secondary. Firmware
// implements it over the link to the MCU (UART or BLE with mcumgr/SMP, SWD,
// a shared flash); FileSecondary simulates one with a flash-image file.
//
// The device checks the image the way MCUboot will before every hand-over
// (hash, key hash among the trust root's release keys, signature, security
// counter not below SecurityCounter), so a Secondary receives only images
// its bootloader accepts.
type Secondary interface {
	// SecurityCounter returns the MCU's security counter: the lowest
	// SEC_CNT its MCUboot boots (its hardware downgrade protection), 0 if
	// it has none.
	SecurityCounter(ctx context.Context) (uint64, error)
	// ImageHash returns the MCUboot image hash (the SHA256 TLV, as mcumgr's
	// image list reports it) of the image the MCU holds for installation
	// or runs, nil if it has none. The device hands the committed image
	// over again when it differs.
	ImageHash(ctx context.Context) ([]byte, error)
	// Update hands over an MCUboot image of size bytes, read from image,
	// for the MCU to install permanently. It must be idempotent: after a
	// crash or a failed attempt the device calls it again with the same
	// image.
	Update(ctx context.Context, image io.ReaderAt, size int64) error
}

// releaseKeys returns the release role's keys of a verified root (the keys
// an MCUboot image's key hash must name).
func releaseKeys(root *manifest.Root) ([]*spec.PublicKey, error) {
	keys, err := root.ReleaseKeys()
	if err != nil {
		return nil, fmt.Errorf("%w: trust root: %w", ErrStateCorrupt, err)
	}
	return keys, nil
}

// checkSecondaries is the policy for the release's images that a
// Secondary boots: each must be an MCUboot image (ErrNotListed), and its
// security version not below the Secondary's security counter
// (ErrSecurityVersion; ErrSecondary when the counter cannot be read).
func (d *Device) checkSecondaries(ctx context.Context, rel *manifest.Release) error {
	for i := range rel.Images {
		img := &rel.Images[i]
		sec, ok := d.cfg.Secondaries[img.Component]
		if !ok || !img.Supports(d.cfg.Hardware) {
			continue
		}
		if !img.IsMCUboot() {
			return fmt.Errorf("%w: component %s is handed to a secondary, which boots MCUboot images; the release lists an image package", ErrNotListed, img.Component)
		}
		c, err := sec.SecurityCounter(ctx)
		if err != nil {
			return fmt.Errorf("%w: reading the security counter of %s: %w", ErrSecondary, img.Component, err)
		}
		if img.SecurityVersion < c {
			return fmt.Errorf("%w: component %s security version %d is lower than its secondary's security counter %d",
				ErrSecurityVersion, img.Component, img.SecurityVersion, c)
		}
	}
	return nil
}

// checkMCUboot checks the MCUboot image in a slot as MCUboot will: the
// structure, the SHA-256 of the signed region, a key hash naming one of the
// release keys and its signature (mcuboot.Err* wrapped in ErrDigest), a
// version and SEC_CNT equal to what the release signs (ErrNotListed), and,
// for a component with a Secondary, a SEC_CNT not below the MCU's counter
// (ErrSecurityVersion).
func (d *Device) checkMCUboot(ctx context.Context, component, slot, version string, securityVersion uint64, size int64, keys []*spec.PublicKey) error {
	r, err := d.cfg.Slots.OpenRead(ctx, component, slot)
	if err != nil {
		return err
	}
	defer r.Close()
	img, _, err := mcuboot.Verify(ctx, r, size, keys...)
	if err != nil {
		return fmt.Errorf("%w: MCUboot image of %s in slot %s: %w", ErrDigest, component, slot, err)
	}
	if !img.HasSecurityCounter || uint64(img.SecurityCounter) != securityVersion || img.Header.Version.String() != version {
		return fmt.Errorf("%w: MCUboot image of %s is version %s with security counter %d (present: %v), the release lists %s with security version %d",
			ErrNotListed, component, img.Header.Version, img.SecurityCounter, img.HasSecurityCounter, version, securityVersion)
	}
	if sec, ok := d.cfg.Secondaries[component]; ok {
		c, err := sec.SecurityCounter(ctx)
		if err != nil {
			return fmt.Errorf("%w: reading the security counter of %s: %w", ErrSecondary, component, err)
		}
		if err := img.CheckSecurityCounter(c); err != nil {
			return fmt.Errorf("%w: component %s: %w", ErrSecurityVersion, component, err)
		}
	}
	return nil
}

// syncSecondaries hands every committed MCUboot image to its Secondary when
// the Secondary does not hold it, after checking it again against the
// stored state and trust root.
func (d *Device) syncSecondaries(ctx context.Context, st *State) error {
	if len(d.cfg.Secondaries) == 0 {
		return nil
	}
	root, err := d.trustedRoot(st)
	if err != nil {
		return err
	}
	keys, err := releaseKeys(root)
	if err != nil {
		return err
	}
	buf := make([]byte, d.cfg.Limits.BufferSize)
	var errs []error
	for _, c := range sortedKeys(d.cfg.Secondaries) {
		im, ok := st.Installed[c]
		if !ok {
			continue
		}
		if err := d.handOver(ctx, c, im, keys, buf); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Device) handOver(ctx context.Context, c string, im InstalledImage, keys []*spec.PublicKey, buf []byte) error {
	sec := d.cfg.Secondaries[c]
	r, err := d.cfg.Slots.OpenRead(ctx, c, im.Slot)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSecondary, c, err)
	}
	defer r.Close()
	img, err := mcuboot.Parse(r, im.PayloadSize)
	if err != nil {
		return fmt.Errorf("%w: %s: committed slot %s: %w", ErrSecondary, c, im.Slot, err)
	}
	have, err := sec.ImageHash(ctx)
	if err != nil {
		return fmt.Errorf("%w: %s: reading its image hash: %w", ErrSecondary, c, err)
	}
	if bytes.Equal(have, img.Hash) {
		return nil
	}
	if err := d.verifySlot(ctx, c, im.Slot, im.PayloadDigest, im.PayloadSize, buf); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSecondary, c, err)
	}
	if err := d.checkMCUboot(ctx, c, im.Slot, im.Version, im.SecurityVersion, im.PayloadSize, keys); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSecondary, c, err)
	}
	if err := sec.Update(ctx, r, im.PayloadSize); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSecondary, c, err)
	}
	return nil
}

// FileSecondary simulates a microcontroller's MCUboot slot as a flash image
// file of a fixed slot size: the image at offset 0, erased flash (0xff)
// after it. Like MCUboot with downgrade protection it refuses an image
// whose security counter is below the current image's, and its security
// counter is the current image's SEC_CNT.
type FileSecondary struct {
	path     string
	slotSize int64
	fs       FS
}

// NewFileSecondary returns a FileSecondary writing the flash image path of
// slotSize bytes (at most mcuboot.MaxSlotSize). fsys nil means OSFS.
func NewFileSecondary(path string, slotSize int64, fsys FS) *FileSecondary {
	if fsys == nil {
		fsys = OSFS{}
	}
	return &FileSecondary{path: path, slotSize: slotSize, fs: fsys}
}

// current parses the image in the flash file, nil if there is none.
func (s *FileSecondary) current() (*mcuboot.Image, error) {
	f, err := s.fs.OpenFile(s.path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	img, err := mcuboot.ParseSlot(f, min(fi.Size(), s.slotSize))
	if errors.Is(err, mcuboot.ErrMagic) {
		return nil, nil // erased flash
	}
	return img, err
}

// SecurityCounter implements Secondary.
func (s *FileSecondary) SecurityCounter(ctx context.Context) (uint64, error) {
	img, err := s.current()
	if err != nil || img == nil {
		return 0, err
	}
	return uint64(img.SecurityCounter), nil
}

// ImageHash implements Secondary.
func (s *FileSecondary) ImageHash(ctx context.Context) ([]byte, error) {
	img, err := s.current()
	if err != nil || img == nil {
		return nil, err
	}
	return img.Hash, nil
}

// Update implements Secondary: it writes the flash image through a
// temporary file renamed over the old one.
func (s *FileSecondary) Update(ctx context.Context, image io.ReaderAt, size int64) error {
	if size > s.slotSize {
		return fmt.Errorf("%w: image of %d bytes for a %d-byte slot", ErrTooLarge, size, s.slotSize)
	}
	img, err := mcuboot.Parse(image, size)
	if err != nil {
		return err
	}
	cur, err := s.current()
	if err != nil {
		return err
	}
	if cur != nil && img.SecurityCounter < cur.SecurityCounter {
		return fmt.Errorf("%w: security counter %d below the MCU's %d", ErrSecurityVersion, img.SecurityCounter, cur.SecurityCounter)
	}
	dir := filepath.Dir(s.path)
	tmp := filepath.Join(dir, "."+filepath.Base(s.path)+".tmp")
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		s.fs.Remove(tmp)
		return err
	}
	if _, err := copyCtx(ctx, f, io.NewSectionReader(image, 0, size), make([]byte, 32<<10)); err != nil {
		return fail(err)
	}
	erased := bytes.Repeat([]byte{0xff}, 4096)
	for off := size; off < s.slotSize; {
		n := min(int64(len(erased)), s.slotSize-off)
		if _, err := f.Write(erased[:n]); err != nil {
			return fail(err)
		}
		off += n
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(tmp)
		return err
	}
	if err := s.fs.Rename(tmp, s.path); err != nil {
		s.fs.Remove(tmp)
		return err
	}
	return s.fs.SyncDir(dir)
}
