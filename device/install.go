package device

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/upkit/upkit/spec"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/manifest"
)

// Result says what Install did.
type Result struct {
	Product        string
	ReleaseVersion uint64
	// Images are the components written, in plan order.
	Images []InstalledResult
	// AlreadyStaged is true when the update was already installed and
	// awaiting Commit: the slots were verified again, nothing fetched.
	AlreadyStaged bool
}

// InstalledResult is one component written by Install.
type InstalledResult struct {
	Component string
	Method    string // MethodDelta or MethodFull
	// Fetched is the number of bytes read from the source by this call;
	// ResumedAt is where the download resumed (bytes already staged).
	Fetched   int64
	ResumedAt int64
	// BlobSize is the size of the delta or package; PackageSize the size
	// of the full package.
	BlobSize    int64
	PackageSize int64
	Slot        string
	Version     string
	// Unlisted is true for a delta the release does not list (Plan.UseDelta).
	Unlisted bool
}

// Install fetches, verifies and writes the update described by plan (from
// Check) into the inactive slots, and records it as pending. It verifies
// again everything Check did (the state may have changed since) and that
// the plan asks only for what the release lists (ErrNotListed,
// ErrBaseMismatch), or for deltas added with Plan.UseDelta within their
// bounds. Then, per component:
//
//  1. the blob (package or delta) is downloaded into the staging directory,
//     resuming after the bytes already staged: the staged prefix is hashed
//     again, the source opened at its length. The source must deliver
//     exactly the signed size (ErrTruncated keeps the prefix for the next
//     call; ErrTooLong discards it), and the whole blob must hash to the
//     signed digest; if a resumed blob does not, it is downloaded once
//     more from offset 0 (the staged prefix may have been damaged by a
//     power loss), and if that fails too the staged file is discarded and
//     ErrDigest returned;
//  2. a package's signed metadata must agree with the release (component,
//     type, version, security version, payload; else ErrNotListed) and list
//     the device's hardware (ErrHardware); its payload is decompressed into
//     the inactive slot, its size and sha256 checked while streaming. The
//     package's own signature is not required: the release, signed by a
//     threshold of release keys, pins the package by digest;
//  3. a delta's header must name the installed payload as its base
//     (ErrBaseMismatch, before any output) and the release's payload as its
//     result; it is applied reading the committed slot, writing the
//     inactive one;
//  4. the written slot is synced and read back: its sha256 must be the
//     signed payload digest (ErrDigest).
//
// Finally the state records the update as Pending, and the staged blobs
// are removed. Counters and versions do not change before Commit. A crash
// at any point leaves the committed image and state intact; calling Check
// and Install again resumes (download) or redoes (slot writes) the work.
// If the same update is already pending, Install only verifies the slots.
// Memory use is bounded by Limits.BufferSize plus the decoders' fixed
// windows (imagepkg.MaxDecoderWindow, delta.MaxWindow), whatever the image
// size.
func (d *Device) Install(ctx context.Context, src Source, plan *Plan, now time.Time) (*Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lockStore(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if plan == nil || plan.releaseEnvelope == nil {
		return nil, fmt.Errorf("%w: Install needs a plan from Check", ErrConfig)
	}
	st, err := d.load(ctx)
	if err != nil {
		return nil, err
	}
	ev, err := d.evaluate(ctx, st, plan.releaseEnvelope, plan.rootChain, now)
	if rerr := d.record(ctx, st, ev); rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, err
	}
	fresh, rel := ev.plan, ev.rel
	if err := checkPlan(plan, fresh, rel); err != nil {
		return nil, err
	}
	res := &Result{Product: fresh.Product, ReleaseVersion: fresh.ReleaseVersion}
	buf := make([]byte, d.cfg.Limits.BufferSize)

	if fresh.Staged {
		return d.verifyStaged(ctx, plan, res, buf)
	}
	// A different pending update may name the slots about to be written:
	// forget it first, so that no state ever points at a half-written slot.
	if st.Pending != nil {
		st.Pending = nil
		if err := d.cfg.Store.Save(ctx, st); err != nil {
			return nil, err
		}
	}
	if err := d.cleanStaging(plan); err != nil {
		return nil, err
	}

	pending := &Pending{
		Product:        rel.Product,
		ReleaseVersion: rel.Version,
		Created:        rel.Created,
		Images:         map[string]InstalledImage{},
	}
	for _, pi := range plan.Images {
		img, _ := rel.Image(pi.Component)
		ir, err := d.installImage(ctx, src, pi, img, st.Installed[pi.Component], buf)
		if err != nil {
			return res, err
		}
		if img.IsMCUboot() {
			if err := d.checkMCUboot(ctx, pi.Component, pi.Slot, pi.Version, pi.SecurityVersion, pi.PayloadSize, fresh.releaseKeys); err != nil {
				return res, err
			}
		}
		pending.Images[pi.Component] = InstalledImage{
			Version:         pi.Version,
			SecurityVersion: pi.SecurityVersion,
			PayloadDigest:   pi.PayloadDigest,
			PayloadSize:     pi.PayloadSize,
			Slot:            pi.Slot,
		}
		res.Images = append(res.Images, ir)
	}
	st.Pending = pending
	if err := d.cfg.Store.Save(ctx, st); err != nil {
		return res, err
	}
	for _, pi := range plan.Images {
		d.cfg.FS.Remove(d.stagingPath(pi.BlobDigest)) // best effort: cleanStaging retries
	}
	return res, nil
}

