package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/testutil/hostileregistry"
	"github.com/upkit/upkit/oci"
)

// Attacks on the CLI as a process: a second process on the same device,
// a hostile registry watched with /usr/bin/time, and signals.
// (SECURITY.md, "Hostile registries, a second process, signals".)

// buildUpkit builds the CLI into a temporary directory.
func buildUpkit(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "upkit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// upkitCmd is a command running the built CLI.
func upkitCmd(bin string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "UPKIT_PASSWORD=test") // packTestKeys' password
	return cmd, &out
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// counter reads the device's rootfs security counter straight from its
// state file.
func counter(t *testing.T, state string) uint64 {
	t.Helper()
	st, err := device.NewFileStore(filepath.Join(state, "state"), nil).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.SecurityCounters["rootfs"]
}

// TestAttackTwoProcessesOneDevice is the race of the report: `device
// update` is held in the middle of a download by a slow registry while
// another process updates from a local directory and commits. The first
// process used to save, at the end of its download, the state it had
// loaded before the commit: the counter went back from 2 to 1 and the
// committed slot was rewritten. Now the second process is refused at once
// (the state is locked), the first completes, and the counter never goes
// back; the commit then goes through.
func TestAttackTwoProcessesOneDevice(t *testing.T) {
	bin := buildUpkit(t)
	f := newDevFixture(t)
	state := filepath.Join(f.dir, "dev")
	now := "2026-03-02T00:00:00Z"
	mustRun(t, nil, "device", "init", "--state", state, "--root", f.root, "--hardware", "gw-100", "--now", now)
	mustRun(t, nil, "device", "update", "--state", state, "--now", now, f.v1Dir)
	mustRun(t, nil, "device", "commit", "--state", state)

	reg := hostileregistry.Start(t)
	ref := reg.Addr + "/fleet/gw:2"
	if _, err := oci.Copy(context.Background(), f.v2Layout, ref, nil); err != nil {
		t.Fatal(err)
	}
	patch, err := os.ReadFile(filepath.Join(f.v2Dir, "rootfs.delta"))
	if err != nil {
		t.Fatal(err)
	}
	deltaPath := "/blobs/" + devSha(patch)
	gate := make(chan struct{})
	reg.SetAttack(reg.Paced(func(r *http.Request) bool {
		return hostileregistry.BlobGet(r) && strings.HasSuffix(r.URL.Path, deltaPath)
	}, 50, 0, 100, gate))

	a, aOut := upkitCmd(bin, "device", "update", "--state", state, "--now", now, ref)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Process.Kill()
	for deadline := time.Now().Add(30 * time.Second); reg.Served() < 100; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first update never reached its download:\n%s", aOut)
		}
	}
	if c := counter(t, state); c != 1 {
		t.Fatalf("counter %d before the race", c)
	}
	// The second process, while the first holds the state.
	for _, args := range [][]string{
		{"device", "update", "--state", state, "--now", now, f.v2Dir},
		{"device", "commit", "--state", state},
		{"device", "rollback", "--state", state},
	} {
		b, bOut := upkitCmd(bin, args...)
		start := time.Now()
		err := b.Run()
		if exitCode(err) != 1 || !strings.Contains(bOut.String(), "another process is using the device state") {
			t.Fatalf("upkit %s while another process updates: exit %d\n%s", strings.Join(args, " "), exitCode(err), bOut)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("upkit %s waited %v instead of failing at once", args[1], d)
		}
		if c := counter(t, state); c != 1 {
			t.Fatalf("counter %d after the refused %s", c, args[1])
		}
	}
	close(gate)
	if err := a.Wait(); err != nil {
		t.Fatalf("first update: %v\n%s", err, aOut)
	}
	if c := counter(t, state); c != 1 {
		t.Fatalf("counter %d after the first update (nothing committed yet)", c)
	}
	c, cOut := upkitCmd(bin, "device", "commit", "--state", state)
	if err := c.Run(); err != nil {
		t.Fatalf("commit: %v\n%s", err, cOut)
	}
	if c := counter(t, state); c != 2 {
		t.Fatalf("counter %d after the commit", c)
	}
}

