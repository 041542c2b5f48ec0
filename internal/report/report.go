// Package report is what `upkit inspect` and `upkit verify` say about a
// file (an image package, an MCUboot image, a trust root or a release
// manifest): a Report, encoded as JSON for --json, or printed for people.
// The commands parse their flags, call Inspect or Verify, and print.
package report

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/mcubootfile"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// Report describes one file. Its JSON encoding is the --json output.
type Report interface {
	// WriteText prints the report for people (what inspect prints).
	WriteText(w io.Writer) error
	// Summary is the line verify prints when the file verified.
	Summary() string
}

// ErrNotExtractable: verify was asked to extract the payload of a file
// that has none (an MCUboot image is what the MCU flashes, as it is).
var ErrNotExtractable = errors.New("report: nothing to extract")

// Kind is what a file holds, told from its first bytes.
type Kind int

// Kinds.
const (
	KindPackage  Kind = iota // an image package (or anything else: imagepkg says why not)
	KindMCUboot              // an MCUboot image
	KindDocument             // a trust root or release manifest (JSON)
)

// Sniff tells the kind of the file at path from its first bytes.
func Sniff(path string) (Kind, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return 0, err
	}
	switch head = head[:n]; {
	case manifest.LooksLikeEnvelope(head):
		return KindDocument, nil
	case mcuboot.IsImage(head):
		return KindMCUboot, nil
	}
	return KindPackage, nil
}

// Inspect reads the file at path without any key and reports what it
// holds: an image package's metadata, with its payload checked against
// its size and digest (Package); an MCUboot image's header, TLVs and
// trailer, with its image hash checked (MCUboot); a trust root or release
// manifest, parsed strictly, unverified (Document). It returns a nil
// Report when the file cannot be read or parsed; a Report and the error
// when a check failed.
func Inspect(ctx context.Context, path string) (Report, error) {
	kind, err := Sniff(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindDocument:
		data, err := manifest.ReadFile(path)
		if err != nil {
			return nil, err
		}
		doc, err := NewDocument(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return doc, nil
	case KindMCUboot:
		f, err := mcubootfile.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		m, herr := NewMCUboot(f), f.CheckHash(ctx)
		if m.HashCheck = "ok"; herr != nil {
			m.HashCheck = herr.Error()
			return m, fmt.Errorf("%s: %w", path, herr)
		}
		return m, nil
	}
	pf, err := imagepkg.ReadPackageFile(ctx, path)
	if pf == nil {
		return nil, err
	}
	p := NewPackage(path, pf.Reader)
	p.PackageDigest, p.PackageSize, p.PayloadCheck = pf.Digest, pf.Size, "ok"
	if err != nil {
		p.PayloadCheck = errors.Unwrap(err).Error()
	}
	return p, err
}

// Verify verifies the image package or MCUboot image at path against keys
// and reports it, Verified set. A package is checked in one streaming pass
// (imagepkg.VerifyFile), its payload written to dest when dest is not "";
// progress, if not nil, sees the bytes read. An MCUboot image is checked as
// MCUboot checks it (hash, key hash among keys, signature); with a dest,
// Verify returns ErrNotExtractable. It returns a nil Report with an error
// when the file cannot be read; a Report with Error set and the error
// (naming path) when the file was refused.
func Verify(ctx context.Context, path string, keys []*spec.PublicKey, dest string, progress func(done, total int64)) (Report, error) {
	if kind, err := Sniff(path); err != nil {
		return nil, err
	} else if kind == KindMCUboot {
		return verifyMCUboot(ctx, path, keys, dest)
	}
	p, err := imagepkg.VerifyFile(ctx, path, keys, dest, progress)
	if p == nil && err != nil && !errors.Is(err, imagepkg.ErrRejected) {
		return nil, err // the file could not be read
	}
	rep := &Package{File: path}
	if p != nil {
		rep = NewPackage(path, p)
	}
	ok := err == nil
	rep.Verified = &ok
	if err != nil {
		rep.Error = err.Error()
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	rep.PayloadCheck = "ok"
	if dest != "" {
		rep.Extracted = dest
	}
	return rep, nil
}

func verifyMCUboot(ctx context.Context, path string, keys []*spec.PublicKey, dest string) (Report, error) {
	if dest != "" {
		return nil, fmt.Errorf("%w: %s is an MCUboot image, what the MCU flashes as it is: it has no payload to extract", ErrNotExtractable, path)
	}
	f, err := mcubootfile.Open(path)
	if err != nil {
		return refusedMCUboot(&MCUboot{File: path, Format: mcubootfile.Format}, err)
	}
	defer f.Close()
	m := NewMCUboot(f)
	key, err := f.Verify(ctx, keys...)
	if err != nil {
		return refusedMCUboot(m, fmt.Errorf("%s: %w", path, err))
	}
	ok := true
	m.Verified, m.HashCheck, m.signedBy = &ok, "ok", key
	return m, nil
}

// refusedMCUboot reports a refused image; other errors come alone.
func refusedMCUboot(m *MCUboot, err error) (Report, error) {
	if !errors.Is(err, mcuboot.ErrRejected) {
		return nil, err
	}
	no := false
	m.Verified, m.Error = &no, err.Error()
	return m, err
}