// verifyStaged is Install for an update already pending: the slots are
// read back, nothing is fetched.
func (d *Device) verifyStaged(ctx context.Context, plan *Plan, res *Result, buf []byte) (*Result, error) {
	for _, pi := range plan.Images {
		if err := d.verifySlot(ctx, pi.Component, pi.Slot, pi.PayloadDigest, pi.PayloadSize, buf); err != nil {
			return nil, err
		}
		res.Images = append(res.Images, InstalledResult{Component: pi.Component, Method: pi.Method, BlobSize: pi.BlobSize, PackageSize: pi.PackageSize, Slot: pi.Slot, Version: pi.Version})
	}
	res.AlreadyStaged = true
	return res, nil
}

// installImage fetches one planned image's blob, writes the slot from it
// (img is the release's entry, base the installed image a delta applies
// to) and reads the slot back.
func (d *Device) installImage(ctx context.Context, src Source, pi PlannedImage, img *manifest.Image, base InstalledImage, buf []byte) (InstalledResult, error) {
	ir := InstalledResult{Component: pi.Component, Method: pi.Method, BlobSize: pi.BlobSize, PackageSize: pi.PackageSize, Slot: pi.Slot, Version: pi.Version, Unlisted: pi.Unlisted}
	blob, fetched, resumed, err := d.fetch(ctx, src, pi.Component, pi.BlobDigest, pi.BlobSize, buf)
	ir.Fetched, ir.ResumedAt = fetched, resumed
	if err != nil {
		return ir, fmt.Errorf("device: component %s: %w", pi.Component, err)
	}
	switch pi.Method {
	case MethodFull:
		err = d.writePackage(ctx, blob, pi, img, buf)
	case MethodDelta:
		err = d.writeDelta(ctx, blob, pi, base, buf)
	}
	if cerr := blob.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return ir, fmt.Errorf("device: component %s: %w", pi.Component, err)
	}
	return ir, d.verifySlot(ctx, pi.Component, pi.Slot, pi.PayloadDigest, pi.PayloadSize, buf)
}

func (d *Device) stagingPath(digest string) string {
	return filepath.Join(d.cfg.StagingDir, strings.TrimPrefix(digest, spec.DigestPrefix)+".part")
}

// cleanStaging removes staged downloads that plan does not need (an
// abandoned update's), so that staging never holds more than one release,
// and anything in staging that is not a regular file (a symlink or FIFO
// planted at a download's name, which fetch would refuse to open).
func (d *Device) cleanStaging(plan *Plan) error {
	entries, err := d.cfg.FS.ReadDir(d.cfg.StagingDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("device: reading staging directory: %w", err)
	}
	keep := map[string]bool{}
	if plan != nil {
		for _, pi := range plan.Images {
			keep[filepath.Base(d.stagingPath(pi.BlobDigest))] = true
		}
	}
	for _, e := range entries {
		if keep[e.Name()] && e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(d.cfg.StagingDir, e.Name())
		if err := d.cfg.FS.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			if !e.Type().IsRegular() {
				return fmt.Errorf("device: staging directory holds %s, which is not a regular file (%s) and cannot be removed: %w", p, e.Type(), err)
			}
			return fmt.Errorf("device: cleaning staging directory: %w", err)
		}
	}
	return nil
}

