package devicedir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// Plan checks the release of src on d, keeping what the device may not
// forget (device.Device.CheckAndRecord), and then, unless full, switches
// the components that the plan fetches as full packages to deltas attached
// to the release after it was signed (oci.ListAttachedDeltas; unsigned,
// their result is checked against the signed payload digest), where one
// applies to the committed image. note is not empty when listing the
// attached deltas failed (the plan then fetches full packages). The errors
// are CheckAndRecord's: device.ErrNothingToDo when the release is the
// committed one, a refusal otherwise.
func Plan(ctx context.Context, d *device.Device, src *Source, chain [][]byte, now time.Time, full bool, opts *oci.Options) (plan *device.Plan, note string, err error) {
	plan, err = d.CheckAndRecord(ctx, src.Envelope, chain, now)
	if err != nil {
		return plan, "", err
	}
	switch {
	case full:
		plan.UseFullPackages()
	case src.Target != "" && !plan.Staged && plan.WantsDeltas():
		deltas, lerr := oci.ListAttachedDeltas(ctx, src.Target, opts)
		if lerr != nil {
			note = fmt.Sprintf("attached deltas not listed (%v); using full packages", lerr)
		}
		plan.UseDeltas(deltas)
	}
	return plan, note, nil
}

// OpenNewest resolves src as OpenSource does, except that an OCI image
// layout named without a tag (a directory holding oci-layout, or oci:DIR)
// may hold several releases under different tags, as a USB stick carrying
// a few does: each is checked (device.Device.Check, which writes nothing),
// and the one with the highest release version that d accepts, or already
// runs (device.ErrNothingToDo), is returned. When d accepts none of them,
// the newest (by its unverified version) is returned, so that
// CheckAndRecord refuses it with its reason. A layout with one tag, or a
// tag named, is OpenSource's.
func OpenNewest(ctx context.Context, d *device.Device, src, releasePath string, now time.Time, opts *oci.Options) (*Source, error) {
	dir, ok := untaggedLayout(src)
	if !ok {
		return OpenSource(ctx, src, releasePath, opts)
	}
	tags, err := oci.Tags(ctx, oci.LayoutPrefix+dir, opts)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("%w: the OCI image layout %s holds no tagged release", oci.ErrNotFound, dir)
	}
	if len(tags) == 1 {
		return OpenSource(ctx, oci.LayoutPrefix+dir+":"+tags[0], "", opts)
	}
	var best, newest *Source
	var bestVersion, newestVersion uint64
	for _, tag := range tags {
		s, err := OpenSource(ctx, oci.LayoutPrefix+dir+":"+tag, "", opts)
		if errors.Is(err, oci.ErrNotRelease) {
			continue // a deltas artifact or something else under that tag
		}
		if err != nil {
			return nil, err
		}
		plan, err := d.Check(ctx, s.Envelope, nil, now)
		if err == nil || errors.Is(err, device.ErrNothingToDo) {
			if best == nil || plan.ReleaseVersion > bestVersion {
				best, bestVersion = s, plan.ReleaseVersion
			}
			continue
		}
		if _, rel, perr := manifest.ParseReleaseEnvelope(s.Envelope); perr == nil && (newest == nil || rel.Version > newestVersion) {
			newest, newestVersion = s, rel.Version
		} else if newest == nil {
			newest = s
		}
	}
	switch {
	case best != nil:
		return best, nil
	case newest != nil:
		return newest, nil
	}
	return nil, fmt.Errorf("%w: no tag of the OCI image layout %s names an upkit release", oci.ErrNotRelease, dir)
}

// untaggedLayout reports whether src names an OCI image layout without a
// tag or digest, and returns its directory.
func untaggedLayout(src string) (string, bool) {
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		if _, err := os.Stat(filepath.Join(src, "oci-layout")); err == nil {
			return src, true
		}
		return "", false
	}
	t, err := oci.ParseTarget(src, false)
	if err != nil || !t.IsLayout() || t.Tag != "" || t.Digest != "" {
		return "", false
	}
	return t.Layout, true
}
