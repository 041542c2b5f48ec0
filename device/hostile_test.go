package device_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upkit/upkit/device"
)

// Tests of what a second process, a planted symlink or FIFO, can do to a
// device (SECURITY.md, "Local attacks on the device's files").

// helperEnv names the mode of TestHelperProcessDevice in a child process.
const helperEnv = "UPKIT_DEVICE_TEST_HELPER"

// runHelper starts this test binary as a child process running
// TestHelperProcessDevice in mode with args.
func runHelper(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessDevice$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "UPKIT_HELPER_ARGS="+strings.Join(args, "\x1f"))
	return cmd
}

// Exit codes of the helper.
const (
	helperOK     = 0
	helperLocked = 3
)

// TestHelperProcessDevice is not a test: it is the child process of the
// tests below, doing nothing unless helperEnv is set.
func TestHelperProcessDevice(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	args := strings.Split(os.Getenv("UPKIT_HELPER_ARGS"), "\x1f")
	ctx := context.Background()
	exit := func(code int, format string, a ...any) {
		fmt.Printf(format+"\n", a...)
		os.Exit(code)
	}
	switch mode {
	case "increment": // STATE N: add 1 to counter "c" N times, retrying conflicts
		store := device.NewFileStore(args[0], nil)
		n, _ := strconv.Atoi(args[1])
		var seen uint64
		conflicts := 0
		for i := 0; i < n; i++ {
			for {
				st, err := store.Load(ctx)
				if err != nil {
					exit(1, "load: %v", err)
				}
				if st.SecurityCounters["c"] < seen {
					exit(1, "counter went back from %d to %d", seen, st.SecurityCounters["c"])
				}
				seen = st.SecurityCounters["c"]
				st.SecurityCounters["c"]++
				time.Sleep(200 * time.Microsecond) // let the other process interleave
				err = store.Save(ctx, st)
				if errors.Is(err, device.ErrStateConflict) || errors.Is(err, device.ErrStateLocked) {
					conflicts++
					continue
				}
				if err != nil {
					exit(1, "save: %v", err)
				}
				break
			}
		}
		exit(helperOK, "conflicts %d", conflicts)
	case "commit": // DIR: device.Commit on the test device in DIR
		d := newDev(t, args[0], nil)
		err := d.Commit(ctx)
		if errors.Is(err, device.ErrStateLocked) {
			exit(helperLocked, "%v", err)
		}
		if err != nil {
			exit(1, "commit: %v", err)
		}
		exit(helperOK, "committed")
	}
	exit(1, "unknown mode %q", mode)
}

// TestStateTwoProcessesLoseNoUpdate: two processes load, change and save
// the same state file as fast as they can. Every save is a compare and
// swap on the state's generation under the file lock, so none undoes the
// other's: each ends with exactly its increments counted, and neither ever
// loads a counter lower than one it saw before.
func TestStateTwoProcessesLoseNoUpdate(t *testing.T) {
	w := newWorld(t)
	d := w.provisioned()
	statePath := filepath.Join(d.dir, "state", "state")
	const n = 150
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := runHelper(t, "increment", statePath, strconv.Itoa(n)).CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("process %d: %v\n%s", i, errs[i], outs[i])
		}
		t.Logf("process %d: %s", i, strings.TrimSpace(outs[i]))
	}
	st, err := d.store.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.SecurityCounters["c"]; got != 2*n {
		t.Fatalf("counter is %d after 2 x %d increments: updates were lost", got, n)
	}
	if st.Generation < 2*n+1 {
		t.Fatalf("generation %d after %d saves", st.Generation, 2*n+1)
	}
}

// TestStateSaveRefusesStale: a state loaded before another writer saved
// cannot be saved over it (ErrStateConflict), and nothing changes.
func TestStateSaveRefusesStale(t *testing.T) {
	w := newWorld(t)
	d := w.provisioned()
	path := filepath.Join(d.dir, "state", "state")
	a, b := device.NewFileStore(path, nil), device.NewFileStore(path, nil)
	sa, err := a.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen := sa.Generation
	sa.ReleaseVersion = 2
	if err := a.Save(w.ctx, sa); err != nil {
		t.Fatal(err)
	}
	if sa.Generation != gen+1 {
		t.Fatalf("generation %d after saving generation %d", sa.Generation, gen)
	}
	sb.Product = "other"
	wantErr(t, b.Save(w.ctx, sb), device.ErrStateConflict)
	st, err := b.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ReleaseVersion != 2 || st.Product == "other" || st.Generation != gen+1 {
		t.Fatalf("stored state after the refused save: %+v", st)
	}
	// The same state saves again and again (each save moves it on).
	sa.ReleaseVersion = 3
	if err := a.Save(w.ctx, sa); err != nil {
		t.Fatal(err)
	}
}

// TestStateV1File: a state written before generations (magic v1, no
// generation member) reads as generation 0 and is saved as v2; a v1 file
// that names a generation is corrupt.
func TestStateV1File(t *testing.T) {
	w := newWorld(t)
	d := w.provisioned()
	path := filepath.Join(d.dir, "state", "state")
	st, err := d.store.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	v1 := func(withGeneration bool) []byte {
		enc, err := device.EncodeState(st)
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := bytes.Cut(enc[bytes.IndexByte(enc, '\n')+1:], []byte("\n"))
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if !withGeneration {
			delete(m, "generation")
		}
		body, _ = json.Marshal(m)
		return []byte(fmt.Sprintf("upkit-device-state-v1\nsha256:%s\n%s", digestOf(body)[7:], body))
	}
	if err := os.WriteFile(path, v1(false), 0o600); err != nil {
		t.Fatal(err)
	}
	old, err := d.store.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if old.Generation != 0 || old.RootVersion != st.RootVersion {
		t.Fatalf("v1 state read as %+v", old)
	}
	if err := d.store.Save(w.ctx, old); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("upkit-device-state-v2\n")) || old.Generation != 1 {
		t.Fatalf("saved as %.30q, generation %d", data, old.Generation)
	}
	st.Generation = 5
	if err := os.WriteFile(path, v1(true), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = d.store.Load(w.ctx)
	wantErr(t, err, device.ErrStateCorrupt)
}

