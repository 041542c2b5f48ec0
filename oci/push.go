package oci

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push publishes rel to target ("host[:port]/repo[:tag]" or "oci:DIR[:tag]")
// and returns the manifest digest. Without a tag the manifest is pushed by
// digest only. Pushing the same release again yields the same digest and
// uploads nothing new: blobs the registry already has are skipped (HEAD),
// and blobs are uploaded Options.Jobs at a time. If target has a digest it
// must equal the release's.
func Push(ctx context.Context, target string, rel Release, opts *Options) (string, error) {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return "", err
	}
	img, err := releaseImage(ctx, rel, t.IsLayout())
	if err != nil {
		return "", err
	}
	d, err := pushImage(ctx, t, img, ArtifactTypeRelease, o)
	return d, explainPushError(ctx, rel.Files, err)
}

// explainPushError: registries verify uploaded blobs against their digest,
// so registry pushes skip the client-side hash; when one fails, find out
// whether a local file does not match the digest it was given, and say so
// (ErrDigestMismatch), whatever error code the registry used.
func explainPushError(ctx context.Context, files []File, err error) error {
	if err == nil || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrDigestMismatch) || ctx.Err() != nil {
		return err
	}
	for _, f := range files {
		if f.Digest == "" {
			continue
		}
		got, _, herr := hashFile(ctx, f.Path)
		if herr == nil && got != f.Digest {
			return fmt.Errorf("%w: %s hashes to %s, not %s as given (the registry refused it: %v)",
				ErrDigestMismatch, f.Path, got, f.Digest, err)
		}
	}
	return err
}

// Attach publishes files (deltas) as a referrer of the release at subject
// (a tag or digest reference) and returns the referrer's manifest digest.
// The release itself is not changed. Registries without the referrers API
// get the OCI fallback tag "sha256-<hex of subject>" (an index listing the
// referrers), which go-containerregistry maintains; layouts get an untagged
// entry in index.json.
func Attach(ctx context.Context, subject string, files []File, opts *Options) (string, error) {
	o := opts.orDefault()
	t, err := ParseTarget(subject, o.PlainHTTP)
	if err != nil {
		return "", err
	}
	a, err := resolve(ctx, t, o)
	if err != nil {
		return "", err
	}
	if a.ArtifactType != ArtifactTypeRelease {
		return "", fmt.Errorf("%w: %s has artifactType %q; deltas attach to a release", ErrNotRelease, subject, a.ArtifactType)
	}
	img, err := deltasImage(ctx, a.descriptor(), files, t.IsLayout())
	if err != nil {
		return "", err
	}
	d, err := pushImage(ctx, t.WithDigest(""), img, ArtifactTypeDeltas, o)
	return d, explainPushError(ctx, files, err)
}

// Tag points tag at the manifest digest in target's repository or layout.
func Tag(ctx context.Context, target, digest, tag string, opts *Options) error {
	o := opts.orDefault()
	t, err := ParseTarget(target, o.PlainHTTP)
	if err != nil {
		return err
	}
	if !validTag(tag) {
		return fmt.Errorf("%w: tag %q: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", ErrBadReference, tag)
	}
	a, err := resolve(ctx, t.WithDigest(digest), o)
	if err != nil {
		return err
	}
	if t.IsLayout() {
		return layoutSetTag(t.Layout, a.descriptor(), tag)
	}
	desc, err := remote.Get(t.Repo.Digest(digest), o.remoteOptions(ctx)...)
	if err != nil {
		return registryError(t.Registry(), "reading "+digest+" from", err)
	}
	if err := remote.Tag(t.Repo.Tag(tag), desc, o.remoteOptions(ctx)...); err != nil {
		return registryError(t.Registry(), "tagging "+tag+" on", err)
	}
	return nil
}

// Copy copies the release (or any upkit artifact) at src to dst and returns
// its digest. Between repositories of the same registry, blobs are mounted
// rather than uploaded again (go-containerregistry mounts layers that come
// from remote.Layer of the same registry); across registries or with
// layouts they are streamed. The manifest bytes, hence the digest, do not
// change.
func Copy(ctx context.Context, src, dst string, opts *Options) (string, error) {
	o := opts.orDefault()
	st, err := ParseTarget(src, o.PlainHTTP)
	if err != nil {
		return "", err
	}
	dt, err := ParseTarget(dst, o.PlainHTTP)
	if err != nil {
		return "", err
	}
	a, err := resolve(ctx, st, o)
	if err != nil {
		return "", err
	}
	var img v1.Image
	if st.IsLayout() {
		img, err = layoutImage(st.Layout, a)
	} else {
		var d *remote.Descriptor
		d, err = remote.Get(st.Repo.Digest(a.Digest), o.remoteOptions(ctx)...)
		if err == nil {
			img, err = d.Image()
		}
		if err != nil {
			err = registryError(st.Registry(), "reading "+a.Digest+" from", err)
		}
	}
	if err != nil {
		return "", err
	}
	return pushImage(ctx, dt, img, a.ArtifactType, o)
}

// pushImage writes img to t (by tag if t has one, else by digest).
func pushImage(ctx context.Context, t Target, img v1.Image, artifactType string, o Options) (string, error) {
	h, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	digest := h.String()
	if t.Digest != "" && t.Digest != digest {
		return "", fmt.Errorf("%w: %s names digest %s but the artifact is %s", ErrBadReference, t, t.Digest, digest)
	}
	if t.IsLayout() {
		return digest, layoutWrite(ctx, t, img, artifactType)
	}
	var ref name.Reference = t.Repo.Digest(digest)
	if t.Tag != "" {
		ref = t.Repo.Tag(t.Tag)
	}
	ropts, wait := o.writeOptions(ctx)
	err = remote.Write(ref, img, ropts...)
	wait()
	if err != nil {
		return "", registryError(t.Registry(), "pushing to", err)
	}
	return digest, nil
}

// imageDescriptor is the descriptor of img as an index or referrers entry.
func imageDescriptor(img v1.Image, artifactType string, annotations map[string]string) (v1.Descriptor, error) {
	d, err := partial.Descriptor(img)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("oci: %w", err)
	}
	d.ArtifactType = artifactType
	d.Annotations = annotations
	return *d, nil
}