// maxRSS runs cmd under /usr/bin/time -v and returns its exit code, output
// and peak resident set size in KiB.
func maxRSS(t *testing.T, bin string, args ...string) (int, string, int64) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Fatal("/usr/bin/time not found: apt-get install time")
	}
	cmd, out := upkitCmd("/usr/bin/time", append([]string{"-v", bin}, args...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		t.Fatalf("upkit %s still running after 2 minutes:\n%.2000s", strings.Join(args, " "), out)
	}
	m := regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no RSS in /usr/bin/time output:\n%s", out)
	}
	kb, _ := strconv.ParseInt(m[1], 10, 64)
	return exitCode(err), out.String(), kb
}

// TestAttackHostileRegistryMemory runs the CLI against a registry that
// loops redirects, or serves a 95 MiB manifest, referrers index or tag
// list, and measures its peak RSS with /usr/bin/time -v: every command
// fails with the named error, within its first requests, and stays within
// a few MiB of a normal pull of the same release (it used to send
// requests until killed, or read 95 MiB and parse it: about 455 MB).
func TestAttackHostileRegistryMemory(t *testing.T) {
	bin := buildUpkit(t)
	f := newDevFixture(t)
	reg := hostileregistry.Start(t)
	ref := reg.Addr + "/fleet/gw:2"
	if _, err := oci.Copy(context.Background(), f.v2Layout, ref, nil); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(f.dir, "dev")
	now := "2026-03-02T00:00:00Z"
	mustRun(t, nil, "device", "init", "--state", state, "--root", f.root, "--hardware", "gw-100", "--now", now)

	code, out, base := maxRSS(t, bin, "pull", "-q", "-o", t.TempDir(), ref)
	if code != 0 {
		t.Fatalf("pull of the good release: exit %d\n%s", code, out)
	}
	t.Logf("upkit pull of a good release: peak RSS %d KiB", base)
	const huge = 95 << 20
	cases := []struct {
		name   string
		attack hostileregistry.Attack
		args   []string
		want   string
	}{
		{"pull, manifest redirect loop", hostileregistry.RedirectLoop(hostileregistry.ManifestGet),
			[]string{"pull", "-q", "-o", t.TempDir(), ref}, "too many redirects"},
		{"device update, blob redirect loop", hostileregistry.RedirectLoop(hostileregistry.BlobGet),
			[]string{"device", "update", "--state", state, "--now", now, ref}, "too many redirects"},
		{"pull, 95 MiB manifest", hostileregistry.Huge(hostileregistry.ManifestGet, "application/vnd.oci.image.manifest.v1+json", `{"schemaVersion":2,"layers":[`, huge, false),
			[]string{"pull", "-q", "-o", t.TempDir(), ref}, "too large"},
		{"device update, 95 MiB manifest", hostileregistry.Huge(hostileregistry.ManifestGet, "application/vnd.oci.image.manifest.v1+json", `{"schemaVersion":2,"layers":[`, huge, false),
			[]string{"device", "update", "--state", state, "--now", now, ref}, "too large"},
		{"ls, 95 MiB referrers index", hostileregistry.Huge(hostileregistry.ReferrersGet, "application/vnd.oci.image.index.v1+json", `{"schemaVersion":2,"manifests":[`, huge, false),
			[]string{"ls", ref}, "too large"},
		{"ls, 95 MiB tag list", hostileregistry.Huge(hostileregistry.TagsList, "application/json", `{"name":"fleet/gw","tags":[`, huge, false),
			[]string{"ls", reg.Addr + "/fleet/gw"}, "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg.SetAttack(c.attack)
			code, out, kb := maxRSS(t, bin, c.args...)
			t.Logf("upkit %s: exit %d, peak RSS %d KiB, %d requests, %.1f MiB served by the attack",
				c.args[0], code, kb, reg.Requests(), float64(reg.Served())/(1<<20))
			if code != 1 || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, output lacks %q:\n%.3000s", code, c.want, out)
			}
			if reg.Requests() > 50 {
				t.Fatalf("%d requests", reg.Requests())
			}
			if kb > base+16<<10 {
				t.Fatalf("peak RSS %d KiB, a good pull takes %d KiB", kb, base)
			}
		})
	}
}

