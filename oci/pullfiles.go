package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/spec"
)

// Want selects the files of a release a puller fetches (PlanFiles).
type Want struct {
	// Only lists the components to fetch; nil fetches all.
	Only []string
	// From is the payload or package digest the puller already holds.
	// When set, each component's file is the delta from it (listed in the
	// release, else attached to it later), else the full package; a
	// component already at From needs nothing. When empty: every package
	// and every listed delta.
	From string
}

// PullFile is one file of a release to fetch.
type PullFile struct {
	Component string
	What      string // "package", "delta" or "attached delta"
	Digest    string
	Size      int64
	// Name is the file name to write it under, made from the signed
	// release only (never from a layer title, which nothing signs):
	// COMPONENT-VERSION.upk for a package (COMPONENT-VERSION.bin for an
	// MCUboot image: manifest.Image.IsMCUboot), and
	// COMPONENT-VERSION-from-HEX12.delta for a delta, HEX12 the first 12
	// hex digits of the payload digest it applies to. Names are safe
	// (spec.CheckName, spec.CheckSemver) and distinct within a release.
	Name string
}

// PullPlan is what PlanFiles chose.
type PullPlan struct {
	Files    []PullFile
	UpToDate []string // components already at Want.From
	Size     int64    // bytes of all Files
}

// PlanFiles lists the files of the pulled release that w asks for. rel is
// the release p.Envelope carries, parsed (and verified, by a careful
// caller); only its digests and sizes are trusted. Each file must be a
// layer of the artifact with the size rel signs (an attached delta, a
// layer of a referrer). A component of w.Only that rel lacks is an error
// wrapping manifest.ErrNotListed. Attached deltas are looked up (one
// Referrers call) only when w.From needs them.
func (p *PulledRelease) PlanFiles(ctx context.Context, rel *manifest.Release, w Want, opts *Options) (*PullPlan, error) {
	for _, comp := range w.Only {
		if _, ok := rel.Image(comp); !ok {
			return nil, fmt.Errorf("%w: release %s version %d has no component %s", manifest.ErrNotListed, rel.Product, rel.Version, comp)
		}
	}
	plan := &PullPlan{}
	var attached AttachedDeltas
	attachedLoaded := false
	for i := range rel.Images {
		img := &rel.Images[i]
		switch {
		case len(w.Only) > 0 && !slices.Contains(w.Only, img.Component):
		case w.From == "":
			plan.Files = append(plan.Files, packageFile(img))
			for _, d := range img.Deltas {
				plan.Files = append(plan.Files, listedDeltaFile(img, d))
			}
		case w.From == img.Payload.Digest || w.From == img.Package.Digest:
			plan.UpToDate = append(plan.UpToDate, img.Component)
		default:
			if d, ok := deltaFrom(img, w.From); ok {
				plan.Files = append(plan.Files, listedDeltaFile(img, *d))
				continue
			}
			if !attachedLoaded {
				attachedLoaded = true
				var err error
				if attached, err = ListAttachedDeltas(ctx, p.Target.String(), opts); err != nil {
					return nil, err
				}
			}
			if d, ok := attached.Find(w.From, img.Payload.Digest, img.Package.Size); ok {
				plan.Files = append(plan.Files, attachedDeltaFile(img, d))
				continue
			}
			plan.Files = append(plan.Files, packageFile(img))
		}
	}
	return plan, p.checkFiles(rel, plan)
}