// stagedBlob is a verified, fully staged blob.
type stagedBlob struct {
	f    File
	size int64
}

func (b *stagedBlob) reader() io.Reader { return io.NewSectionReader(b.f, 0, b.size) }
func (b *stagedBlob) Close() error      { return b.f.Close() }

// fetch stages the blob digest of the signed size and returns it verified.
func (d *Device) fetch(ctx context.Context, src Source, component, digest string, size int64, buf []byte) (blob *stagedBlob, fetched, resumedAt int64, err error) {
	fsys := d.cfg.FS
	if err := fsys.MkdirAll(d.cfg.StagingDir, 0o700); err != nil {
		return nil, 0, 0, fmt.Errorf("device: staging directory: %w", err)
	}
	path := d.stagingPath(digest)
	f, err := openRegular(fsys, path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("device: staging %s: %w", digest, err)
	}
	discard := func() {
		f.Close()
		fsys.Remove(path)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, 0, fmt.Errorf("device: staging %s: %w", digest, err)
	}
	have := fi.Size()
	if have > size {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("device: staging %s: %w", digest, err)
		}
		have = 0
	}
	h := sha256.New()
	if have > 0 {
		if _, err := copyCtx(ctx, h, io.NewSectionReader(f, 0, have), buf); err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("device: rehashing staged %s: %w", digest, err)
		}
	}
	resumedAt = have
	if have < size {
		n, err := d.download(ctx, src, component, digest, size, have, f, h, buf)
		fetched = n
		if err != nil {
			if errors.Is(err, ErrTooLong) {
				discard()
			} else {
				// Keep what arrived (it is checked against the digest
				// once complete) for the next attempt to resume.
				f.Sync()
				f.Close()
			}
			return nil, fetched, resumedAt, err
		}
	}
	if got := spec.HashDigest(h).String(); got != digest && resumedAt > 0 {
		// The staged prefix may be what differs (a torn write before a
		// power loss, or an earlier bad source): download once more, whole.
		if err := f.Truncate(0); err != nil {
			discard()
			return nil, fetched, resumedAt, fmt.Errorf("device: staging %s: %w", digest, err)
		}
		h.Reset()
		n, err := d.download(ctx, src, component, digest, size, 0, f, h, buf)
		fetched += n
		if err != nil {
			if errors.Is(err, ErrTooLong) {
				discard()
			} else {
				f.Sync()
				f.Close()
			}
			return nil, fetched, resumedAt, err
		}
	}
	if got := spec.HashDigest(h).String(); got != digest {
		discard()
		return nil, fetched, resumedAt, fmt.Errorf("%w: blob is %s, the release signs %s (staged copy discarded)", ErrDigest, got, digest)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fetched, resumedAt, fmt.Errorf("device: staging %s: %w", digest, err)
	}
	return &stagedBlob{f: f, size: size}, fetched, resumedAt, nil
}

// maxEmptyReads bounds consecutive (0, nil) reads from a source, as
// io.ReadFull's callers expect of a well-behaved reader.
const maxEmptyReads = 100

