package device_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/testutil/faultfs"
)

// The power cuts come from internal/testutil/faultfs: a device.FS that
// loses power at its FailAt-th mutating step (a torn write, a sync, a
// truncate, a rename, a directory sync or a removal) and fails every call
// after it. A restart is a new Device over the same directories with a
// healthy FS.

// assertNotBackwards fails if a monotonic field of after is below before.
func assertNotBackwards(t *testing.T, before, after *device.State) {
	t.Helper()
	if after.ReleaseVersion < before.ReleaseVersion || after.NewestCreated.Before(before.NewestCreated) || after.RootVersion < before.RootVersion {
		t.Fatalf("state went backwards: before %+v, after %+v", before, after)
	}
	for c, v := range before.SecurityCounters {
		if after.SecurityCounters[c] < v {
			t.Fatalf("counter %s went back from %d to %d", c, v, after.SecurityCounters[c])
		}
	}
}

// copyDir copies a device's directories (a snapshot to restart from).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// crashLoop runs op on a copy of the device from setup with power lost at
// step 1, 2, ... until op completes without reaching the failing step;
// after each crash it restarts the device and calls check. An op may
// report success when power is lost after its last durable step (cleanup).
func crashLoop(t *testing.T, setup func() *dev, op func(d *dev) error, check func(d *dev, before *device.State)) {
	t.Helper()
	ctx := context.Background()
	template := setup()
	for n := 1; ; n++ {
		d := newDev(t, t.TempDir(), nil)
		copyDir(t, template.dir, d.dir)
		before, err := d.store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ffs := faultfs.New(n)
		err = op(newDev(t, d.dir, ffs))
		if !ffs.Crashed() {
			if err != nil {
				t.Fatalf("no crash, but: %v", err)
			}
			t.Logf("%d crash points tested", n-1)
			if n < 5 {
				t.Fatalf("only %d steps: the fault injection is not wired", n-1)
			}
			return
		}
		if err != nil && !errors.Is(err, faultfs.ErrCrash) {
			t.Fatalf("crash at step %d: error %v does not report it", n, err)
		}
		restarted := newDev(t, d.dir, nil)
		after := restarted.assertBootable(t)
		assertNotBackwards(t, before, after)
		check(restarted, before)
	}
}

func TestPowerLossDuringInstall(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	crashLoop(t,
		func() *dev {
			d := w.provisioned()
			w.mustCommitRelease(d, r.v1, nil, t0)
			return d
		},
		func(d *dev) error { _, err := w.update(d, r.v2, nil, tNow); return err },
		func(d *dev, before *device.State) {
			st, _ := d.store.Load(w.ctx)
			if st.ReleaseVersion != 1 || st.Installed["rootfs"] != before.Installed["rootfs"] {
				t.Fatalf("install changed the committed release: %+v", st)
			}
			// Redo (or resume) the update to completion.
			w.mustCommitRelease(d, r.v2, nil, tNow)
			if st := d.assertBootable(t); st.ReleaseVersion != 2 || st.SecurityCounters["rootfs"] != 2 {
				t.Fatalf("after redo: %+v", st)
			}
		})
}

func TestPowerLossDuringCommit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	crashLoop(t,
		func() *dev {
			d := w.provisioned()
			w.mustCommitRelease(d, r.v1, nil, t0)
			if _, err := w.update(d, r.v2, nil, tNow); err != nil {
				t.Fatal(err)
			}
			return d
		},
		func(d *dev) error { return d.Commit(w.ctx) },
		func(d *dev, before *device.State) {
			st, _ := d.store.Load(w.ctx)
			switch {
			case st.Pending != nil && st.ReleaseVersion == 1:
				if err := d.Commit(w.ctx); err != nil {
					t.Fatalf("commit after restart: %v", err)
				}
			case st.Pending == nil && st.ReleaseVersion == 2:
			default:
				t.Fatalf("half-committed state: %+v", st)
			}
			if st := d.assertBootable(t); st.ReleaseVersion != 2 || st.SecurityCounters["rootfs"] != 2 || st.Installed["rootfs"].Slot != device.SlotA {
				t.Fatalf("after recovery: %+v", st)
			}
		})
}