// checkFiles checks that every file is in the artifact with the size rel
// signs, and refuses two files of one name.
func (p *PulledRelease) checkFiles(rel *manifest.Release, plan *PullPlan) error {
	for _, f := range plan.Files {
		b, ok := p.Blob(f.Digest)
		if !ok && f.What != "attached delta" {
			return fmt.Errorf("%w: %s lists %s %s, which the artifact at %s does not contain", ErrNotFound, rel.Product, f.What, f.Digest, p.Target)
		}
		if ok && b.Size != f.Size {
			return fmt.Errorf("%w: artifact at %s lists %s with %d bytes, the signed release says %d", ErrSizeMismatch, p.Target, f.Digest, b.Size, f.Size)
		}
		plan.Size += f.Size
	}
	seen := map[string]bool{DefaultEnvelopeTitle: true}
	for _, f := range plan.Files {
		if seen[f.Name] {
			return fmt.Errorf("%w: artifact at %s names two files %s", ErrBadFile, p.Target, f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// deltaFrom finds the listed delta from a payload or package digest.
func deltaFrom(img *manifest.Image, from string) (*manifest.Delta, bool) {
	if d, ok := img.DeltaFrom(from); ok {
		return d, true
	}
	for j := range img.Deltas {
		if img.Deltas[j].FromPackageDigest != "" && img.Deltas[j].FromPackageDigest == from {
			return &img.Deltas[j], true
		}
	}
	return nil, false
}

func packageFile(img *manifest.Image) PullFile {
	ext := "upk"
	if img.IsMCUboot() {
		ext = "bin"
	}
	return PullFile{Component: img.Component, What: "package", Digest: img.Package.Digest, Size: img.Package.Size,
		Name: fmt.Sprintf("%s-%s.%s", img.Component, img.Version, ext)}
}

func listedDeltaFile(img *manifest.Image, d manifest.Delta) PullFile {
	return PullFile{Component: img.Component, What: "delta", Digest: d.Digest, Size: d.Size, Name: deltaName(img, d.FromPayloadDigest)}
}

func attachedDeltaFile(img *manifest.Image, d AttachedDelta) PullFile {
	return PullFile{Component: img.Component, What: "attached delta", Digest: d.Digest, Size: d.Size, Name: deltaName(img, d.From)}
}

func deltaName(img *manifest.Image, from string) string {
	return fmt.Sprintf("%s-%s-from-%s.delta", img.Component, img.Version, from[7:19])
}

// FetchFiles writes the release envelope to dir/release.json and fetches
// each file into dir with FetchFile (resumable, verified by digest and
// size). It never replaces a file: one already there with the content
// asked for (an earlier pull of the same release) is kept and not fetched
// again, one with other content is an error wrapping ErrExists. It
// returns the paths of the release's files, the envelope's first.
// progress, if not nil, is called with the bytes held so far and their
// total.
func (p *PulledRelease) FetchFiles(ctx context.Context, dir string, files []PullFile, progress func(done, total int64)) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	envPath := filepath.Join(dir, DefaultEnvelopeTitle)
	if err := writeNew(envPath, p.Envelope); err != nil {
		return nil, err
	}
	written := []string{envPath}
	var total, done int64
	for _, f := range files {
		total += f.Size
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if same, err := holds(ctx, path, f.Digest, f.Size); err != nil || same {
			if err != nil {
				return written, fmt.Errorf("%s %s: %w", f.What, f.Name, err)
			}
			done += f.Size
			written = append(written, path)
			continue
		}
		var fp func(int64)
		if progress != nil {
			base := done
			fp = func(n int64) { progress(base+n, total) }
		}
		if err := FetchFile(ctx, p.Source, f.Digest, f.Size, path, fp); err != nil {
			return written, fmt.Errorf("%s %s: %w", f.What, f.Name, err)
		}
		done += f.Size
		written = append(written, path)
	}
	return written, nil
}

// holds reports whether path already holds the blob digest of size bytes:
// false if there is no such file, an error wrapping ErrExists if there is
// something else.
func holds(ctx context.Context, path, digest string, size int64) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Mode().IsRegular() && fi.Size() == size {
		if d, _, err := hashFile(ctx, path); err == nil && d == digest {
			return true, nil
		}
	}
	return false, fmt.Errorf("%w: %s holds something else than %s", ErrExists, path, digest)
}

// writeNew writes data to a new file path, atomically, or accepts a file
// already holding exactly data; it never replaces another.
func writeNew(path string, data []byte) error {
	if old, err := spec.ReadFile(path, int64(len(data))); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := createTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = renameNoReplace(tmp.Name(), path)
	}
	return err
}

// createTemp creates a new file in dir whose name starts with prefix, with
// mode 0644 less the umask, as the files pulled beside it get (the
// envelope is published data; os.CreateTemp would make it 0600).
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) && try < 100 {
			continue
		}
		return f, err
	}
}

// renameNoReplace moves oldpath to newpath unless newpath exists
// (ErrExists): a hard link, which fails on an existing name, then the
// removal of oldpath; where hard links are not supported (FAT, say), a
// check then a rename. The directory is synced.
func renameNoReplace(oldpath, newpath string) error {
	err := os.Link(oldpath, newpath)
	switch {
	case err == nil:
		os.Remove(oldpath)
	case errors.Is(err, os.ErrExist):
		return fmt.Errorf("%w: %s", ErrExists, newpath)
	default:
		if _, serr := os.Lstat(newpath); serr == nil {
			return fmt.Errorf("%w: %s", ErrExists, newpath)
		}
		if err := os.Rename(oldpath, newpath); err != nil {
			return fmt.Errorf("oci: %w", err)
		}
	}
	if err := atomicfile.SyncDir(filepath.Dir(newpath)); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return nil
}
