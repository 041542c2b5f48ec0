// Package looptest gives tests a real block device: a loop device over a
// file in the test's temporary directory, detached when the test ends.
//
// Attaching a loop device needs root (CAP_SYS_ADMIN) and losetup (Debian:
// the mount package). When either is missing the test fails, saying so; it
// never skips, so a run that cannot attach a device cannot pass by testing
// nothing.
package looptest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Attach attaches file to a free loop device and returns its path
// (/dev/loopN). The device is detached when the test ends. Extra losetup
// options (such as --partscan, for /dev/loopNpM partition devices) may be
// given.
func Attach(t testing.TB, file string, options ...string) string {
	t.Helper()
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		t.Fatal("looptest: losetup not found: install util-linux's mount package (Debian/Ubuntu: apt-get install mount)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("looptest: attaching a loop device needs root: run this test as root (the block-device tests of device/ubootenv and device/partslots)")
	}
	args := append(append([]string{"--find", "--show"}, options...), file)
	out, err := exec.Command(losetup, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("looptest: losetup --find --show %s: %v\n%s", file, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("looptest: losetup --detach %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

// NewFile creates a file of size bytes (zeros) in the test's temporary
// directory, attaches it, and returns the file and the device.
func NewFile(t testing.TB, name string, size int64) (file, dev string) {
	t.Helper()
	file = t.TempDir() + "/" + name
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return file, Attach(t, file)
}