// TestStateLockedByAnotherProcess: while a process holds the device state
// (here the test itself, through FileStore.Lock, as Install does for the
// whole of a download), another process's Commit fails at once with
// ErrStateLocked and changes nothing; so do another Device's Commit and
// CheckAndRecord in the same process (its Check, which writes nothing,
// still reads). Once the lock is released the Commit goes through.
func TestStateLockedByAnotherProcess(t *testing.T) {
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	if _, err := w.update(d, r.v2, nil, tNow); err != nil {
		t.Fatal(err)
	}
	unlock, err := d.store.Lock(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := runHelper(t, "commit", d.dir).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != helperLocked {
		t.Fatalf("commit in another process while locked: %v\n%s", err, out)
	}
	if time.Since(start) > 10*time.Second || !strings.Contains(string(out), "another process") {
		t.Fatalf("took %v: %s", time.Since(start), out)
	}
	other := newDev(t, d.dir, nil)
	wantErr(t, other.Commit(w.ctx), device.ErrStateLocked)
	_, err = other.CheckAndRecord(w.ctx, r.v2, nil, tNow)
	wantErr(t, err, device.ErrStateLocked)
	// Check writes nothing: it reads the state (saved atomically) without
	// the lock.
	if _, err := other.Check(w.ctx, r.v2, nil, tNow); err != nil {
		t.Fatalf("read-only Check under another's lock: %v", err)
	}
	if st, _ := d.store.Load(w.ctx); st.ReleaseVersion != 1 || st.Pending == nil {
		t.Fatalf("state changed under the lock: %+v", st)
	}
	unlock()
	if out, err := runHelper(t, "commit", d.dir).CombinedOutput(); err != nil {
		t.Fatalf("commit after unlock: %v\n%s", err, out)
	}
	if st := d.assertBootable(t); st.ReleaseVersion != 2 || st.SecurityCounters["rootfs"] != 2 {
		t.Fatalf("after commit: %+v", st)
	}
}

// TestAttackStagingPlanted: a symlink planted in the staging directory at
// the name of a download (staging/<hex>.part) used to have its target
// truncated and overwritten with the blob; a FIFO there made the download
// fail. Both are now removed before the download, which then succeeds, and
// the symlink's target is untouched.
func TestAttackStagingPlanted(t *testing.T) {
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	victim := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(victim, []byte("precious data"), 0o600); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(d.dir, "staging")
	if err := os.MkdirAll(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	rootfsDelta := r.img2[0].Deltas[0].Digest
	appPkg := r.img2[1].Package.Digest
	if err := os.Symlink(victim, filepath.Join(staging, rootfsDelta[7:]+".part")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(staging, appPkg[7:]+".part"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(staging, "unrelated")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.update(d, r.v2, nil, tNow); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "precious data" {
		t.Fatalf("symlink target now holds %d bytes", len(data))
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Fatalf("staging still holds %v", entries)
	}
}

// TestAttackPlantedSymlinks: a symlink at the inactive slot's file, or at
// the state's temporary file, is never followed: the slot write is refused
// with an error naming it (the committed image and the state stay), and the
// state save replaces the temporary name. The targets are untouched.
func TestAttackPlantedSymlinks(t *testing.T) {
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	w.mustCommitRelease(d, r.v1, nil, t0)
	victim := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(victim, []byte("precious data"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := d.store.Load(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	inactive := d.slots.Path("app", device.OtherSlot(st.Installed["app"].Slot))
	os.Remove(inactive)
	if err := os.Symlink(victim, inactive); err != nil {
		t.Fatal(err)
	}
	_, err = w.update(d, r.v2, nil, tNow)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("update through a symlinked slot: %v", err)
	}
	if st := d.assertBootable(t); st.ReleaseVersion != 1 || st.Pending != nil {
		t.Fatalf("state: %+v", st)
	}
	os.Remove(inactive)

	tmp := filepath.Join(d.dir, "state", ".state.tmp")
	if err := os.Symlink(victim, tmp); err != nil {
		t.Fatal(err)
	}
	w.mustCommitRelease(d, r.v2, nil, tNow)
	if data, _ := os.ReadFile(victim); string(data) != "precious data" {
		t.Fatalf("symlink target now holds %d bytes", len(data))
	}
	if st := d.assertBootable(t); st.ReleaseVersion != 2 {
		t.Fatalf("state: %+v", st)
	}
}

// TestAttackFIFOInSource: a FIFO named like a blob in a release directory
// used to block open(2) forever (no context can interrupt it). It is now
// refused at once, naming the file.
func TestAttackFIFOInSource(t *testing.T) {
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	pkg := r.img1[0].Package.Digest
	blob := filepath.Join(w.srcDir, "blobs", "sha256", pkg[7:])
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // unblock a reader left by a failing run
		if f, err := os.OpenFile(blob, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	done := make(chan error, 1)
	go func() { _, err := w.update(d, r.v1, nil, t0); done <- err }()
	select {
	case err := <-done:
		wantErr(t, err, device.ErrNotFound)
		if !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("error does not say why: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Install blocked on a FIFO in the source directory")
	}
}