// stopAfterSignal runs upkit args, sends sig once it is busy, and returns
// how long it took to exit after the signal (it must exit non-zero).
func stopAfterSignal(t *testing.T, bin string, sig syscall.Signal, args []string) time.Duration {
	t.Helper()
	cmd, cmdOut := upkitCmd(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("upkit %s ended before the signal (%v):\n%s", args[0], err, cmdOut)
	case <-time.After(1500 * time.Millisecond):
	}
	sent := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		took := time.Since(sent)
		t.Logf("stopped by %v after %v: exit %d: %s", sig, took.Round(time.Millisecond), exitCode(err), strings.TrimSpace(cmdOut.String()))
		if exitCode(err) == 0 {
			t.Fatal("exit 0 after the signal")
		}
		return took
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10 s after %v:\n%s", sig, cmdOut)
	}
	return 0
}

// sparseFile creates a file of size bytes that takes no disk space.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestSignalStopsLongOperations: SIGTERM or SIGINT during a long
// operation (hashing a large image, waiting for a registry that stopped
// sending) ends the process within a second, leaving no temporary file.
func TestSignalStopsLongOperations(t *testing.T) {
	bin := buildUpkit(t)
	f := newDevFixture(t)
	dir := t.TempDir()
	const big = 16 << 30 // sparse: many seconds of hashing, no disk
	bigImg := filepath.Join(dir, "big.img")
	sparseFile(t, bigImg, big)

	// A patch whose header names a base of the big image's size: Apply
	// hashes the whole base before anything else.
	var buf bytes.Buffer
	if _, err := delta.Create(context.Background(), []byte("old"), []byte("new"), &buf, nil); err != nil {
		t.Fatal(err)
	}
	h, err := delta.ReadHeader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	h.OldSize = big
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	patch := filepath.Join(dir, "big.delta")
	if err := os.WriteFile(patch, append(hb, buf.Bytes()[delta.HeaderSize:]...), 0o644); err != nil {
		t.Fatal(err)
	}

	// A release directory with a big file of another name: the device
	// looks for blobs by hashing the directory's files.
	releaseDir := filepath.Join(dir, "release")
	if err := os.CopyFS(releaseDir, os.DirFS(f.v1Dir)); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(releaseDir, "rootfs-1.0.0.upk"), filepath.Join(releaseDir, "rootfs.pkg"))
	sparseFile(t, filepath.Join(releaseDir, "a-big.img"), big)
	state := filepath.Join(dir, "dev")
	now := "2026-03-02T00:00:00Z"
	mustRun(t, nil, "device", "init", "--state", state, "--root", f.root, "--hardware", "gw-100", "--now", now)

	// A registry that stops in the middle of every blob.
	reg := hostileregistry.Start(t)
	ref := reg.Addr + "/fleet/gw:2"
	if _, err := oci.Copy(context.Background(), f.v2Layout, ref, nil); err != nil {
		t.Fatal(err)
	}
	env, err := oci.Resolve(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := env.EnvelopeBlob()
	reg.SetAttack(reg.Paced(func(r *http.Request) bool {
		return hostileregistry.BlobGet(r) && !strings.HasSuffix(r.URL.Path, eb.Digest)
	}, 512, 0, 1024, make(chan struct{})))

	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	_, keyPrefix := packTestKeys(t)
	cases := []struct {
		name string
		sig  syscall.Signal
		args []string
		keep bool // a pull keeps what it completed and its partial download, to resume
	}{
		{"pack a large image", syscall.SIGTERM, packArgs(keyPrefix, filepath.Join(out, "big.upk"), bigImg, "--compress", "none"), false},
		{"pack a large image, zstd", syscall.SIGINT, packArgs(keyPrefix, filepath.Join(out, "big-z.upk"), bigImg), false},
		{"delta apply to a large base", syscall.SIGTERM, []string{"delta", "apply", "--from", bigImg, "-o", filepath.Join(out, "new.img"), patch}, false},
		{"device update hashing a release directory", syscall.SIGTERM, []string{"device", "update", "--state", state, "--now", now, releaseDir}, false},
		{"pull from a registry that stalls", syscall.SIGINT, []string{"pull", "-q", "-o", out, ref}, true},
		{"device update from a registry that stalls", syscall.SIGTERM, []string{"device", "update", "--state", state, "--now", now, ref}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// On a loaded machine the scheduler alone can delay an exit:
			// a run over the second is repeated, twice at most.
			var took time.Duration
			for attempt := 1; attempt <= 3; attempt++ {
				took = stopAfterSignal(t, bin, c.sig, c.args)
				if took <= time.Second {
					break
				}
				t.Logf("attempt %d took %v", attempt, took)
			}
			if took > time.Second {
				t.Fatalf("took %v to stop, three times", took)
			}
			if c.keep {
				// (its partial download, .HEX.partial, stays for the
				// next pull to resume)
				partials, _ := filepath.Glob(filepath.Join(out, ".*"+oci.PartialSuffix))
				for _, p := range partials {
					os.Remove(p)
				}
			}
			assertNoTemp(t, out)
			assertNoTemp(t, state)
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				if !c.keep {
					t.Fatalf("left behind in the output directory: %s", e.Name())
				}
				os.Remove(filepath.Join(out, e.Name()))
			}
		})
	}
}

