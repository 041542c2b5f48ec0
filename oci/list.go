package oci

import (
	"context"
	"errors"
	"fmt"
)

// TagInfo is one tag of a repository and the upkit artifact it names.
type TagInfo struct {
	Tag     string `json:"tag"`
	Digest  string `json:"digest,omitempty"`
	Version string `json:"version,omitempty"` // of a release (its annotation: unverified)
	Created string `json:"created,omitempty"` // idem
	Note    string `json:"note,omitempty"`    // "not an upkit release", "deltas artifact"
}

// ListTags lists the tags of the repository or layout at repo (Tags) and
// resolves each one: a release, a deltas artifact, or something else.
// Nothing is verified: versions and times come from annotations.
func ListTags(ctx context.Context, repo string, opts *Options) ([]TagInfo, error) {
	o := opts.orDefault()
	t, err := ParseTarget(repo, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	tags, err := Tags(ctx, repo, opts)
	if err != nil {
		return nil, err
	}
	rows := []TagInfo{}
	for _, tag := range tags {
		row := TagInfo{Tag: tag}
		a, err := resolve(ctx, t.WithTag(tag), o)
		switch {
		case errors.Is(err, ErrNotRelease):
			row.Note = "not an upkit release"
		case err != nil:
			return nil, err
		case a.ArtifactType != ArtifactTypeRelease:
			row.Digest, row.Note = a.Digest, "deltas artifact"
		default:
			row.Digest, row.Version, row.Created = a.Digest, a.Annotations[AnnotationVersion], a.Annotations[AnnotationCreated]
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// FileInfo is one layer of an artifact, for people and tools.
type FileInfo struct {
	Title     string `json:"title"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	Component string `json:"component,omitempty"`
	From      string `json:"deltaFrom,omitempty"`
}

// ReleaseInfo describes a published release and the deltas attached to it.
type ReleaseInfo struct {
	Ref      string     `json:"ref"`
	Digest   string     `json:"digest"`
	Product  string     `json:"product,omitempty"`
	Version  string     `json:"version,omitempty"`
	Created  string     `json:"created,omitempty"`
	Files    []FileInfo `json:"files"`
	Attached []FileInfo `json:"attached"`
}

// DescribeRelease resolves the release at target (a tag or digest) and
// lists its files and the deltas attached to it. Nothing is verified.
func DescribeRelease(ctx context.Context, target string, opts *Options) (*ReleaseInfo, error) {
	a, err := Resolve(ctx, target, opts)
	if err != nil {
		return nil, err
	}
	if a.ArtifactType != ArtifactTypeRelease {
		return nil, fmt.Errorf("%w: %s is a %s artifact attached to %s", ErrNotRelease, target, a.ArtifactType, a.Subject)
	}
	refs, err := Referrers(ctx, a.Target.String(), opts)
	if err != nil {
		return nil, err
	}
	out := &ReleaseInfo{Ref: a.Target.String(), Digest: a.Digest, Product: a.Annotations[AnnotationProduct],
		Version: a.Annotations[AnnotationVersion], Created: a.Annotations[AnnotationCreated], Files: fileInfos(a), Attached: []FileInfo{}}
	for _, r := range refs {
		out.Attached = append(out.Attached, fileInfos(r)...)
	}
	return out, nil
}

func fileInfos(a *Artifact) []FileInfo {
	out := []FileInfo{}
	for _, b := range a.Layers {
		out = append(out, FileInfo{Title: b.Title, MediaType: b.MediaType, Size: b.Size, Digest: b.Digest,
			Component: b.Annotations[AnnotationComponent], From: b.Annotations[AnnotationDeltaFrom]})
	}
	return out
}