// download appends the blob from offset have to f, hashing into h, then
// reads one byte past the signed size to detect endless data.
func (d *Device) download(ctx context.Context, src Source, component, digest string, size, have int64, f File, h hash.Hash, buf []byte) (int64, error) {
	rc, err := src.Open(ctx, digest, have)
	if err != nil {
		return 0, fmt.Errorf("device: opening %s at offset %d: %w", digest, have, err)
	}
	defer rc.Close()
	off := have
	var fetched int64
	eof := false
	for empty := 0; off < size; {
		if err := ctx.Err(); err != nil {
			return fetched, err
		}
		want := int64(len(buf))
		if rest := size - off; rest < want {
			want = rest
		}
		n, rerr := rc.Read(buf[:want])
		if n > 0 {
			empty = 0
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return fetched, fmt.Errorf("device: writing staged %s: %w", digest, err)
			}
			h.Write(buf[:n])
			off += int64(n)
			fetched += int64(n)
			d.progress(component, PhaseFetch, off, size)
		} else if rerr == nil {
			if empty++; empty >= maxEmptyReads {
				return fetched, fmt.Errorf("device: reading %s at offset %d (staged, resumable): %w", digest, off, io.ErrNoProgress)
			}
		}
		if rerr == io.EOF {
			if off < size {
				return fetched, fmt.Errorf("%w: %s ended at %d of %d bytes (staged, resumable)", ErrTruncated, digest, off, size)
			}
			eof = true
		} else if rerr != nil {
			return fetched, fmt.Errorf("device: reading %s at offset %d (staged, resumable): %w", digest, off, rerr)
		}
	}
	if eof {
		return fetched, nil
	}
	// One byte more is endless data. An error instead of io.EOF here is no
	// extra data (a source may report its own digest check there): the
	// caller checks the digest of what was received either way.
	var one [1]byte
	for empty := 0; empty < maxEmptyReads; empty++ {
		n, rerr := rc.Read(one[:])
		if n > 0 {
			return fetched, fmt.Errorf("%w: %s has more than its signed %d bytes", ErrTooLong, digest, size)
		}
		if rerr != nil {
			return fetched, nil
		}
	}
	return fetched, fmt.Errorf("device: reading %s past its end: %w", digest, io.ErrNoProgress)
}

// writePackage writes a verified package's payload to the plan's slot. An
// MCUboot image is written as it is (checked once in the slot: Install).
func (d *Device) writePackage(ctx context.Context, blob *stagedBlob, pi PlannedImage, img *manifest.Image, buf []byte) error {
	if img.IsMCUboot() {
		w, err := d.cfg.Slots.OpenWrite(ctx, pi.Component, pi.Slot)
		if err != nil {
			return err
		}
		if _, err := copyCtx(ctx, &progressWriter{w: io.NewOffsetWriter(w, 0), d: d, component: pi.Component, phase: PhaseWrite, total: pi.PayloadSize}, blob.reader(), buf); err != nil {
			w.Close()
			return fmt.Errorf("device: writing slot %s: %w", pi.Slot, err)
		}
		return finishSlot(w, pi)
	}
	p, err := imagepkg.Open(blob.reader())
	if err != nil {
		return fmt.Errorf("%w: package %s: %w", ErrDigest, pi.BlobDigest, err)
	}
	m := p.Metadata
	if !slices.Contains(m.Hardware, d.cfg.Hardware) {
		return fmt.Errorf("%w: package %s supports %v, not %q", ErrHardware, pi.BlobDigest, m.Hardware, d.cfg.Hardware)
	}
	if m.Component != img.Component || m.Type != img.Type || m.Version != img.Version || m.SecurityVersion != img.SecurityVersion ||
		m.Payload.SHA256 != img.Payload.Digest || m.Payload.Size != img.Payload.Size {
		return fmt.Errorf("%w: package %s describes %s %s %s (security version %d, payload %s) where the release lists %s %s %s (security version %d, payload %s)",
			ErrNotListed, pi.BlobDigest, m.Component, m.Type, m.Version, m.SecurityVersion, m.Payload.SHA256,
			img.Component, img.Type, img.Version, img.SecurityVersion, img.Payload.Digest)
	}
	w, err := d.cfg.Slots.OpenWrite(ctx, pi.Component, pi.Slot)
	if err != nil {
		return err
	}
	payload := p.Payload()
	_, err = copyCtx(ctx, &progressWriter{w: io.NewOffsetWriter(w, 0), d: d, component: pi.Component, phase: PhaseWrite, total: pi.PayloadSize}, payload, buf)
	if c, ok := payload.(io.Closer); ok {
		c.Close()
	}
	if err != nil {
		w.Close()
		if errors.Is(err, imagepkg.ErrPayloadDigest) || errors.Is(err, imagepkg.ErrPayloadSize) || errors.Is(err, imagepkg.ErrTruncated) || errors.Is(err, imagepkg.ErrTrailingData) {
			return fmt.Errorf("%w: payload of package %s: %w", ErrDigest, pi.BlobDigest, err)
		}
		return fmt.Errorf("device: writing slot %s: %w", pi.Slot, err)
	}
	return finishSlot(w, pi)
}

