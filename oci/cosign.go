package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/upkit/upkit/spec"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// CosignPayload returns the "simple signing" payload cosign signs for the
// manifest digest in repository repo (e.g. "registry.example/fleet/gw").
func CosignPayload(repo, digest string) ([]byte, error) {
	if err := CheckDigest(digest); err != nil {
		return nil, err
	}
	type identity struct {
		DockerReference string `json:"docker-reference"`
	}
	type image struct {
		DockerManifestDigest string `json:"docker-manifest-digest"`
	}
	type critical struct {
		Identity identity `json:"identity"`
		Image    image    `json:"image"`
		Type     string   `json:"type"`
	}
	p := struct {
		Critical critical `json:"critical"`
		Optional any      `json:"optional"`
	}{Critical: critical{Identity: identity{repo}, Image: image{digest}, Type: "cosign container image signature"}}
	return json.Marshal(p)
}

// CosignSignatureTag returns the tag cosign looks up for the signatures of
// a manifest digest: "sha256-<hex>.sig".
func CosignSignatureTag(digest string) string {
	return strings.Replace(digest, ":", "-", 1) + ".sig"
}

// SignCosign signs the manifest digest in target's repository the way
// `cosign sign --key` does without a transparency log, so that
// `cosign verify --key PUB --insecure-ignore-tlog REPO@DIGEST` accepts it:
// the simple-signing payload (CosignPayload) becomes a layer of media type
// MediaTypeCosignSimpleSigning annotated with
// AnnotationCosignSignature = base64(signature), appended to the image
// tagged CosignSignatureTag(digest) in the same repository (created if
// absent). It returns the digest of that signature image. Registry targets
// only.
func SignCosign(ctx context.Context, target, digest string, signer spec.Signer, opts *Options) (string, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return "", err
	}
	if t.IsLayout() {
		return "", fmt.Errorf("%w: cosign signatures are written to registries, not layouts", ErrBadReference)
	}
	payload, err := CosignPayload(t.Repo.Name(), digest)
	if err != nil {
		return "", err
	}
	sig, err := signer.Sign(ctx, payload)
	if err != nil {
		return "", fmt.Errorf("oci: signing cosign payload with key %s: %w", signer.KeyID(), err)
	}
	layer := static.NewLayer(payload, types.MediaType(MediaTypeCosignSimpleSigning))
	ann := map[string]string{AnnotationCosignSignature: base64.StdEncoding.EncodeToString(sig)}

	tag := t.Repo.Tag(CosignSignatureTag(digest))
	ropts := o.remoteOptions(ctx)
	base, err := remote.Image(tag, ropts...)
	if err != nil {
		if !errors.Is(registryError(t.Registry(), "", err), ErrNotFound) {
			return "", registryError(t.Registry(), "reading signatures "+tag.String()+" from", err)
		}
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	} else if err := checkCosignImage(base); err != nil {
		return "", fmt.Errorf("%s: %w", tag, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, Annotations: ann})
	if err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	if err := remote.Write(tag, img, ropts...); err != nil {
		return "", registryError(t.Registry(), "pushing signature "+tag.String()+" to", err)
	}
	h, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	return h.String(), nil
}

// checkCosignImage refuses to append to a tag that is not a cosign
// signature image (its layers must all be simple-signing payloads).
func checkCosignImage(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if len(m.Layers) > MaxLayers {
		return fmt.Errorf("%w: %d signature layers", ErrTooLarge, len(m.Layers))
	}
	// Appending reads the config blob whole (go-containerregistry reads up
	// to the size the manifest declares): bound it first.
	if m.Config.Size < 0 || m.Config.Size > MaxManifestSize {
		return fmt.Errorf("%w: signature image config of %d bytes, at most %d", ErrTooLarge, m.Config.Size, MaxManifestSize)
	}
	for _, l := range m.Layers {
		if l.MediaType != types.MediaType(MediaTypeCosignSimpleSigning) {
			return fmt.Errorf("%w: existing signature tag holds a %s layer", ErrNotRelease, l.MediaType)
		}
	}
	return nil
}

// CosignSignature is one signature found under a cosign signature tag.
type CosignSignature struct {
	Payload   []byte
	Signature []byte
}

// CosignSignatures returns the signatures cosign would read for digest in
// target's repository (payload and decoded signature of every
// simple-signing layer), without verifying them. It returns ErrNotFound if
// there is no signature tag.
func CosignSignatures(ctx context.Context, target, digest string, opts *Options) ([]CosignSignature, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	if err := CheckDigest(digest); err != nil {
		return nil, err
	}
	if t.IsLayout() {
		return nil, fmt.Errorf("%w: cosign signatures live in registries, not layouts", ErrBadReference)
	}
	tag := t.Repo.Tag(CosignSignatureTag(digest))
	img, err := remote.Image(tag, o.remoteOptions(ctx)...)
	if err != nil {
		return nil, registryError(t.Registry(), "reading signatures "+tag.String()+" from", err)
	}
	if err := checkCosignImage(img); err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	var out []CosignSignature
	for _, d := range m.Layers {
		sig, err := base64.StdEncoding.DecodeString(d.Annotations[AnnotationCosignSignature])
		if err != nil {
			return nil, fmt.Errorf("oci: %s: bad %s annotation: %w", tag, AnnotationCosignSignature, err)
		}
		if d.Size > MaxEnvelopeSize {
			return nil, fmt.Errorf("%w: signature payload of %d bytes", ErrTooLarge, d.Size)
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("oci: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, registryError(t.Registry(), "reading signature payload from", err)
		}
		var buf bytes.Buffer
		_, err = io.Copy(&buf, io.LimitReader(rc, d.Size+1))
		rc.Close()
		if err != nil {
			return nil, registryError(t.Registry(), "reading signature payload from", err)
		}
		out = append(out, CosignSignature{Payload: buf.Bytes(), Signature: sig})
	}
	return out, nil
}
