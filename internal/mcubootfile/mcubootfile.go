// Package mcubootfile is what upkit's tools do with MCUboot image files
// (package mcuboot is the format, what firmware links): sign firmware into
// an image file, open one with its file digest, describe it for
// `upkit inspect` and `upkit verify` (JSON and text), and list it in a
// release manifest. cmd/upkit only parses flags, calls it and prints.
package mcubootfile

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/internal/humanize"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// IsImage reports whether the file at path starts with the MCUboot image
// magic (false when it cannot be read: opening it again reports why).
func IsImage(path string) bool {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	return mcuboot.IsImage(head[:n])
}

// Sign signs the firmware file input into the MCUboot image file out
// (mcuboot.Sign), written whole or not at all (atomicfile), and returns the
// image opened from what was written. Errors wrap mcuboot's sentinels:
// ErrInvalidOptions (also for an input that is not a regular file),
// ErrTooLarge, ErrSignerMisbehaving.
func Sign(ctx context.Context, out, input string, opts mcuboot.Options, s spec.Signer) (*File, error) {
	in, err := spec.OpenRegular(input)
	if errors.Is(err, spec.ErrNotRegular) {
		return nil, fmt.Errorf("%w: input %s: an MCUboot image is made from one firmware file", mcuboot.ErrInvalidOptions, input)
	}
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: input %s: an MCUboot image is made from one firmware file", mcuboot.ErrInvalidOptions, input)
	}
	img, err := mcuboot.Sign(ctx, in, opts, s)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(out, img, 0o644); err != nil {
		return nil, err
	}
	return Open(out)
}

// File is an MCUboot image file, parsed (its structure checked: neither
// its hash nor its signature yet).
type File struct {
	Path  string
	Image *mcuboot.Image
	// Digest and Size are the sha256 ("sha256:<hex>") and size of the
	// whole file, trailer included: what a release lists.
	Digest string
	Size   int64
	f      *os.File
}

// Open parses the image file at path (mcuboot.Parse; errors wrap
// mcuboot.ErrRejected) and hashes the whole file. Close it.
func Open(path string) (*File, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	file, err := open(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return file, nil
}

func open(path string, f *os.File) (*File, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	img, err := mcuboot.Parse(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReader(io.NewSectionReader(f, 0, fi.Size()))); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &File{Path: path, Image: img, Digest: spec.HashDigest(h).String(), Size: fi.Size(), f: f}, nil
}

// Format names MCUboot images where upkit names formats (pack --format,
// inspect --json).
const Format = "mcuboot"

// Summary describes the image in one line: version, security counter,
// firmware size, padding.
func (f *File) Summary() string {
	img := f.Image
	sc := "none"
	if img.HasSecurityCounter {
		sc = fmt.Sprint(img.SecurityCounter)
	}
	pad := "unpadded"
	switch {
	case img.Trailer.Confirmed():
		pad = "padded to the slot, confirmed"
	case img.Trailer != nil:
		pad = "padded to the slot"
	}
	return fmt.Sprintf("MCUboot image %s (security counter %s, firmware %s, %s)", img.Header.Version, sc, humanize.Bytes(int64(img.Header.ImageSize)), pad)
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Verify checks the image as MCUboot does (mcuboot.Image.Verify: hash,
// key hash among keys, signature) and returns the key that signed.
func (f *File) Verify(ctx context.Context, keys ...*spec.PublicKey) (*spec.PublicKey, error) {
	return f.Image.Verify(ctx, f.f, keys...)
}

// CheckHash checks only the image hash (what `upkit inspect` checks
// without a key): mcuboot.ErrHash or ErrTruncated if it does not hold.
func (f *File) CheckHash(ctx context.Context) error {
	// Verify checks the hash first: with no key, ErrSignature or
	// ErrUnknownKey after it means the hash held.
	_, err := f.Verify(ctx)
	if errors.Is(err, mcuboot.ErrSignature) || errors.Is(err, mcuboot.ErrUnknownKey) {
		return nil
	}
	return err
}

// Listing is an MCUboot image to list in a release, as
// `upkit release create --mcuboot COMPONENT@HW[,HW...]=FILE` names it: the
// image names neither its component nor its hardware, the release does.
type Listing struct {
	Component string
	Hardware  []string
	Path      string
}

// ErrListing: a listing that does not parse.
var ErrListing = errors.New("mcubootfile: bad listing")

// ParseListing reads COMPONENT@HW[,HW...]=FILE: a component name and
// hardware names as spec.CheckName and spec.CheckHardware allow, each
// hardware once. Errors wrap ErrListing.
func ParseListing(s string) (Listing, error) {
	bad := func(format string, args ...any) (Listing, error) {
		return Listing{}, fmt.Errorf("%w %q: %s", ErrListing, s, fmt.Sprintf(format, args...))
	}
	compHW, path, ok := strings.Cut(s, "=")
	comp, hw, ok2 := strings.Cut(compHW, "@")
	if !ok || !ok2 || comp == "" || hw == "" || path == "" {
		return bad("want COMPONENT@HW[,HW...]=FILE")
	}
	if err := spec.CheckName(comp); err != nil {
		return bad("component: %v", err)
	}
	l := Listing{Component: comp, Path: path}
	for _, h := range strings.Split(hw, ",") {
		if err := spec.CheckHardware(h); err != nil {
			return bad("hardware: %v", err)
		}
		for _, seen := range l.Hardware {
			if seen == h {
				return bad("hardware %q given twice", h)
			}
		}
		l.Hardware = append(l.Hardware, h)
	}
	return l, nil
}

// ReleaseImage reads the listed image and returns its release entry:
// component and hardware from the listing, type firmware, version and
// security version from the image's header and SEC_CNT TLV, and the file
// as both package and payload (a device installs it as it is, and tells
// it from an image package by that). The image hash must hold and the
// image carry a security counter; with keys, it must verify against one of
// them. Image errors wrap mcuboot.ErrRejected.
func (l Listing) ReleaseImage(ctx context.Context, keys []*spec.PublicKey) (*manifest.Image, error) {
	f, err := Open(l.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if len(keys) > 0 {
		_, err = f.Verify(ctx, keys...)
	} else {
		err = f.CheckHash(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.Path, err)
	}
	img := f.Image
	if !img.HasSecurityCounter {
		return nil, fmt.Errorf("%s: %w: no SEC_CNT TLV: sign it with a security counter (upkit pack --security-version, imgtool -s)", l.Path, mcuboot.ErrSecurityCounter)
	}
	blob := manifest.Blob{Digest: f.Digest, Size: f.Size}
	return &manifest.Image{
		Component:       l.Component,
		Type:            imagepkg.TypeFirmware,
		Version:         img.Header.Version.String(),
		SecurityVersion: uint64(img.SecurityCounter),
		Hardware:        l.Hardware,
		Package:         blob,
		Payload:         blob,
	}, nil
}