// TestAttackFIFOInPlaceOfAFile: a FIFO where the CLI expects a file (a
// blob of a release directory or layout, the release envelope, a package
// to verify or inspect, a patch) used to block open(2) forever, beyond the
// reach of SIGTERM. Every command now refuses it at once.
func TestAttackFIFOInPlaceOfAFile(t *testing.T) {
	f := newDevFixture(t)
	dir := t.TempDir()
	fifo := func(name string) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A release directory whose package is a FIFO under its digest's name.
	releaseDir := filepath.Join(dir, "release")
	if err := os.CopyFS(releaseDir, os.DirFS(f.v1Dir)); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(releaseDir, "rootfs-1.0.0.upk")
	data, err := os.ReadFile(pkg)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(pkg)
	if err := syscall.Mkfifo(filepath.Join(releaseDir, devSha(data)[7:]), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "dev")
	now := "2026-03-02T00:00:00Z"
	mustRun(t, nil, "device", "init", "--state", state, "--root", f.root, "--hardware", "gw-100", "--now", now)
	_, keyPrefix := packTestKeys(t)
	for _, args := range [][]string{
		{"device", "update", "--state", state, "--now", now, releaseDir},
		{"device", "update", "--state", state, "--now", now, "--release", fifo("release.json"), f.v1Dir},
		{"verify", "--key", keyPrefix + ".pub", fifo("pkg.upk")},
		{"inspect", fifo("inspect.upk")},
		{"delta", "inspect", fifo("p.delta")},
		{"delta", "apply", "--from", fifo("old.img"), "-o", filepath.Join(dir, "new.img"), filepath.Join(f.v2Dir, "rootfs.delta")},
		{"release", "create", "--product", "gw", "--version", "9", "--expires", "720h", "-o", filepath.Join(dir, "r.json"), fifo("r.upk")},
	} {
		done := make(chan cliResult, 1)
		go func() { done <- runCLI(t, nil, args...) }()
		select {
		case r := <-done:
			if r.code == 0 || !strings.Contains(r.stderr, "not a regular file") {
				t.Errorf("upkit %s: exit %d: %s", strings.Join(args[:2], " "), r.code, r.stderr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("upkit %s blocked on a FIFO", strings.Join(args, " "))
		}
	}
}
