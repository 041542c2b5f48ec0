package tpmcounter_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/hwcounter"
	"github.com/upkit/upkit/device/tpmcounter"
	"github.com/upkit/upkit/internal/testutil/faultfs"
	"github.com/upkit/upkit/internal/testutil/releasetest"
	"github.com/upkit/upkit/internal/testutil/swtpmtest"
)

// node is a device whose counters are in a (software) TPM: file state,
// file slots, a staging area, all in dir.
type node struct {
	dir  string
	tpm  *swtpmtest.TPM
	ctrs *tpmcounter.Counters
	file *device.FileStore
	dev  *device.Device
}

// newNode builds the device over dir and tpm; fsys and open (nil: the
// real ones) let a test cut power.
func newNode(t *testing.T, dir string, tpm *swtpmtest.TPM, fsys device.FS, open func() (tpmcounter.TPM, error)) *node {
	t.Helper()
	if open == nil {
		open = tpmcounter.OpenSocket(tpm.Socket())
	}
	ctrs, err := tpmcounter.New(tpmcounter.Config{
		Indices: map[string]uint32{"rootfs": idxRootfs, "app": idxApp},
		Open:    open,
	})
	if err != nil {
		t.Fatal(err)
	}
	file := device.NewFileStore(filepath.Join(dir, "state"), fsys)
	d, err := device.New(device.Config{
		Store: hwcounter.New(file, ctrs), Slots: device.NewFileSlots(filepath.Join(dir, "slots"), fsys),
		Hardware: releasetest.Hardware, StagingDir: filepath.Join(dir, "staging"), FS: fsys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &node{dir: dir, tpm: tpm, ctrs: ctrs, file: file, dev: d}
}

func (n *node) install(t *testing.T, srv *releasetest.Server, rel []byte) {
	t.Helper()
	ctx := context.Background()
	plan, err := n.dev.Check(ctx, rel, nil, releasetest.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.dev.Install(ctx, srv.Source(), plan, releasetest.Now); err != nil {
		t.Fatal(err)
	}
}

// tpmValue reads a component's counter from outside, with tpm2_nvread.
func (n *node) tpmValue(t *testing.T, idx uint32) uint64 {
	t.Helper()
	out := n.tpm.Tool("tpm2_nvread", "-C", "o", "-s", "8", fmt.Sprintf("%#x", idx))
	return binary.BigEndian.Uint64(out) - 1
}

func release(srv *releasetest.Server, v uint64, rootfsSV, appSV uint64) []byte {
	return srv.Release(v,
		releasetest.Image{Component: "rootfs", Version: fmt.Sprintf("%d.0.0", v), SecurityVersion: rootfsSV, Payload: bytes.Repeat([]byte(fmt.Sprintf("rootfs %d ", v)), 4000)},
		releasetest.Image{Component: "app", Version: fmt.Sprintf("%d.0.0", v), SecurityVersion: appSV, Payload: bytes.Repeat([]byte(fmt.Sprintf("app %d ", v)), 3000)},
	)
}

// Counters advance in the TPM only when an update is committed: not when
// it is checked, installed or rolled back.
func TestCountersAdvanceOnlyAtCommit(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.New(t)
	tpm := swtpmtest.Start(t)
	n := newNode(t, t.TempDir(), tpm, nil, nil)
	if err := n.dev.Provision(ctx, srv.Root(), releasetest.Now); err != nil {
		t.Fatal(err)
	}
	rel := release(srv, 1, 2, 1)
	n.install(t, srv, rel)
	if r, a := n.tpmValue(t, idxRootfs), n.tpmValue(t, idxApp); r != 0 || a != 0 {
		t.Fatalf("after Install the TPM holds %d and %d", r, a)
	}
	if err := n.dev.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := n.tpmValue(t, idxRootfs); r != 0 {
		t.Fatalf("after Rollback the TPM holds %d", r)
	}
	n.install(t, srv, rel)
	if err := n.dev.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r, a := n.tpmValue(t, idxRootfs), n.tpmValue(t, idxApp); r != 2 || a != 1 {
		t.Fatalf("after Commit the TPM holds %d and %d, want 2 and 1", r, a)
	}
	st, _ := n.dev.Status(ctx)
	for _, c := range st.Components {
		if want := map[string]uint64{"rootfs": 2, "app": 1}[c.Component]; c.Counter != want {
			t.Errorf("%s counter %d, want %d", c.Component, c.Counter, want)
		}
	}
}

// Saving a state with a counter below the TPM's fails and writes nothing.
func TestLowerCounterRefused(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.New(t)
	tpm := swtpmtest.Start(t)
	n := newNode(t, t.TempDir(), tpm, nil, nil)
	n.dev.Provision(ctx, srv.Root(), releasetest.Now)
	n.install(t, srv, release(srv, 1, 3, 1))
	if err := n.dev.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	store := hwcounter.New(n.file, n.ctrs)
	st, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(n.dir, "state"))
	st.SecurityCounters["rootfs"] = 2
	if err := store.Save(ctx, st); !errors.Is(err, hwcounter.ErrBehind) {
		t.Fatalf("Save of a lower counter: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(n.dir, "state")); !bytes.Equal(before, after) {
		t.Fatal("the refused Save wrote the state")
	}
	if r := n.tpmValue(t, idxRootfs); r != 3 {
		t.Fatalf("TPM holds %d", r)
	}
	// A counter with no TPM index is refused too, unless allowed.
	st.SecurityCounters["rootfs"] = 3
	st.SecurityCounters["other"] = 1
	if err := store.Save(ctx, st); !errors.Is(err, hwcounter.ErrNoCounter) {
		t.Fatalf("Save of a counter without an index: %v", err)
	}
	if err := hwcounter.New(n.file, n.ctrs, hwcounter.AllowFileOnly()).Save(ctx, st); err != nil {
		t.Fatalf("Save with AllowFileOnly: %v", err)
	}
}

// The state file is wiped (or replaced by an old copy) and the device
// provisioned again: the TPM still holds the counters, and the device
// refuses the older release it would otherwise accept.
func TestWipedStateRefusesRollback(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.New(t)
	tpm := swtpmtest.Start(t)
	dir := t.TempDir()
	n := newNode(t, dir, tpm, nil, nil)
	n.dev.Provision(ctx, srv.Root(), releasetest.Now)
	old := release(srv, 1, 1, 1)
	n.install(t, srv, old)
	if err := n.dev.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	oldState, _ := os.ReadFile(filepath.Join(dir, "state"))
	n.install(t, srv, release(srv, 2, 2, 1))
	if err := n.dev.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// Wiped: a new device over the same TPM.
	wiped := newNode(t, t.TempDir(), tpm, nil, nil)
	if err := wiped.dev.Provision(ctx, srv.Root(), releasetest.Now); err != nil {
		t.Fatal(err)
	}
	if _, err := wiped.dev.Check(ctx, old, nil, releasetest.Now); !errors.Is(err, device.ErrSecurityVersion) {
		t.Fatalf("Check of the old release after a wipe: %v", err)
	}
	// The old state file restored over the new one.
	if err := os.WriteFile(filepath.Join(dir, "state"), oldState, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.dev.Check(ctx, release(srv, 3, 1, 1), nil, releasetest.Now); !errors.Is(err, device.ErrSecurityVersion) {
		t.Fatalf("Check of a release at the old counter after restoring the old state: %v", err)
	}
	// The counter the TPM holds is enforced, not lowered.
	if r := n.tpmValue(t, idxRootfs); r != 2 {
		t.Fatalf("TPM holds %d", r)
	}
}

// faultTPM loses power with the file system it shares a supply with: a
// command that changes the TPM's NV (define, increment, write, undefine)
// is a step. At the step that loses power the command is either not sent
// (executed false) or executed with its response lost (executed true).
type faultTPM struct {
	inner    tpmcounter.TPM
	ffs      *faultfs.FS
	executed bool
}

func mutating(cmd []byte) bool {
	if len(cmd) < 10 {
		return false
	}
	switch binary.BigEndian.Uint32(cmd[6:10]) {
	case 0x12A, 0x134, 0x137, 0x122: // NV_DefineSpace, NV_Increment, NV_Write, NV_UndefineSpace
		return true
	}
	return false
}

func (f *faultTPM) Send(cmd []byte) ([]byte, error) {
	if err := f.ffs.Dead(); err != nil {
		return nil, err
	}
	if mutating(cmd) {
		now, err := f.ffs.Cut()
		if err != nil {
			if now && f.executed {
				f.inner.Send(cmd)
			}
			return nil, err
		}
	}
	return f.inner.Send(cmd)
}

func (f *faultTPM) Close() error { return f.inner.Close() }

// Power is cut at every step of a Commit that raises two counters (file
// writes and TPM increments alike), with the cut TPM command lost or
// executed. After each cut the state loads, no counter in the TPM is
// behind a committed image, and the commit completes when run again, with
// the TPM then holding exactly the committed security versions.
func TestPowerLossAtEveryStepOfCommit(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.New(t)
	base := t.TempDir()
	devDir, tpmDir := filepath.Join(base, "device"), filepath.Join(base, "tpm")
	os.MkdirAll(tpmDir, 0o700)
	tpm := swtpmtest.StartIn(t, tpmDir)
	n := newNode(t, devDir, tpm, nil, nil)
	n.dev.Provision(ctx, srv.Root(), releasetest.Now)
	n.install(t, srv, release(srv, 1, 1, 1))
	if err := n.dev.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	n.install(t, srv, release(srv, 2, 3, 2)) // pending: rootfs 1 -> 3, app 1 -> 2
	tpm.Stop()
	snapshot := filepath.Join(base, "snapshot")
	copyTree(t, base, snapshot, "snapshot")

	// restore lays the snapshot down in a fresh directory and starts its TPM.
	restore := func() (string, *swtpmtest.TPM) {
		root := t.TempDir()
		copyTree(t, snapshot, root, "")
		return root, swtpmtest.StartIn(t, filepath.Join(root, "tpm"))
	}
	commitWith := func(root string, tpm *swtpmtest.TPM, ffs *faultfs.FS, executed bool) error {
		open := func() (tpmcounter.TPM, error) {
			inner, err := tpmcounter.OpenSocket(tpm.Socket())()
			if err != nil {
				return nil, err
			}
			return &faultTPM{inner: inner, ffs: ffs, executed: executed}, nil
		}
		return newNode(t, filepath.Join(root, "device"), tpm, ffs, open).dev.Commit(ctx)
	}

	root, tpm0 := restore()
	count := faultfs.New(0)
	if err := commitWith(root, tpm0, count, false); err != nil {
		t.Fatal(err)
	}
	steps := count.Steps()
	tpm0.Stop()
	if steps < 5 {
		t.Fatalf("a commit takes %d steps: the test proves little", steps)
	}
	cuts := 0
	for _, executed := range []bool{false, true} {
		for k := 1; k <= steps; k++ {
			what := fmt.Sprintf("cut at step %d/%d (TPM command executed: %v)", k, steps, executed)
			root, tpm := restore()
			if err := commitWith(root, tpm, faultfs.New(k), executed); err == nil {
				t.Fatalf("%s: Commit succeeded", what)
			}
			cuts++
			// Restart.
			n := newNode(t, filepath.Join(root, "device"), tpm, nil, nil)
			file, err := n.file.Load(ctx)
			if err != nil {
				t.Fatalf("%s: the state file does not load: %v", what, err)
			}
			for c, im := range file.Installed {
				idx, _ := n.ctrs.Index(c)
				if v := n.tpmValue(t, idx); v < im.SecurityVersion {
					t.Fatalf("%s: TPM counter of %s is %d, behind the committed image's %d", what, c, v, im.SecurityVersion)
				}
			}
			if _, err := n.dev.Status(ctx); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if file.Pending != nil {
				if err := n.dev.Commit(ctx); err != nil {
					t.Fatalf("%s: Commit after the restart: %v", what, err)
				}
			} else if err := n.dev.Recover(ctx); err != nil {
				t.Fatalf("%s: Recover after the restart: %v", what, err)
			}
			if r, a := n.tpmValue(t, idxRootfs), n.tpmValue(t, idxApp); r != 3 || a != 2 {
				t.Fatalf("%s: after completing, the TPM holds %d and %d, want 3 and 2", what, r, a)
			}
			st, err := n.file.Load(ctx)
			if err != nil || st.Pending != nil || st.Installed["rootfs"].SecurityVersion != 3 {
				t.Fatalf("%s: after completing: %v, %+v", what, err, st)
			}
			tpm.Stop()
		}
	}
	t.Logf("%d steps, %d power cuts", steps, cuts)
}

// copyTree copies a directory tree, skipping the top-level entry skip and
// sockets.
func copyTree(t *testing.T, src, dst, skip string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if skip != "" && (rel == skip || filepath.Dir(rel) == skip) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		if !e.Type().IsRegular() {
			return nil
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
