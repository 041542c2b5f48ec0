package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/spec"
)

// openLayout opens the OCI image layout at dir, creating an empty one
// (oci-layout, index.json, blobs/) if dir has no index.json.
func openLayout(dir string) (layout.Path, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, os.ErrNotExist) {
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			return "", fmt.Errorf("oci: creating layout %s: %w", dir, err)
		}
		return p, nil
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return "", fmt.Errorf("oci: opening layout %s: %w", dir, err)
	}
	return p, nil
}

// layoutWrite writes img's blobs into the layout and lists it in
// index.json: under tag t.Tag (replacing what the tag named before), or
// untagged.
func layoutWrite(_ context.Context, t Target, img v1.Image, artifactType string) error {
	p, err := openLayout(t.Layout)
	if err != nil {
		return err
	}
	if err := p.WriteImage(img); err != nil {
		return fmt.Errorf("oci: writing to layout %s: %w", t.Layout, err)
	}
	var ann map[string]string
	if t.Tag != "" {
		ann = map[string]string{AnnotationRefName: t.Tag}
	}
	desc, err := imageDescriptor(img, artifactType, ann)
	if err != nil {
		return err
	}
	return updateLayoutIndex(t.Layout, desc, t.Tag)
}

// layoutSetTag lists desc in the layout's index.json under tag.
func layoutSetTag(dir string, desc v1.Descriptor, tag string) error {
	desc.Annotations = map[string]string{AnnotationRefName: tag}
	return updateLayoutIndex(dir, desc, tag)
}

// readLayoutIndex reads and bounds the layout's index.json.
func readLayoutIndex(dir string) (*v1.IndexManifest, error) {
	b, err := readLimited(filepath.Join(dir, "index.json"), MaxManifestSize)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s is not an OCI image layout (no index.json)", ErrNotFound, dir)
		}
		return nil, err
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("oci: %s/index.json: %w", dir, err)
	}
	if im.SchemaVersion != 2 {
		return nil, fmt.Errorf("oci: %s/index.json: schemaVersion %d, want 2", dir, im.SchemaVersion)
	}
	if len(im.Manifests) > 100*MaxLayers {
		return nil, fmt.Errorf("%w: %s/index.json lists %d manifests", ErrTooLarge, dir, len(im.Manifests))
	}
	return &im, nil
}

// updateLayoutIndex adds desc to index.json: replacing the entry tagged tag,
// or, untagged, unless an untagged entry for the same digest exists. The
// new index.json is written to a temporary file, synced and renamed.
func updateLayoutIndex(dir string, desc v1.Descriptor, tag string) error {
	im, err := readLayoutIndex(dir)
	if err != nil {
		return err
	}
	kept := im.Manifests[:0]
	for _, d := range im.Manifests {
		name := d.Annotations[AnnotationRefName]
		if tag != "" && name == tag {
			continue
		}
		if tag == "" && name == "" && d.Digest == desc.Digest {
			return nil // already listed
		}
		kept = append(kept, d)
	}
	im.Manifests = append(kept, desc)
	if im.MediaType == "" {
		im.MediaType = types.OCIImageIndex
	}
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return nil
}

// readLimited reads a small layout file (spec.ReadFile: a FIFO or device
// in a layout is refused without blocking), reporting one over limit as
// ErrTooLarge.
func readLimited(path string, limit int64) ([]byte, error) {
	b, err := spec.ReadFile(path, limit)
	if errors.Is(err, spec.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, path, limit)
	}
	return b, err
}

// layoutManifest returns the manifest t names (by tag through index.json,
// or by digest straight from blobs/) and its media type.
func layoutManifest(t Target) ([]byte, string, error) {
	digest, mt := t.Digest, ""
	if digest == "" {
		im, err := readLayoutIndex(t.Layout)
		if err != nil {
			return nil, "", err
		}
		for _, d := range im.Manifests {
			if d.Annotations[AnnotationRefName] == t.Tag {
				digest, mt = d.Digest.String(), string(d.MediaType)
			}
		}
		if digest == "" {
			return nil, "", fmt.Errorf("%w: no tag %q in layout %s", ErrNotFound, t.Tag, t.Layout)
		}
		if err := CheckDigest(digest); err != nil {
			return nil, "", fmt.Errorf("%s/index.json: %w", t.Layout, err)
		}
	}
	b, err := readLimited(filepath.Join(t.Layout, "blobs", "sha256", digest[7:]), MaxManifestSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: manifest %s in layout %s", ErrNotFound, digest, t.Layout)
	}
	if err != nil {
		return nil, "", err
	}
	if mt == "" {
		var m struct {
			MediaType string `json:"mediaType"`
		}
		_ = json.Unmarshal(b, &m)
		mt = m.MediaType
	}
	return b, mt, nil
}

// layoutTags lists the tags in the layout's index.json.
func layoutTags(dir string) ([]string, error) {
	im, err := readLayoutIndex(dir)
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, d := range im.Manifests {
		if n := d.Annotations[AnnotationRefName]; n != "" {
			tags = append(tags, n)
		}
	}
	return tags, nil
}

// layoutReferrers returns the index.json entries whose manifest has the
// given subject.
func layoutReferrers(dir, subject string) ([]v1.Descriptor, error) {
	im, err := readLayoutIndex(dir)
	if err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, d := range im.Manifests {
		if d.MediaType != types.OCIManifestSchema1 || d.ArtifactType != ArtifactTypeDeltas {
			continue
		}
		b, _, err := layoutManifest(Target{Layout: dir, Digest: d.Digest.String()})
		if err != nil {
			return nil, err
		}
		var m struct {
			Subject *v1.Descriptor `json:"subject"`
		}
		if json.Unmarshal(b, &m) == nil && m.Subject != nil && m.Subject.Digest.String() == subject {
			out = append(out, d)
		}
	}
	return out, nil
}

// layoutImage returns the artifact a as a v1.Image backed by the layout:
// its raw manifest (as resolved) and its layers streamed from blobs/, each
// opened only if it is a regular file and checked against its digest and
// size while it streams.
func layoutImage(dir string, a *Artifact) (v1.Image, error) {
	var m struct {
		Config v1.Descriptor `json:"config"`
	}
	if err := json.Unmarshal(a.Manifest, &m); err != nil || m.Config.Digest != emptyConfig().h {
		return nil, fmt.Errorf("%w: %s in layout %s: the config is not the empty descriptor", ErrNotRelease, a.Digest, dir)
	}
	art := &artifact{raw: a.Manifest, layers: make(map[v1.Hash]partial.CompressedLayer, len(a.Layers))}
	for _, b := range a.Layers {
		h, err := v1.NewHash(b.Digest)
		if err != nil {
			return nil, fmt.Errorf("oci: %w", err)
		}
		art.layers[h] = &fileLayer{path: filepath.Join(dir, "blobs", "sha256", h.Hex), digest: h, size: b.Size,
			mt: types.MediaType(b.MediaType), verify: true}
	}
	img, err := partial.CompressedToImage(art)
	if err != nil {
		return nil, fmt.Errorf("oci: reading %s from layout %s: %w", a.Digest, dir, err)
	}
	return img, nil
}
