package device_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/manifest"
)

// One test per attack: each starts from a good fixture, breaks one thing
// and asserts the exact sentinel error (and that nothing was installed or
// advanced where that matters).

var tNow = t0.Add(48 * time.Hour)

func TestAttackReleaseRollback(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v2, nil, tNow)
	// v1 is validly signed and not expired, but older.
	_, err := d.Check(w.ctx, r.v1, nil, tNow)
	wantErr(t, err, device.ErrRollback)
}

func TestAttackSecurityVersionRollback(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v2, nil, tNow) // rootfs security version 2
	// Release 3 is newer, but its rootfs has security version 1 (a
	// vulnerable image re-released under a new version number).
	imgs := []manifest.Image{
		w.pack(image{component: "rootfs", typ: "os", version: "3.0.0", secver: 1, payload: r.rootfs1}),
		r.img2[1],
	}
	v3 := w.release(3, tNow, imgs, 4, 5)
	_, err := d.Check(w.ctx, v3, nil, tNow)
	wantErr(t, err, device.ErrSecurityVersion)
	st := d.assertBootable(t)
	if st.SecurityCounters["rootfs"] != 2 || st.ReleaseVersion != 2 {
		t.Fatalf("state changed: %+v", st)
	}
}

func TestAttackExpiredManifest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	_, err := d.Check(w.ctx, r.v1, nil, tExpires.Add(time.Second))
	wantErr(t, err, manifest.ErrExpired)
}

func TestAttackFreezeReplay(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	// The device sees release 2 (not installed yet) ...
	if _, err := d.CheckAndRecord(w.ctx, r.v2, nil, tNow); err != nil {
		t.Fatal(err)
	}
	// ... then an attacker keeps serving release 1, still valid and equal
	// to the installed version, and the device has no clock (zero time).
	_, err := d.Check(w.ctx, r.v1, nil, time.Time{})
	wantErr(t, err, device.ErrFreeze)
}

func TestAttackWrongHardware(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	other := []manifest.Image{w.pack(image{component: "rootfs", typ: "os", version: "1.0.0", secver: 1,
		hardware: []string{"acme-gw-200"}, payload: r.rootfs1})}
	d := w.provisioned()
	_, err := d.Check(w.ctx, w.release(1, t0, other, 4, 5), nil, t0)
	wantErr(t, err, device.ErrHardware, manifest.ErrHardware)
}

func TestAttackMixAndMatch(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	plan, err := d.Check(w.ctx, r.v2, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	// A compromised agent swaps the app package for the one of release 1
	// (validly signed, but not part of release 2).
	plan.Images[1].BlobDigest = r.img1[1].Package.Digest
	plan.Images[1].BlobSize = r.img1[1].Package.Size
	_, err = d.Install(w.ctx, w.source(), plan, tNow)
	wantErr(t, err, device.ErrNotListed, manifest.ErrNotListed)
	// Dropping a component (new rootfs, old app) is refused too.
	plan, _ = d.Check(w.ctx, r.v2, nil, tNow)
	plan.Images = plan.Images[:1]
	_, err = d.Install(w.ctx, w.source(), plan, tNow)
	wantErr(t, err, device.ErrNotListed)
	if st := d.assertBootable(t); st.Pending != nil {
		t.Fatal("something was staged")
	}
}

func TestAttackBelowThreshold(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	_, err := d.Check(w.ctx, w.release(1, t0, r.img1, 4), nil, t0) // threshold is 2
	wantErr(t, err, manifest.ErrThreshold)
}

func TestAttackRevokedKeyAfterRotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	// Root 2 revokes release key 4: release role is now {5, 6}, threshold
	// 1. Signed by the root keys of version 1 and of version 2.
	root2 := w.root(2, []int{1, 2, 3}, 2, []int{5, 6}, 1, 1, 2)
	v2 := w.release(2, tNow, r.img2, 6)
	w.mustCommitRelease(d, v2, [][]byte{w.root1(), root2}, tNow)
	if st := d.assertBootable(t); st.RootVersion != 2 {
		t.Fatalf("root version %d, want 2", st.RootVersion)
	}
	// Key 4 leaked: the attacker signs release 3 with it alone; with or
	// without the chain, the device now trusts root 2 only.
	v3 := w.release(3, tNow, r.img1, 4)
	_, err := d.Check(w.ctx, v3, nil, tNow)
	wantErr(t, err, manifest.ErrUnknownKey, manifest.ErrThreshold)
	_, err = d.Check(w.ctx, v3, [][]byte{root2}, tNow)
	wantErr(t, err, manifest.ErrUnknownKey)
}

