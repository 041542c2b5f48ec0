package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upkit/upkit/spec"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one local file to publish as a layer. It is streamed from disk
// while uploading, never read into memory whole.
type File struct {
	// Path is the local file; it must be a regular file.
	Path string
	// MediaType is the layer media type, e.g. MediaTypePackage or
	// MediaTypeDelta.
	MediaType string
	// Title is the org.opencontainers.image.title annotation: the file name
	// a puller writes it to. Default: the base name of Path. It must be a
	// plain file name (no separators, not "." or "..").
	Title string
	// Digest is the expected "sha256:<hex>" of the file. If set, the bytes
	// are checked against it while they stream (a mismatch fails the push
	// with ErrDigestMismatch); if empty, the file is hashed once first.
	Digest string
	// Size is the expected size; 0 means take it from the file.
	Size int64
	// Annotations are extra layer annotations (e.g. AnnotationComponent).
	Annotations map[string]string
}

// Release is what Push publishes: the signed envelope verbatim plus the
// files it lists. Product, Version and Created become manifest annotations
// (hints for people and tools; the envelope is the signed truth).
type Release struct {
	// Envelope is the DSSE release envelope, published byte for byte.
	Envelope []byte
	// EnvelopeTitle is its file name (default "release.json").
	EnvelopeTitle string
	Product       string
	Version       uint64
	Created       time.Time
	// Files are the packages and deltas, in the order they become layers.
	Files []File
}

// DefaultEnvelopeTitle is the file name of the release envelope layer.
const DefaultEnvelopeTitle = "release.json"

// ValidTitle reports whether title is acceptable as a layer title, i.e. as a
// file name a puller may create: a single local path element.
func ValidTitle(title string) error {
	switch {
	case title == "", title == ".", title == "..":
		return fmt.Errorf("%w: title %q is not a file name", ErrBadFile, title)
	case len(title) > MaxTitleLen:
		return fmt.Errorf("%w: title longer than %d bytes", ErrBadFile, MaxTitleLen)
	case !utf8.ValidString(title), strings.ContainsAny(title, "/\\\x00"), !filepath.IsLocal(title):
		return fmt.Errorf("%w: title %q is not a plain file name", ErrBadFile, title)
	}
	for _, r := range title {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: title %q contains a control character", ErrBadFile, title)
		}
	}
	return nil
}

// fileLayer is a v1.Layer whose bytes stream from a file. With verify set
// they are checked against the digest and size it was described with while
// they stream; without (registry pushes), the registry checks the digest on
// commit and refuses a mismatch (DIGEST_INVALID, mapped to
// ErrDigestMismatch), which spares a second sha256 pass on the client.
type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
	mt     types.MediaType
	verify bool
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// Compressed opens the file; the reader fails at EOF with ErrDigestMismatch
// or ErrSizeMismatch if the file changed since it was described.
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := spec.OpenRegular(l.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	if !l.verify {
		return &sizedReader{f: f, size: l.size, path: l.path}, nil
	}
	return newVerifyReader(f, l.digest.String(), l.size, l.path), nil
}

// sizedReader yields at most size bytes of a file and fails at EOF if the
// file turned out shorter or longer (it changed after it was described).
type sizedReader struct {
	f    *os.File
	size int64
	n    int64
	path string
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if rem := s.size + 1 - s.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := s.f.Read(p)
	s.n += int64(n)
	if s.n > s.size {
		return 0, fmt.Errorf("%w: %s is longer than %d bytes", ErrSizeMismatch, s.path, s.size)
	}
	if err == io.EOF && s.n != s.size {
		return n, fmt.Errorf("%w: %s has %d bytes, want %d", ErrSizeMismatch, s.path, s.n, s.size)
	}
	return n, err
}

func (s *sizedReader) Close() error { return s.f.Close() }

// verifyReader passes bytes through, hashing them, and turns EOF into an
// error if the total size or sha256 differs from what was expected. It never
// yields more than size bytes.
type verifyReader struct {
	rc     io.ReadCloser
	h      hash.Hash
	want   string
	size   int64
	n      int64
	what   string
	closed bool
}

