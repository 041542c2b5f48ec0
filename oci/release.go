package oci

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/manifest"
)

// This file is the mapping between a signed release (manifest.Release) and
// its OCI artifact (docs/FORMAT.md, "OCI mapping"): which layers a release
// publishes with which media types and annotations, which files a puller
// fetches for a device, and the deltas attached to a release later. It
// makes no security decision: the caller verifies the release envelope
// first, and every blob is fetched by the digest and size it signs.

// ReleaseFiles returns the layers that publish what rel lists, without
// their Path: each image package (MediaTypePackage), then each delta
// listed for it (MediaTypeDelta), a blob listed twice once, each with its
// Digest and Size and annotations naming the component (and for deltas
// the payloads they turn one into the other).
func ReleaseFiles(rel *manifest.Release) []File {
	var files []File
	seen := map[string]bool{}
	add := func(f File) {
		if !seen[f.Digest] {
			seen[f.Digest] = true
			files = append(files, f)
		}
	}
	for _, img := range rel.Images {
		add(File{MediaType: MediaTypePackage, Digest: img.Package.Digest, Size: img.Package.Size,
			Annotations: map[string]string{AnnotationComponent: img.Component, AnnotationVersion: img.Version}})
		for _, d := range img.Deltas {
			add(File{MediaType: MediaTypeDelta, Digest: d.Digest, Size: d.Size,
				Annotations: map[string]string{AnnotationComponent: img.Component,
					AnnotationDeltaFrom: d.FromPayloadDigest, AnnotationDeltaTo: img.Payload.Digest}})
		}
	}
	return files
}

// CollectRelease returns what Push publishes for the release envelope at
// envPath: envelope, the file's content as the caller read it (and
// verified: nothing is verified here), with rel parsed from it, and every
// package and delta rel lists, found by digest among the other regular
// files of envPath's directory (partial downloads excluded). A file whose
// size is that of
// exactly one listed blob, and the only file of that size, is taken
// without hashing (its bytes are checked against the digest while they
// upload, and a mismatch fails the push); otherwise candidates are hashed.
// Files rel lists that dir does not hold are an error naming each.
func CollectRelease(ctx context.Context, envPath string, envelope []byte, rel *manifest.Release) (Release, error) {
	dir := filepath.Dir(envPath)
	files := ReleaseFiles(rel)
	found, err := findFiles(ctx, dir, filepath.Base(envPath), files)
	if err != nil {
		return Release{}, err
	}
	out := Release{Envelope: envelope, EnvelopeTitle: DefaultEnvelopeTitle, Product: rel.Product, Version: rel.Version, Created: rel.Created}
	var missing []string
	for _, f := range files {
		p, ok := found[f.Digest]
		if !ok {
			what := "package of " + f.Annotations[AnnotationComponent]
			if f.MediaType == MediaTypeDelta {
				what = "delta of " + f.Annotations[AnnotationComponent] + " from " + f.Annotations[AnnotationDeltaFrom]
			}
			missing = append(missing, fmt.Sprintf("%s (%s, %d bytes)", f.Digest, what, f.Size))
			continue
		}
		f.Path = p
		out.Files = append(out.Files, f)
	}
	if len(missing) > 0 {
		return Release{}, fmt.Errorf("%w: %s lists files not found in %s:\n  %s", ErrBadFile, envPath, dir, strings.Join(missing, "\n  "))
	}
	return out, nil
}

// findFiles maps the digest of each wanted file to a regular file of dir,
// other than skip, holding it (see CollectRelease).
func findFiles(ctx context.Context, dir, skip string, wants []File) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	wantBySize := map[int64][]string{}
	for _, f := range wants {
		wantBySize[f.Size] = append(wantBySize[f.Size], f.Digest)
	}
	bySize := map[int64][]string{}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == skip || strings.HasSuffix(e.Name(), PartialSuffix) {
			continue
		}
		if fi, err := e.Info(); err == nil && wantBySize[fi.Size()] != nil {
			bySize[fi.Size()] = append(bySize[fi.Size()], filepath.Join(dir, e.Name()))
		}
	}
	found := map[string]string{}
	for size, paths := range bySize {
		if len(paths) == 1 && len(wantBySize[size]) == 1 {
			found[wantBySize[size][0]] = paths[0]
			continue
		}
		for _, p := range paths {
			d, _, err := hashFile(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("hashing %s: %w", p, err)
			}
			if found[d] == "" {
				found[d] = p
			}
		}
	}
	return found, nil
}

// DeltaFiles describes patch files to attach to the published release rel
// (Attach): each must produce the payload of one of rel's images (an error
// wrapping manifest.ErrNotListed otherwise); its annotations name that
// component and the payloads from its header.
func DeltaFiles(rel *manifest.Release, paths []string) ([]File, error) {
	var files []File
	for _, p := range paths {
		info, err := delta.InspectFile(p)
		if err != nil {
			return nil, err
		}
		var img *manifest.Image
		for i := range rel.Images {
			if rel.Images[i].Payload.Digest == info.NewDigest() {
				img = &rel.Images[i]
			}
		}
		if img == nil {
			return nil, fmt.Errorf("%w: %s produces payload %s, which no image of release %s version %d has",
				manifest.ErrNotListed, p, info.NewDigest(), rel.Product, rel.Version)
		}
		files = append(files, File{Path: p, MediaType: MediaTypeDelta, Digest: info.Digest, Size: info.Size,
			Annotations: map[string]string{AnnotationComponent: img.Component,
				AnnotationDeltaFrom: info.OldDigest(), AnnotationDeltaTo: info.NewDigest()}})
	}
	return files, nil
}

// AttachedDelta is a delta layer of a deltas artifact attached to a
// release (Attach). Nothing about it is signed: a device may use it only
// as device.Plan.UseDelta allows, checking its result against the signed
// payload digest.
type AttachedDelta struct {
	Component string
	From, To  string // payload digests: what it applies to, what it makes
	Digest    string
	Size      int64
	Title     string // the layer title ("" if none)
}

// AttachedDeltas are the deltas attached to one release.
type AttachedDeltas []AttachedDelta

// ListAttachedDeltas returns the delta layers of every deltas artifact
// attached to the release at target (Referrers), in referrer order.
func ListAttachedDeltas(ctx context.Context, target string, opts *Options) (AttachedDeltas, error) {
	arts, err := Referrers(ctx, target, opts)
	if err != nil {
		return nil, err
	}
	var out AttachedDeltas
	for _, a := range arts {
		for _, b := range a.Layers {
			if b.MediaType != MediaTypeDelta {
				continue
			}
			out = append(out, AttachedDelta{Component: b.Annotations[AnnotationComponent], From: b.Annotations[AnnotationDeltaFrom],
				To: b.Annotations[AnnotationDeltaTo], Digest: b.Digest, Size: b.Size, Title: b.Title})
		}
	}
	return out, nil
}

// Find returns the first delta from payload from to payload to of 1 to
// maxSize bytes (a delta larger than the full package is never worth it).
func (ds AttachedDeltas) Find(from, to string, maxSize int64) (AttachedDelta, bool) {
	for _, d := range ds {
		if d.From == from && d.To == to && d.Size > 0 && d.Size <= maxSize {
			return d, true
		}
	}
	return AttachedDelta{}, false
}

// FindDelta is Find for device.Plan.UseDeltas (device.DeltaFinder).
func (ds AttachedDeltas) FindDelta(from, to string, maxSize int64) (digest string, size int64, ok bool) {
	d, ok := ds.Find(from, to, maxSize)
	return d.Digest, d.Size, ok
}