func TestPowerLossDuringRollback(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	crashLoop(t,
		func() *dev {
			d := w.provisioned()
			w.mustCommitRelease(d, r.v1, nil, t0)
			if _, err := w.update(d, r.v2, nil, tNow); err != nil {
				t.Fatal(err)
			}
			return d
		},
		func(d *dev) error { return d.Rollback(w.ctx) },
		func(d *dev, before *device.State) {
			st, _ := d.store.Load(w.ctx)
			if st.Pending != nil {
				if err := d.Rollback(w.ctx); err != nil {
					t.Fatalf("rollback after restart: %v", err)
				}
			}
			if st := d.assertBootable(t); st.ReleaseVersion != 1 || st.Installed["rootfs"].Slot != device.SlotB {
				t.Fatalf("after rollback: %+v", st)
			}
		})
}

// cutSource fails with a connection error after n bytes of the first
// blob it serves, and counts what it serves.
type cutSource struct {
	inner  device.Source
	cutAt  int64
	served int64
}

type cutReader struct {
	r    io.Reader
	left int64
	s    *cutSource
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("test: connection reset")
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	c.s.served += int64(n)
	return n, err
}

func (s *cutSource) Open(ctx context.Context, digest string, off int64) (io.ReadCloser, error) {
	rc, err := s.inner.Open(ctx, digest, off)
	if err != nil {
		return nil, err
	}
	left := int64(1 << 62)
	if s.cutAt > 0 {
		left, s.cutAt = s.cutAt, 0
	}
	return struct {
		io.Reader
		io.Closer
	}{&cutReader{r: rc, left: left, s: s}, rc}, nil
}

func TestResumeInterruptedDownload(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	const cut = 70 << 10
	src := &cutSource{inner: w.source(), cutAt: cut}
	_, err := w.updateFrom(d, src, r.v1, nil, t0)
	if err == nil {
		t.Fatal("interrupted download succeeded")
	}
	staged, _ := os.ReadDir(filepath.Join(d.dir, "staging"))
	if len(staged) != 1 {
		t.Fatalf("staging holds %d files, want the partial download", len(staged))
	}
	src.served = 0
	res, err := w.updateFrom(d, src, r.v1, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := res.Images[0]
	if rootfs.ResumedAt != cut || rootfs.Fetched != rootfs.BlobSize-cut || rootfs.Fetched >= rootfs.BlobSize {
		t.Fatalf("did not resume: %+v", rootfs)
	}
	if total := r.img1[0].Package.Size + r.img1[1].Package.Size; src.served != total-cut {
		t.Fatalf("second attempt fetched %d bytes, want %d", src.served, total-cut)
	}
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	d.assertBootable(t)
	if staged, _ := os.ReadDir(filepath.Join(d.dir, "staging")); len(staged) != 0 {
		t.Fatalf("staging not cleaned: %v", staged)
	}
}

func TestStateCorruptionDetected(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	path := filepath.Join(d.dir, "state", "state")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"flipped byte": func() []byte { b := bytes.Clone(good); b[len(b)-10] ^= 1; return b }(),
		"truncated":    good[:len(good)/2],
		"empty":        {},
		"garbage":      []byte("hello"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := d.Check(w.ctx, r.v2, nil, tNow)
			wantErr(t, err, device.ErrStateCorrupt)
			_, err = d.Status(w.ctx)
			wantErr(t, err, device.ErrStateCorrupt)
			wantErr(t, d.Provision(w.ctx, w.root1(), t0), device.ErrStateCorrupt)
		})
	}
	os.Remove(path)
	_, err = d.Status(w.ctx)
	wantErr(t, err, device.ErrNoState)
}
