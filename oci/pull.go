package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/upkit/upkit/spec"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Blob describes one layer of an artifact, as its manifest lists it.
type Blob struct {
	Digest    string
	Size      int64
	MediaType string
	// Title is the org.opencontainers.image.title annotation ("" if none);
	// when present it has passed ValidTitle.
	Title       string
	Annotations map[string]string
}

// Artifact is an upkit release or deltas referrer as found in a registry or
// layout. Nothing in it is signed: the release envelope is the only thing to
// trust, after verification.
type Artifact struct {
	// Target is where it was found, with Digest set and no tag.
	Target Target
	// Digest and Size of the manifest.
	Digest string
	Size   int64
	// MediaType of the manifest (always the OCI image manifest).
	MediaType    string
	ArtifactType string
	Annotations  map[string]string
	// Subject is the digest of the manifest this one refers to, or "".
	Subject string
	Layers  []Blob
	// Manifest is the raw manifest.
	Manifest []byte
}

func (a *Artifact) descriptor() v1.Descriptor {
	h, _ := v1.NewHash(a.Digest)
	return v1.Descriptor{MediaType: types.MediaType(a.MediaType), Size: a.Size, Digest: h, ArtifactType: a.ArtifactType}
}

// EnvelopeBlob returns the release envelope layer of a release artifact.
func (a *Artifact) EnvelopeBlob() (Blob, error) {
	for _, b := range a.Layers {
		if b.MediaType == MediaTypeRelease {
			return b, nil
		}
	}
	return Blob{}, fmt.Errorf("%w: %s has no %s layer", ErrNotRelease, a.Target, MediaTypeRelease)
}

// Blob returns the layer with the given digest.
func (a *Artifact) Blob(digest string) (Blob, bool) {
	for _, b := range a.Layers {
		if b.Digest == digest {
			return b, true
		}
	}
	return Blob{}, false
}

// Resolve fetches the manifest target points to (a tag or digest; a bare
// repository means tag "latest") and checks it is an upkit artifact: an OCI
// image manifest with artifactType ArtifactTypeRelease (exactly one envelope
// layer) or ArtifactTypeDeltas (a subject, delta layers). Anything else
// fails with ErrNotRelease, naming what was found.
func Resolve(ctx context.Context, target string, opts *Options) (*Artifact, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	return resolve(ctx, t, o)
}

func resolve(ctx context.Context, t Target, o Options) (*Artifact, error) {
	if t.Tag == "" && t.Digest == "" {
		t.Tag = "latest"
	}
	raw, mt, err := fetchManifest(ctx, t, o)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	digest := spec.Digest(sum).String()
	if t.Digest != "" && t.Digest != digest {
		return nil, fmt.Errorf("%w: manifest %s hashes to %s", ErrDigestMismatch, t, digest)
	}
	a, err := parseArtifact(raw, mt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	a.Target = t.WithDigest(digest)
	a.Digest = digest
	return a, nil
}

// parseArtifact checks raw is an upkit artifact manifest. mediaType is what
// the registry or index said ("" if unknown).
func parseArtifact(raw []byte, mediaType string) (*Artifact, error) {
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes, at most %d", ErrTooLarge, len(raw), MaxManifestSize)
	}
	var m struct {
		SchemaVersion int64             `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        *v1.Descriptor    `json:"config"`
		Layers        []v1.Descriptor   `json:"layers"`
		Manifests     json.RawMessage   `json:"manifests"`
		Subject       *v1.Descriptor    `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest is not JSON: %v", ErrNotRelease, err)
	}
	if mediaType == "" {
		mediaType = m.MediaType
	}
	what := m.ArtifactType
	if what == "" && m.Config != nil {
		what = string(m.Config.MediaType)
	}
	if mediaType != string(types.OCIManifestSchema1) || m.SchemaVersion != 2 || m.Config == nil ||
		(m.ArtifactType != ArtifactTypeRelease && m.ArtifactType != ArtifactTypeDeltas) {
		desc := mediaType
		if what != "" {
			desc += " of type " + what
		}
		if m.Manifests != nil {
			desc += " (an index, e.g. a multi-platform container image)"
		}
		return nil, fmt.Errorf("%w: found %s, want an OCI manifest with artifactType %s", ErrNotRelease, desc, ArtifactTypeRelease)
	}
	if len(m.Layers) > MaxLayers {
		return nil, fmt.Errorf("%w: %d layers, at most %d", ErrTooLarge, len(m.Layers), MaxLayers)
	}
	// Copying an artifact reads its config blob whole, up to this size.
	if m.Config.Size < 0 || m.Config.Size > MaxManifestSize {
		return nil, fmt.Errorf("%w: config of %d bytes, at most %d", ErrTooLarge, m.Config.Size, MaxManifestSize)
	}
	a := &Artifact{MediaType: mediaType, ArtifactType: m.ArtifactType, Annotations: m.Annotations, Manifest: raw,
		Size: int64(len(raw))}
	if m.Subject != nil {
		a.Subject = m.Subject.Digest.String()
		if err := CheckDigest(a.Subject); err != nil {
			return nil, fmt.Errorf("%w: subject: %v", ErrNotRelease, err)
		}
	}
	envelopes, err := a.addLayers(m.Layers)
	if err != nil {
		return nil, err
	}
	switch a.ArtifactType {
	case ArtifactTypeRelease:
		if envelopes != 1 {
			return nil, fmt.Errorf("%w: %d %s layers, want exactly 1", ErrNotRelease, envelopes, MediaTypeRelease)
		}
	case ArtifactTypeDeltas:
		if a.Subject == "" {
			return nil, fmt.Errorf("%w: deltas artifact without a subject", ErrNotRelease)
		}
	}
	return a, nil
}