func TestAttackDeltaWrongBase(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	// The release says the delta applies to rootfs v1, but it was made
	// from another image.
	img := r.img2[0]
	img.Deltas = nil
	w.addDelta(&img, payload(99, len(r.rootfs1)), r.rootfs2)
	img.Deltas[0].FromPayloadDigest = digestOf(r.rootfs1)
	v2 := w.release(2, tNow, []manifest.Image{img, r.img2[1]}, 4, 5)
	plan, err := d.Check(w.ctx, v2, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Images[0].Method != device.MethodDelta {
		t.Fatalf("plan %+v", plan.Images[0])
	}
	_, err = d.Install(w.ctx, w.source(), plan, tNow)
	wantErr(t, err, device.ErrBaseMismatch)
	if fi, err := os.Stat(d.slots.Path("rootfs", device.SlotA)); err == nil && fi.Size() != 0 {
		t.Fatalf("slot a was written (%d bytes) from a wrong base", fi.Size())
	}
}

// badSource serves the blobs of an inner source altered by fn.
type badSource struct {
	inner device.Source
	fn    func(io.Reader) io.Reader
}

func (s badSource) Open(ctx context.Context, digest string, off int64) (io.ReadCloser, error) {
	rc, err := s.inner.Open(ctx, digest, off)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{s.fn(rc), rc}, nil
}

type flipReader struct {
	r   io.Reader
	pos int64
	at  int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		b[f.at-f.pos] ^= 1
	}
	f.pos += int64(n)
	return n, err
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestAttackTamperedBlob(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	src := badSource{w.source(), func(r io.Reader) io.Reader { return &flipReader{r: r, at: 1000} }}
	_, err := w.updateFrom(d, src, r.v1, nil, t0)
	wantErr(t, err, device.ErrDigest)
	if entries, _ := os.ReadDir(filepath.Join(d.dir, "staging")); len(entries) != 0 {
		t.Fatalf("tampered download kept in staging: %v", entries)
	}
	if st := d.assertBootable(t); st.Pending != nil || len(st.Installed) != 0 {
		t.Fatalf("state changed: %+v", st)
	}
	// A source that reports its own check at the end instead of io.EOF
	// (as oci's registry source does) changes nothing: still ErrDigest.
	src = badSource{w.source(), func(r io.Reader) io.Reader {
		return io.MultiReader(&flipReader{r: r, at: 1000}, errorReader{errors.New("source: digest mismatch")})
	}}
	_, err = w.updateFrom(d, src, r.v1, nil, t0)
	wantErr(t, err, device.ErrDigest)
}

type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

func TestAttackTruncatedSource(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	src := badSource{w.source(), func(r io.Reader) io.Reader { return io.LimitReader(r, 5000) }}
	_, err := w.updateFrom(d, src, r.v1, nil, t0)
	wantErr(t, err, device.ErrTruncated)
	if st := d.assertBootable(t); st.Pending != nil {
		t.Fatal("truncated update staged")
	}
}

func TestAttackEndlessData(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	src := badSource{w.source(), func(r io.Reader) io.Reader { return io.MultiReader(r, zeros{}) }}
	_, err := w.updateFrom(d, src, r.v1, nil, t0)
	wantErr(t, err, device.ErrTooLong)
	if !strings.Contains(err.Error(), "rootfs") {
		t.Errorf("error does not name the component: %v", err)
	}
	if st := d.assertBootable(t); st.Pending != nil {
		t.Fatal("endless update staged")
	}
}

// A staged prefix damaged while the device was off (or by an earlier bad
// source) costs one more download, not a stuck device.
func TestResumeWithDamagedStagedPrefix(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	src := &cutSource{inner: w.source(), cutAt: 70 << 10}
	if _, err := w.updateFrom(d, src, r.v1, nil, t0); err == nil {
		t.Fatal("interrupted download succeeded")
	}
	staged, _ := filepath.Glob(filepath.Join(d.dir, "staging", "*.part"))
	if len(staged) != 1 {
		t.Fatalf("staged: %v", staged)
	}
	b, _ := os.ReadFile(staged[0])
	b[100] ^= 1
	os.WriteFile(staged[0], b, 0o600)
	res, err := w.updateFrom(d, w.source(), r.v1, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Images[0]; got.ResumedAt != 70<<10 || got.Fetched != got.BlobSize-got.ResumedAt+got.BlobSize {
		t.Fatalf("want a resumed then a whole download: %+v", got)
	}
}

// The committed slot no longer holds what the state says (damaged
// storage): the listed delta is refused before any output.
func TestDeltaOnDamagedBaseSlot(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	path := d.slots.Path("rootfs", device.SlotB)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[5] ^= 1
	os.WriteFile(path, b, 0o600)
	_, err = w.update(d, r.v2, nil, tNow)
	wantErr(t, err, device.ErrBaseMismatch)
	// The way out: the full packages.
	plan, err := d.Check(w.ctx, r.v2, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	plan.UseFullPackages()
	res, err := d.Install(w.ctx, w.source(), plan, tNow)
	if err != nil || res.Images[0].Method != device.MethodFull {
		t.Fatalf("full install: %+v, %v", res, err)
	}
}

// A delta published after the release (an OCI referrer, say) is usable
// although unsigned: everything about it is checked against the signed
// payload digest. Forged ones fail without touching the committed image.
func TestUnlistedDelta(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	app2 := r.img2[1] // the release lists no delta for app
	var later manifest.Image
	w.addDelta(&later, r.app1, r.app2)
	dl := later.Deltas[0]
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	app1 := digestOf(r.app1)

	plan, err := d.Check(w.ctx, r.v2, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, plan.UseDelta("app", app1, app2.Payload.Digest, dl.Digest, app2.Package.Size+1), device.ErrTooLarge)
	wantErr(t, plan.UseDelta("app", app1, digestOf([]byte("other")), dl.Digest, dl.Size), device.ErrNotListed)
	wantErr(t, plan.UseDelta("app", digestOf([]byte("other")), app2.Payload.Digest, dl.Digest, dl.Size), device.ErrBaseMismatch)
	wantErr(t, plan.UseDelta("kernel", app1, app2.Payload.Digest, dl.Digest, dl.Size), device.ErrNotListed)

	// A forged delta: made from the right base, but producing other bytes.
	var forged manifest.Image
	w.addDelta(&forged, r.app1, edit(r.app1, 77))
	fd := forged.Deltas[0]
	if err := plan.UseDelta("app", app1, app2.Payload.Digest, fd.Digest, fd.Size); err != nil {
		t.Fatal(err)
	}
	_, err = d.Install(w.ctx, w.source(), plan, tNow)
	wantErr(t, err, device.ErrNotListed) // its header names another result

	// A forged delta whose header lies about its result.
	patch, err := os.ReadFile(filepath.Join(w.srcDir, "blobs", "sha256", fd.Digest[7:]))
	if err != nil {
		t.Fatal(err)
	}
	h, err := delta.ReadHeader(bytes.NewReader(patch))
	if err != nil {
		t.Fatal(err)
	}
	copy(h.NewSHA256[:], mustHex(t, app2.Payload.Digest[7:]))
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	lying := append(hb, patch[delta.HeaderSize:]...)
	plan, _ = d.Check(w.ctx, r.v2, nil, tNow)
	if err := plan.UseDelta("app", app1, app2.Payload.Digest, w.put(lying), int64(len(lying))); err != nil {
		t.Fatal(err)
	}
	_, err = d.Install(w.ctx, w.source(), plan, tNow)
	wantErr(t, err, device.ErrDigest, delta.ErrNewDigest)
	if st := d.assertBootable(t); st.Pending != nil {
		t.Fatal("forged delta staged")
	}

	plan, _ = d.Check(w.ctx, r.v2, nil, tNow)
	if err := plan.UseDelta("app", app1, app2.Payload.Digest, dl.Digest, dl.Size); err != nil {
		t.Fatal(err)
	}
	res, err := d.Install(w.ctx, w.source(), plan, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Images[1]; got.Method != device.MethodDelta || !got.Unlisted || got.Fetched != dl.Size {
		t.Fatalf("app: %+v", got)
	}
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.assertBootable(t); st.Installed["app"].PayloadDigest != app2.Payload.Digest {
		t.Fatalf("app not updated: %+v", st.Installed["app"])
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A validly signed release for other hardware of the same product,
// created after this device's release, is refused for hardware; it must
// not advance the device's newest-seen time, or the device then refuses
// its own, older release as a freeze (issue 12, item 9). The newest-seen
// time advances only for releases that pass every check for this device.
func TestAttackOtherHardwareAdvancesFreezeClock(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	other := []manifest.Image{w.pack(image{component: "rootfs", typ: "os", version: "9.0.0", secver: 9,
		hardware: []string{"acme-gw-200"}, payload: r.rootfs2})}
	later := w.release(3, t0.Add(48*time.Hour), other, 4, 5) // created after r.v2
	_, err := d.CheckAndRecord(w.ctx, later, nil, tNow)
	wantErr(t, err, device.ErrHardware)
	if st := d.assertBootable(t); !st.NewestCreated.Equal(t0) {
		t.Fatalf("a release refused for hardware moved the newest-seen time to %s", st.NewestCreated)
	}
	if _, err := w.update(d, r.v2, nil, tNow); err != nil {
		t.Fatalf("the device's own release after a refused one: %v", err)
	}
}

// A root rotation shipped with a release that is then refused must be
// kept: once root 2 (which revokes release key 4) verified, a release
// signed by key 4 alone must not be accepted on the next update just
// because it comes without the chain (issue 12, item 11).
func TestAttackRotationForgottenWhenReleaseRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := newDev(t, t.TempDir(), nil)
	// Root 1: release key 4 alone signs releases. Root 2 replaces it by 6.
	root1 := w.root(1, []int{1, 2, 3}, 2, []int{4}, 1, 1, 2)
	root2 := w.root(2, []int{1, 2, 3}, 2, []int{6}, 1, 1, 2)
	if err := d.Provision(w.ctx, root1, t0); err != nil {
		t.Fatal(err)
	}
	// The release shipped with root 2 is refused: a key root 2 does not
	// trust signed it (or it came through a mirror that broke it)...
	_, err := d.CheckAndRecord(w.ctx, w.release(1, t0, r.img1, 7), [][]byte{root1, root2}, t0)
	wantErr(t, err, manifest.ErrUnknownKey)
	if st := d.assertBootable(t); st.RootVersion != 2 {
		t.Fatalf("the verified rotation was forgotten: root version %d, want 2", st.RootVersion)
	}
	// ... and the holder of the revoked key 4 serves a release without the chain.
	_, err = d.CheckAndRecord(w.ctx, w.release(1, t0, r.img1, 4), nil, t0)
	wantErr(t, err, manifest.ErrUnknownKey)
}

// TestAttackDeltaApplyMemory: an attached (unsigned) delta whose header asks
// for the most memory the delta format allows (about 3x what a default
// delta needs) is refused with ErrTooLarge before it is applied: the device
// enforces its own Limits.MaxDeltaMemory, not the patch's declaration. The
// committed image stays, and a full update still works.
func TestAttackDeltaApplyMemory(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	app2 := r.img2[1] // the release lists no delta for app
	var buf bytes.Buffer
	big := &delta.Options{BlockSize: delta.MaxBlockSize, CtrlSize: delta.MaxCtrlSize, ModelBits: delta.MaxModelBits}
	h, err := delta.Create(w.ctx, r.app1, r.app2, &buf, big)
	if err != nil {
		t.Fatal(err)
	}
	if h.MaxApplyMemory() <= device.DefaultMaxDeltaMemory {
		t.Fatalf("the test delta asks for only %d bytes", h.MaxApplyMemory())
	}
	digest := w.put(buf.Bytes())
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	plan, err := d.Check(w.ctx, r.v2, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.UseDelta("app", digestOf(r.app1), app2.Payload.Digest, digest, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	_, err = d.Install(w.ctx, w.source(), plan, tNow)
	wantErr(t, err, device.ErrTooLarge)
	if !strings.Contains(err.Error(), "MaxDeltaMemory") {
		t.Fatalf("error does not name the limit: %v", err)
	}
	if st := d.assertBootable(t); st.Pending != nil || st.ReleaseVersion != 1 {
		t.Fatalf("state after refusal: %+v", st)
	}

	// A device configured for it accepts the same delta.
	roomy, err := device.New(device.Config{
		Store: d.store, Slots: d.slots, Hardware: hw, StagingDir: filepath.Join(d.dir, "staging"),
		Limits: device.Limits{MaxDeltaMemory: h.MaxApplyMemory()},
	})
	if err != nil {
		t.Fatal(err)
	}
	plan, err = roomy.Check(w.ctx, r.v2, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.UseDelta("app", digestOf(r.app1), app2.Payload.Digest, digest, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	if _, err := roomy.Install(w.ctx, w.source(), plan, tNow); err != nil {
		t.Fatal(err)
	}
}
