package device_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/manifest"
)

func TestUpdateWithDeltaAndCommit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()

	res := w.mustCommitRelease(d, r.v1, nil, t0)
	if len(res.Images) != 2 || res.Images[0].Method != device.MethodFull || res.Images[0].Slot != device.SlotB {
		t.Fatalf("v1 install: %+v", res.Images)
	}
	st := d.assertBootable(t)
	if st.ReleaseVersion != 1 || st.SecurityCounters["rootfs"] != 1 {
		t.Fatalf("after v1: %+v", st)
	}

	plan, err := d.Check(w.ctx, r.v2, nil, t0.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Images[0].Method != device.MethodDelta || plan.Images[1].Method != device.MethodFull {
		t.Fatalf("plan: %+v", plan.Images)
	}
	res, err = d.Install(w.ctx, w.source(), plan, t0.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Images[0]
	if got.Slot != device.SlotA || got.Fetched != got.BlobSize || got.Fetched >= got.PackageSize {
		t.Fatalf("delta install: %+v", got)
	}
	// Nothing advanced before commit.
	st = d.assertBootable(t)
	if st.ReleaseVersion != 1 || st.SecurityCounters["rootfs"] != 1 || st.Pending == nil {
		t.Fatalf("before commit: %+v", st)
	}
	if d.slotDigest(t, "rootfs", device.SlotA, int64(len(r.rootfs2))) != digestOf(r.rootfs2) {
		t.Fatal("slot a does not hold rootfs v2")
	}
	// Installing again only re-verifies.
	res, err = w.update(d, r.v2, nil, t0.Add(48*time.Hour))
	if err != nil || !res.AlreadyStaged {
		t.Fatalf("second install: %+v, %v", res, err)
	}
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	st = d.assertBootable(t)
	if st.ReleaseVersion != 2 || st.SecurityCounters["rootfs"] != 2 || st.Installed["rootfs"].Slot != device.SlotA || st.Pending != nil {
		t.Fatalf("after commit: %+v", st)
	}
	_, err = d.Check(w.ctx, r.v2, nil, t0.Add(48*time.Hour))
	wantErr(t, err, device.ErrNothingToDo)
	wantErr(t, d.Commit(w.ctx), device.ErrNoPending)
}

func TestBootLimitAndRollback(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	if _, err := w.update(d, r.v2, nil, tNow); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= device.DefaultMaxBootAttempts; i++ {
		if n, err := d.RecordBoot(w.ctx); err != nil || n != i {
			t.Fatalf("boot %d: %d, %v", i, n, err)
		}
	}
	_, err := d.RecordBoot(w.ctx)
	wantErr(t, err, device.ErrBootLimit)
	if err := d.Rollback(w.ctx); err != nil {
		t.Fatal(err)
	}
	st := d.assertBootable(t)
	if st.Pending != nil || st.ReleaseVersion != 1 || st.SecurityCounters["rootfs"] != 1 || st.Installed["rootfs"].Slot != device.SlotB {
		t.Fatalf("after rollback: %+v", st)
	}
	// The newest release seen is remembered: v2 may be retried, v1 is
	// installed, nothing older is accepted.
	if _, err := d.Check(w.ctx, r.v2, nil, tNow); err != nil {
		t.Fatalf("retrying v2: %v", err)
	}
	wantErr(t, d.Rollback(w.ctx), device.ErrNoPending)
	_, err = d.RecordBoot(w.ctx)
	wantErr(t, err, device.ErrNoPending)
}

func TestOtherProductRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	env, err := manifest.NewReleaseEnvelope(&manifest.Release{Product: "other", Version: 5, Created: tNow, Expires: tExpires, Images: r.img2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Check(w.ctx, w.sign(env, 4, 5), nil, tNow)
	wantErr(t, err, device.ErrProduct)
}

func TestDirSourceLayouts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	blob := []byte("hello blob")
	dg := digestOf(blob)
	os.WriteFile(filepath.Join(dir, "any-name.upk"), blob, 0o644)
	src := device.NewDirSource(dir)
	rc, err := src.Open(ctx, dg, 6)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "blob" {
		t.Fatalf("read %q from offset 6", got)
	}
	_, err = src.Open(ctx, digestOf([]byte("missing")), 0)
	wantErr(t, err, device.ErrNotFound)
	_, err = src.Open(ctx, "sha256:../../etc/passwd", 0)
	wantErr(t, err, device.ErrConfig)
}

func TestProgressReported(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	dir := t.TempDir()
	last := map[string]device.Progress{}
	d, err := device.New(device.Config{
		Store: device.NewFileStore(filepath.Join(dir, "state"), nil), Slots: device.NewFileSlots(filepath.Join(dir, "slots"), nil),
		Hardware: hw, StagingDir: filepath.Join(dir, "staging"),
		Progress: func(p device.Progress) { last[p.Component+" "+p.Phase] = p },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Provision(w.ctx, w.root1(), t0); err != nil {
		t.Fatal(err)
	}
	plan, err := d.Check(w.ctx, r.v1, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Install(w.ctx, w.source(), plan, t0); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{device.PhaseFetch, device.PhaseWrite, device.PhaseVerify} {
		p, ok := last["rootfs "+phase]
		if !ok || p.Done != p.Total || p.Total == 0 {
			t.Errorf("rootfs %s: last progress %+v", phase, p)
		}
	}
}

// Check writes nothing, not even what it verified (a rotated root, the
// newest creation time): that is CheckAndRecord's job, as its name says.
func TestCheckWritesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	root2 := w.root(2, []int{1, 2, 3}, 2, []int{4, 5}, 2, 1, 2)
	before, err := os.ReadFile(filepath.Join(d.dir, "state", "state"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Check(w.ctx, r.v2, [][]byte{w.root1(), root2}, tNow); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(filepath.Join(d.dir, "state", "state"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("Check changed the stored state")
	}
	if _, err := d.CheckAndRecord(w.ctx, r.v2, [][]byte{w.root1(), root2}, tNow); err != nil {
		t.Fatal(err)
	}
	st := d.assertBootable(t)
	if st.RootVersion != 2 || !st.NewestCreated.Equal(t0.Add(24*time.Hour)) || st.ReleaseVersion != 1 || st.Pending != nil {
		t.Fatalf("after CheckAndRecord: root %d, newest %s, release %d, pending %v; want root 2, release 2's creation time, release 1, nothing pending",
			st.RootVersion, st.NewestCreated, st.ReleaseVersion, st.Pending)
	}
}