func newVerifyReader(rc io.ReadCloser, digest string, size int64, what string) *verifyReader {
	return &verifyReader{rc: rc, h: sha256.New(), want: digest, size: size, what: what}
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if rem := v.size + 1 - v.n; int64(len(p)) > rem {
		p = p[:rem] // read at most one byte past size to detect overlong blobs
	}
	n, err := v.rc.Read(p)
	v.n += int64(n)
	if v.n > v.size {
		return 0, fmt.Errorf("%w: %s is longer than %d bytes", ErrSizeMismatch, v.what, v.size)
	}
	v.h.Write(p[:n])
	if err == io.EOF {
		if v.n != v.size {
			return n, fmt.Errorf("%w: %s has %d bytes, want %d", ErrSizeMismatch, v.what, v.n, v.size)
		}
		if got := spec.HashDigest(v.h).String(); got != v.want {
			return n, fmt.Errorf("%w: %s has %s, want %s", ErrDigestMismatch, v.what, got, v.want)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }

// hashFile returns the sha256 digest and size of the file at path,
// honouring ctx between reads.
func hashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return "", 0, err
	}
	return spec.HashDigest(h).String(), n, nil
}

// HashFile returns the "sha256:<hex>" digest and the size of a file.
func HashFile(ctx context.Context, path string) (digest string, size int64, err error) {
	return hashFile(ctx, path)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// describeFile checks f and returns its layer and descriptor; verify as in
// fileLayer.
func describeFile(ctx context.Context, f File, verify bool) (*fileLayer, v1.Descriptor, error) {
	fail := func(format string, a ...any) (*fileLayer, v1.Descriptor, error) {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: %s: %s", ErrBadFile, f.Path, fmt.Sprintf(format, a...))
	}
	if f.MediaType == "" {
		return fail("no media type")
	}
	title := f.Title
	if title == "" {
		title = filepath.Base(f.Path)
	}
	if err := ValidTitle(title); err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	fi, err := os.Stat(f.Path)
	if err != nil {
		return fail("%v", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file")
	}
	if f.Size != 0 && f.Size != fi.Size() {
		return nil, v1.Descriptor{}, fmt.Errorf("%w: %s has %d bytes, want %d", ErrSizeMismatch, f.Path, fi.Size(), f.Size)
	}
	digest := f.Digest
	if digest == "" {
		d, n, err := hashFile(ctx, f.Path)
		if err != nil {
			return fail("%v", err)
		}
		if n != fi.Size() {
			return fail("changed while hashing")
		}
		digest = d
	} else if err := CheckDigest(digest); err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return fail("%v", err)
	}
	ann := map[string]string{AnnotationTitle: title}
	for k, v := range f.Annotations {
		if k != AnnotationTitle {
			ann[k] = v
		}
	}
	// A digest computed here needs no second check while streaming.
	l := &fileLayer{path: f.Path, digest: h, size: fi.Size(), mt: types.MediaType(f.MediaType), verify: verify && f.Digest != ""}
	return l, v1.Descriptor{MediaType: l.mt, Size: l.size, Digest: h, Annotations: ann}, nil
}

// bytesLayer is a small in-memory blob (the envelope, the empty config).
type bytesLayer struct {
	b  []byte
	h  v1.Hash
	mt types.MediaType
}

func newBytesLayer(b []byte, mt string) *bytesLayer {
	sum := sha256.Sum256(b)
	return &bytesLayer{b: b, mt: types.MediaType(mt), h: v1.Hash{Algorithm: "sha256", Hex: spec.Digest(sum).Hex()}}
}

func (l *bytesLayer) Digest() (v1.Hash, error)            { return l.h, nil }
func (l *bytesLayer) DiffID() (v1.Hash, error)            { return l.h, nil }
func (l *bytesLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l *bytesLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l *bytesLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// artifact is the small core go-containerregistry's partial package turns
// into a v1.Image: a raw manifest, the empty config, and layers by digest.
type artifact struct {
	raw    []byte
	layers map[v1.Hash]partial.CompressedLayer
}

func (a *artifact) RawManifest() ([]byte, error)        { return a.raw, nil }
func (a *artifact) RawConfigFile() ([]byte, error)      { return []byte(EmptyJSON), nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	if h == emptyConfig().h {
		return emptyConfig(), nil
	}
	return nil, fmt.Errorf("%w: layer %s not in this artifact", ErrNotFound, h)
}

func emptyConfig() *bytesLayer { return newBytesLayer([]byte(EmptyJSON), MediaTypeEmpty) }

// buildArtifact assembles an image-spec 1.1 artifact manifest with the empty
// config, the given layers and annotations, and an optional subject.
func buildArtifact(artifactType string, layers []partial.CompressedLayer, descs []v1.Descriptor,
	annotations map[string]string, subject *v1.Descriptor) (v1.Image, error) {
	if len(descs) > MaxLayers {
		return nil, fmt.Errorf("%w: %d layers, at most %d", ErrTooLarge, len(descs), MaxLayers)
	}
	cfg := emptyConfig()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        v1.Descriptor{MediaType: cfg.mt, Size: int64(len(cfg.b)), Digest: cfg.h},
		Layers:        descs,
		Annotations:   annotations,
		Subject:       subject,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("oci: encoding manifest: %w", err)
	}
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes, at most %d", ErrTooLarge, len(raw), MaxManifestSize)
	}
	a := &artifact{raw: raw, layers: make(map[v1.Hash]partial.CompressedLayer, len(layers))}
	for i, l := range layers {
		a.layers[descs[i].Digest] = l
	}
	return partial.CompressedToImage(a)
}