// addLayers checks the layer descriptors of a manifest (digests, sizes,
// titles: plain file names, distinct) and appends them to a.Layers; it
// returns how many hold a release envelope.
func (a *Artifact) addLayers(layers []v1.Descriptor) (envelopes int, err error) {
	titles := map[string]bool{}
	for i, l := range layers {
		b := Blob{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType), Annotations: l.Annotations,
			Title: l.Annotations[AnnotationTitle]}
		if err := CheckDigest(b.Digest); err != nil {
			return 0, fmt.Errorf("%w: layer %d: %v", ErrNotRelease, i, err)
		}
		if b.Size < 0 {
			return 0, fmt.Errorf("%w: layer %d: negative size", ErrNotRelease, i)
		}
		if b.Title != "" {
			if err := ValidTitle(b.Title); err != nil {
				return 0, fmt.Errorf("%w: layer %d: %v", ErrNotRelease, i, err)
			}
			if titles[b.Title] {
				return 0, fmt.Errorf("%w: layer %d: title %q used twice", ErrNotRelease, i, b.Title)
			}
			titles[b.Title] = true
		}
		if b.MediaType == MediaTypeRelease {
			envelopes++
		}
		a.Layers = append(a.Layers, b)
	}
	return envelopes, nil
}

// fetchManifest returns the raw manifest and its media type.
func fetchManifest(ctx context.Context, t Target, o Options) ([]byte, string, error) {
	if t.IsLayout() {
		return layoutManifest(t)
	}
	var ref name.Reference = t.Repo.Tag(t.Tag)
	if t.Digest != "" {
		ref = t.Repo.Digest(t.Digest)
	}
	d, err := remote.Get(ref, o.remoteOptions(ctx)...)
	if err != nil {
		return nil, "", registryError(t.Registry(), "fetching manifest "+t.String()+" from", err)
	}
	return d.Manifest, string(d.MediaType), nil
}

// PulledRelease is a release artifact with its envelope fetched and its
// digest checked.
type PulledRelease struct {
	*Artifact
	// Envelope is the DSSE release envelope, byte for byte; not yet verified.
	Envelope []byte
	// Source reads the release's blobs (same connection and credentials).
	Source Source
}

// Pull resolves target, checks it is a release and fetches its envelope
// (at most MaxEnvelopeSize bytes, digest checked). Fetch packages and
// deltas with FetchFile and NewSource.
func Pull(ctx context.Context, target string, opts *Options) (*PulledRelease, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	a, err := resolve(ctx, t, o)
	if err != nil {
		return nil, err
	}
	if a.ArtifactType != ArtifactTypeRelease {
		return nil, fmt.Errorf("%w: %s is a %s artifact", ErrNotRelease, target, a.ArtifactType)
	}
	eb, err := a.EnvelopeBlob()
	if err != nil {
		return nil, err
	}
	src := newSource(t, o)
	env, err := ReadBlob(ctx, src, eb.Digest, eb.Size, MaxEnvelopeSize)
	if err != nil {
		return nil, fmt.Errorf("fetching the release envelope of %s: %w", a.Target, err)
	}
	return &PulledRelease{Artifact: a, Envelope: env, Source: src}, nil
}

