// Package oci publishes upkit releases to OCI registries and OCI image layout
// directories, and fetches them back blob by blob.
//
// A release is one OCI image-spec 1.1 artifact manifest (see
// docs/FORMAT.md, "OCI mapping"): artifactType ArtifactTypeRelease, the empty config
// descriptor, and one layer per file: the signed release envelope
// (MediaTypeRelease), every image package (MediaTypePackage) and every delta
// (MediaTypeDelta). Deltas made later attach to a published release as a
// referrer artifact (ArtifactTypeDeltas, subject = the release manifest)
// without changing the signed release.
//
// A target is either a registry reference "host[:port]/repo[:tag|@digest]"
// or an OCI image layout "oci:DIR[:tag|@digest]" (see ParseTarget). The
// package is built on go-containerregistry: pushes go through remote.Write
// and layout.Path (blobs stream from disk, existing blobs are skipped,
// blobs already in another repository of the same registry are mounted),
// and blob downloads go through Source, which adds HTTP Range resume and
// digest verification on top of go-containerregistry's authenticated
// transport.
//
// This package verifies digests and sizes, never signatures: the caller
// verifies the release envelope (package manifest) before trusting anything
// it lists. Annotations are hints for humans and tools; upkit never makes a
// security decision from them.
package oci

import (
	"errors"
	"fmt"

	"github.com/upkit/upkit/spec"
)

// Media and artifact types of the upkit OCI mapping (docs/FORMAT.md, "OCI mapping").
const (
	// ArtifactTypeRelease is the artifactType of a release manifest.
	ArtifactTypeRelease = "application/vnd.upkit.release.v1+json"
	// ArtifactTypeDeltas is the artifactType of a referrer that attaches
	// deltas to a published release.
	ArtifactTypeDeltas = "application/vnd.upkit.deltas.v1"

	// MediaTypeRelease is the layer holding the DSSE release envelope.
	MediaTypeRelease = "application/vnd.upkit.release.v1+json"
	// MediaTypePackage is a layer holding one image package (.upk).
	MediaTypePackage = "application/vnd.upkit.package.v1"
	// MediaTypeDelta is a layer holding one delta.
	MediaTypeDelta = "application/vnd.upkit.delta.v1"

	// MediaTypeEmpty and EmptyJSON are the OCI 1.1 empty config descriptor.
	MediaTypeEmpty = "application/vnd.oci.empty.v1+json"
	EmptyJSON      = "{}"

	// MediaTypeCosignSimpleSigning is the layer media type of a cosign
	// signature.
	MediaTypeCosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
)

// Annotation keys written by this package.
const (
	AnnotationTitle   = "org.opencontainers.image.title"
	AnnotationVersion = "org.opencontainers.image.version"
	AnnotationCreated = "org.opencontainers.image.created"
	// AnnotationRefName names a tag inside an OCI image layout's index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"

	// AnnotationProduct is the release's product (manifest annotation).
	AnnotationProduct = "io.upkit.release.product"
	// AnnotationComponent is the component of a package or delta layer.
	AnnotationComponent = "io.upkit.component"
	// AnnotationDeltaFrom is the payload digest a delta layer applies to.
	AnnotationDeltaFrom = "io.upkit.delta.from"
	// AnnotationDeltaTo is the payload digest a delta layer produces.
	AnnotationDeltaTo = "io.upkit.delta.to"

	// AnnotationCosignSignature holds base64(signature) on a cosign layer.
	AnnotationCosignSignature = "dev.cosignproject.cosign/signature"
)

// Limits on what this package reads from a registry or layout before
// allocating. Blobs themselves are streamed, bounded by their descriptor's
// size.
const (
	// MaxManifestSize bounds an OCI manifest or index read into memory
	// (also a page of a tag list); it applies while reading, so nothing
	// larger is ever held.
	MaxManifestSize = 4 << 20
	// MaxEnvelopeSize bounds the release envelope layer read into memory.
	MaxEnvelopeSize = 4 << 20
	// MaxLayers bounds the number of layers of a release or deltas artifact.
	MaxLayers = 4096
	// MaxTitleLen bounds an accepted org.opencontainers.image.title.
	MaxTitleLen = 255
	// MaxTags and MaxTagPages bound a repository's tag list.
	MaxTags     = 100000
	MaxTagPages = 1000
)

// Sentinel errors, wrapped with %w and matched with errors.Is.
var (
	// ErrBadReference: a target string that is neither a registry reference
	// nor oci:DIR[:tag|@digest].
	ErrBadReference = errors.New("oci: bad reference")
	// ErrNotRelease: the manifest a reference points to is not an upkit
	// release (or not an upkit deltas referrer).
	ErrNotRelease = errors.New("oci: not an upkit release")
	// ErrNotFound: no manifest or blob under that reference or digest.
	ErrNotFound = errors.New("oci: not found")
	// ErrDigestMismatch: bytes whose sha256 differs from the expected digest.
	ErrDigestMismatch = errors.New("oci: digest mismatch")
	// ErrSizeMismatch: a blob longer or shorter than its expected size.
	ErrSizeMismatch = errors.New("oci: size mismatch")
	// ErrTooLarge: a manifest, envelope or count beyond this package's limits.
	ErrTooLarge = errors.New("oci: too large")
	// ErrUnauthorized: the registry answered 401 or 403.
	ErrUnauthorized = errors.New("oci: registry denied access")
	// ErrPlainHTTP: plain HTTP to a non-loopback registry without
	// Options.PlainHTTP.
	ErrPlainHTTP = errors.New("oci: plain HTTP refused")
	// ErrBadFile: a file given to Push that cannot be published (missing,
	// not regular, bad title).
	ErrBadFile = errors.New("oci: bad file")
	// ErrExists: a pull would replace a file it did not create.
	ErrExists = errors.New("oci: refusing to replace an existing file")
	// ErrRedirects: a registry request redirected more than MaxRedirects
	// times.
	ErrRedirects = errors.New("oci: too many redirects")
	// ErrTimeout: a registry request took longer than Options.Timeout.
	ErrTimeout = errors.New("oci: registry request timed out")
)

// CheckDigest returns nil if d is "sha256:" followed by 64 lowercase hex
// digits, and an error wrapping ErrBadReference otherwise.
func CheckDigest(d string) error {
	if err := spec.CheckDigest(d); err != nil {
		return fmt.Errorf("%w: digest %v", ErrBadReference, err)
	}
	return nil
}