// releaseImage builds the release artifact for r.
func releaseImage(ctx context.Context, r Release, verify bool) (v1.Image, error) {
	if len(r.Envelope) == 0 {
		return nil, fmt.Errorf("%w: release has no envelope", ErrBadFile)
	}
	if len(r.Envelope) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope of %d bytes, at most %d", ErrTooLarge, len(r.Envelope), MaxEnvelopeSize)
	}
	title := r.EnvelopeTitle
	if title == "" {
		title = DefaultEnvelopeTitle
	}
	if err := ValidTitle(title); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	env := newBytesLayer(r.Envelope, MediaTypeRelease)
	layers := []partial.CompressedLayer{env}
	descs := []v1.Descriptor{{MediaType: env.mt, Size: int64(len(env.b)), Digest: env.h,
		Annotations: map[string]string{AnnotationTitle: title}}}
	fl, fd, err := describeFiles(ctx, r.Files, verify, map[string]string{title: "the envelope"})
	if err != nil {
		return nil, err
	}
	layers, descs = append(layers, fl...), append(descs, fd...)
	ann := map[string]string{AnnotationVersion: strconv.FormatUint(r.Version, 10)}
	if !r.Created.IsZero() {
		ann[AnnotationCreated] = r.Created.UTC().Format(time.RFC3339)
	}
	if r.Product != "" {
		ann[AnnotationProduct] = r.Product
		ann[AnnotationTitle] = r.Product
	}
	return buildArtifact(ArtifactTypeRelease, layers, descs, ann, nil)
}

// describeFiles describes each file as a layer. Titles must be unique:
// seen maps the titles already taken to what took them, and gains each
// file's.
func describeFiles(ctx context.Context, files []File, verify bool, seen map[string]string) ([]partial.CompressedLayer, []v1.Descriptor, error) {
	var layers []partial.CompressedLayer
	var descs []v1.Descriptor
	for _, f := range files {
		l, d, err := describeFile(ctx, f, verify)
		if err != nil {
			return nil, nil, err
		}
		t := d.Annotations[AnnotationTitle]
		if prev, dup := seen[t]; dup {
			return nil, nil, fmt.Errorf("%w: %s: title %q already used by %s", ErrBadFile, f.Path, t, prev)
		}
		seen[t] = f.Path
		layers = append(layers, l)
		descs = append(descs, d)
	}
	return layers, descs, nil
}

// deltasImage builds the referrer artifact attaching files to subject.
func deltasImage(ctx context.Context, subject v1.Descriptor, files []File, verify bool) (v1.Image, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no deltas to attach", ErrBadFile)
	}
	layers, descs, err := describeFiles(ctx, files, verify, map[string]string{})
	if err != nil {
		return nil, err
	}
	sub := v1.Descriptor{MediaType: subject.MediaType, Size: subject.Size, Digest: subject.Digest,
		ArtifactType: subject.ArtifactType}
	return buildArtifact(ArtifactTypeDeltas, layers, descs, nil, &sub)
}