// ReadBlob reads a whole small blob of the given size (at most limit bytes)
// from src into memory and checks its digest.
func ReadBlob(ctx context.Context, src Source, digest string, size, limit int64) ([]byte, error) {
	if size < 0 || size > limit {
		return nil, fmt.Errorf("%w: blob %s of %d bytes, at most %d read into memory", ErrTooLarge, digest, size, limit)
	}
	rc, err := src.Open(ctx, digest, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rc, size+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) != size {
		return nil, fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrSizeMismatch, digest, buf.Len(), size)
	}
	return buf.Bytes(), nil
}

// NewSource returns the Source for target's repository or layout.
func NewSource(target string, opts *Options) (Source, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	return newSource(t, o), nil
}

func newSource(t Target, o Options) Source {
	if t.IsLayout() {
		return NewLayoutSource(t.Layout)
	}
	return &RegistrySource{t: t, opts: o}
}

// Tags lists the tags of target's repository (or layout), sorted, without
// the tags that only serve other tools: referrers fallback tags
// ("sha256-<hex>") and cosign signature tags ("sha256-<hex>.sig").
func Tags(ctx context.Context, target string, opts *Options) ([]string, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	var all []string
	if t.IsLayout() {
		all, err = layoutTags(t.Layout)
	} else {
		all, err = listTags(ctx, t, o)
		if err != nil {
			err = registryError(t.Registry(), "listing tags of "+t.Repo.Name()+" on", err)
		}
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, tag := range all {
		if !strings.HasPrefix(tag, "sha256-") {
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out, nil
}

// listTags pages through a registry's tag list, at most MaxTagPages pages
// and MaxTags tags (a registry could link pages forever).
func listTags(ctx context.Context, t Target, o Options) ([]string, error) {
	p, err := remote.NewPuller(o.remoteOptions(ctx)...)
	if err != nil {
		return nil, err
	}
	l, err := p.Lister(ctx, t.Repo)
	if err != nil {
		return nil, err
	}
	var all []string
	for pages := 0; l.HasNext(); pages++ {
		if pages == MaxTagPages {
			return nil, fmt.Errorf("%w: more than %d pages of tags", ErrTooLarge, MaxTagPages)
		}
		page, err := l.Next(ctx)
		if err != nil {
			return nil, err
		}
		if all = append(all, page.Tags...); len(all) > MaxTags {
			return nil, fmt.Errorf("%w: more than %d tags", ErrTooLarge, MaxTags)
		}
	}
	return all, nil
}

// Referrers returns the deltas artifacts attached to the release at target,
// sorted by digest. It uses the registry's referrers API, or the fallback
// tag scheme when the registry has none, or the layout's index.json.
func Referrers(ctx context.Context, target string, opts *Options) ([]*Artifact, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	subject, err := resolve(ctx, t, o)
	if err != nil {
		return nil, err
	}
	var descs []v1.Descriptor
	if t.IsLayout() {
		descs, err = layoutReferrers(t.Layout, subject.Digest)
	} else {
		ropts := append(o.remoteOptions(ctx), remote.WithFilter("artifactType", ArtifactTypeDeltas))
		var idx v1.ImageIndex
		idx, err = remote.Referrers(t.Repo.Digest(subject.Digest), ropts...)
		if err == nil {
			var im *v1.IndexManifest
			if im, err = idx.IndexManifest(); err == nil {
				descs = im.Manifests
			}
		}
		if err != nil {
			err = registryError(t.Registry(), "listing referrers of "+subject.Digest+" on", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(descs) > MaxLayers {
		return nil, fmt.Errorf("%w: %d referrers, at most %d", ErrTooLarge, len(descs), MaxLayers)
	}
	var out []*Artifact
	seen := map[string]bool{}
	for _, d := range descs {
		if d.ArtifactType != ArtifactTypeDeltas || seen[d.Digest.String()] {
			continue
		}
		seen[d.Digest.String()] = true
		a, err := resolve(ctx, t.WithDigest(d.Digest.String()), o)
		if err != nil {
			if errors.Is(err, ErrNotRelease) {
				continue // someone else's referrer with our artifactType: ignore
			}
			return nil, err
		}
		if a.ArtifactType != ArtifactTypeDeltas || a.Subject != subject.Digest {
			continue
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}