// writeDelta applies a verified delta to the committed slot.
func (d *Device) writeDelta(ctx context.Context, blob *stagedBlob, pi PlannedImage, base InstalledImage, buf []byte) error {
	h, err := delta.ReadHeader(blob.reader())
	if err != nil {
		return fmt.Errorf("%w: delta %s: %w", ErrDigest, pi.BlobDigest, err)
	}
	if h.OldDigest() != base.PayloadDigest || h.OldSize != base.PayloadSize {
		return fmt.Errorf("%w: %w: delta %s applies to %s, the installed image is %s", ErrBaseMismatch, delta.ErrWrongBase, pi.BlobDigest, h.OldDigest(), base.PayloadDigest)
	}
	if h.NewDigest() != pi.PayloadDigest || h.NewSize != pi.PayloadSize {
		return fmt.Errorf("%w: delta %s produces %s, the release lists %s", ErrNotListed, pi.BlobDigest, h.NewDigest(), pi.PayloadDigest)
	}
	if m := h.MaxApplyMemory(); m > d.cfg.Limits.MaxDeltaMemory {
		return fmt.Errorf("%w: delta %s needs %d bytes of memory to apply, the device allows %d (Limits.MaxDeltaMemory)", ErrTooLarge, pi.BlobDigest, m, d.cfg.Limits.MaxDeltaMemory)
	}
	old, err := d.cfg.Slots.OpenRead(ctx, pi.Component, base.Slot)
	if err != nil {
		return err
	}
	defer old.Close()
	w, err := d.cfg.Slots.OpenWrite(ctx, pi.Component, pi.Slot)
	if err != nil {
		return err
	}
	out := &progressWriter{w: io.NewOffsetWriter(w, 0), d: d, component: pi.Component, phase: PhaseWrite, total: pi.PayloadSize}
	if _, err := delta.Apply(ctx, old, base.PayloadSize, blob.reader(), out); err != nil {
		w.Close()
		switch {
		case errors.Is(err, delta.ErrWrongBase):
			return fmt.Errorf("%w: slot %s: %w", ErrBaseMismatch, base.Slot, err)
		case errors.Is(err, delta.ErrRejected):
			return fmt.Errorf("%w: delta %s: %w", ErrDigest, pi.BlobDigest, err)
		}
		return fmt.Errorf("device: applying delta %s: %w", pi.BlobDigest, err)
	}
	return finishSlot(w, pi)
}

func finishSlot(w SlotWriter, pi PlannedImage) error {
	if err := w.Truncate(pi.PayloadSize); err != nil {
		w.Close()
		return fmt.Errorf("device: slot %s: %w", pi.Slot, err)
	}
	if err := w.Sync(); err != nil {
		w.Close()
		return fmt.Errorf("device: syncing slot %s: %w", pi.Slot, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("device: closing slot %s: %w", pi.Slot, err)
	}
	return nil
}

// verifySlot reads a slot back and checks the image's digest.
func (d *Device) verifySlot(ctx context.Context, component, slot, digest string, size int64, buf []byte) error {
	r, err := d.cfg.Slots.OpenRead(ctx, component, slot)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	n, err := copyCtx(ctx, &progressWriter{w: h, d: d, component: component, phase: PhaseVerify, total: size}, io.NewSectionReader(r, 0, size), buf)
	if err != nil {
		return fmt.Errorf("device: reading slot %s of %s: %w", slot, component, err)
	}
	if n != size {
		return fmt.Errorf("%w: slot %s of %s holds %d bytes, want %d", ErrDigest, slot, component, n, size)
	}
	if got := spec.HashDigest(h).String(); got != digest {
		return fmt.Errorf("%w: slot %s of %s holds %s, want %s", ErrDigest, slot, component, got, digest)
	}
	return nil
}

// copyCtx is io.CopyBuffer that checks ctx between chunks and never uses
// ReaderFrom/WriterTo (so buf bounds the memory).
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
