package cliutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
)

// rssFileKiB is this process's resident file-backed memory (RssFile).
func rssFileKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := bytes.Fields(l); len(f) >= 2 && string(f[0]) == "RssFile:" {
			n, err := strconv.Atoi(string(f[1]))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseExecutablePages checks, in a fresh process (this test binary
// run again), that the binary's read-only mappings are released (their
// resident pages drop) and that the process runs on: the pages it needs
// fault back in, and calls into libc (cgo) still find it.
func TestReleaseExecutablePages(t *testing.T) {
	if os.Getenv("UPKIT_TEST_RELEASE_PAGES") == "1" {
		before := rssFileKiB(t)
		n := ReleaseExecutablePages()
		after := rssFileKiB(t)
		// With cgo, os/user calls libc through the binary's relocated
		// GOT: a release that dropped the RELRO segment's pages crashes
		// here (a jump to address 0).
		if _, err := user.Current(); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("released %d %d %d\n", n, before, after)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReleaseExecutablePages$", "-test.count=1")
	cmd.Env = append(os.Environ(), "UPKIT_TEST_RELEASE_PAGES=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var n, before, after int
	i := bytes.Index(out, []byte("released "))
	if i < 0 {
		t.Fatalf("no figures from the child: %s", out)
	}
	if _, err := fmt.Sscanf(string(out[i:]), "released %d %d %d", &n, &before, &after); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("released %d bytes of mappings; RssFile %d -> %d KiB", n, before, after)
	if n <= 0 {
		t.Fatal("no mapping of the executable released")
	}
	if after >= before {
		t.Fatalf("RssFile did not drop: %d -> %d KiB", before, after)
	}
}

// TestReleaseExecutablePagesExternalLink runs a program linked as upkit is
// (cgo, external linker: its GOT sits in a RELRO segment that the loader
// wrote, then made read-only) that releases its pages and then calls libc.
// Dropping the RELRO pages would make that call jump to address 0.
func TestReleaseExecutablePagesExternalLink(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "relprog")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-ldflags=-linkmode=external", "-o", bin, "./testdata/relprog")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test program (cgo and gcc needed: scripts/test-deps.sh installs them): %v\n%s", err, out)
	}
	if out, err := exec.Command("readelf", "-lW", bin).Output(); err == nil && !bytes.Contains(out, []byte("GNU_RELRO")) {
		t.Fatalf("the test program has no RELRO segment: the test proves nothing\n%s", out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte("released ")) || bytes.HasPrefix(out, []byte("released 0;")) {
		t.Fatalf("the program failed after releasing its pages: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
	// The shared libraries' read-only pages (libc, the loader) are
	// unmapped too.
	var n, before, after int
	if _, err := fmt.Sscanf(string(out), "released %d; libraries %d %d;", &n, &before, &after); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if before == 0 || after >= before {
		t.Fatalf("the shared libraries' resident pages did not drop: %d -> %d KiB", before, after)
	}
}

// TestReleasable checks which mappings of an smaps listing
// ReleaseExecutablePages may drop: never one with a page of its own, in
// memory or swapped out (a relocated RELRO segment), nor a writable,
// shared or anonymous one, nor one whose Anonymous or Swap line is missing.
func TestReleasable(t *testing.T) {
	smaps := `00400000-00ac4000 r-xp 00002000 fe:00 1234 /usr/bin/upkit
Rss: 100 kB
Anonymous: 0 kB
Swap: 0 kB
7f00000000-7f00001000 r--p 001cf000 fe:00 326269 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous: 0 kB
Swap: 4 kB
7f00001000-7f00002000 r--p 001d0000 fe:00 326269 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous: 4 kB
Swap: 0 kB
7f00002000-7f00003000 r-xp 00026000 fe:00 326269 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous: 0 kB
Swap: 0 kB
7f00003000-7f00004000 rw-p 001d3000 fe:00 326269 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous: 0 kB
Swap: 0 kB
7f00004000-7f00005000 r--s 00000000 00:05 77 /dev/shm/x
Anonymous: 0 kB
Swap: 0 kB
7f00005000-7f00006000 r--p 00000000 00:00 0 [vvar]
Anonymous: 0 kB
Swap: 0 kB
7f00006000-7f00007000 r--p 00000000 fe:00 99 /opt/my lib/libp11.so
Anonymous: 0 kB
7f00007000-7f00008000 r--p 00000000 fe:00 99 /opt/my lib/libp11.so
Anonymous: 0 kB
Swap: 0 kB
`
	got := parseSmaps([]byte(smaps))
	want := []bool{true, false, false, true, false, false, false, false, true}
	if len(got) != len(want) {
		t.Fatalf("parsed %d mappings, want %d: %+v", len(got), len(want), got)
	}
	for i, m := range got {
		if m.releasable() != want[i] {
			t.Errorf("mapping %d (%s %s, anon %d, swap %d): releasable %v, want %v", i, m.perms, m.path, m.anonKiB, m.swapKiB, !want[i], want[i])
		}
	}
	if got[8].path != "/opt/my lib/libp11.so" || got[0].dev != "fe:00" || got[0].inode != 1234 {
		t.Errorf("fields: %+v", got[8])
	}
	for path, so := range map[string]bool{
		"/usr/lib/x86_64-linux-gnu/libc.so.6": true, "/lib64/ld-linux-x86-64.so.2": true, "/opt/my lib/libp11.so": true,
		"/usr/bin/upkit": false, "/dev/mem": false, "[vdso]": false, "libc.so.6": false, "/tmp/so.data": false,
	} {
		if sharedObject(path) != so {
			t.Errorf("sharedObject(%q) = %v", path, !so)
		}
	}
}

// TestDevNumbers checks that the executable's device, as stat gives it,
// reads as /proc/self/maps prints it: ReleaseExecutablePages finds the
// executable's mappings by device and inode.
func TestDevNumbers(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	maps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range parseSmaps(maps) {
		if m.inode == st.Ino && m.dev == devNumbers(st.Dev) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no mapping of the executable with device %s and inode %d in /proc/self/smaps", devNumbers(st.Dev), st.Ino)
	}
	if got := devNumbers(8<<8 | 1); got != "08:01" { // sda1
		t.Errorf("devNumbers(8:1) = %s, want 08:01", got)
	}
	if got := devNumbers(0xfe00); got != "fe:00" {
		t.Errorf("devNumbers(0xfe00) = %s, want fe:00", got)
	}
	if got := devNumbers(uint64(259)<<8 | 0x1); got != "103:01" {
		t.Errorf("devNumbers(259:1) = %s, want 103:01", got)
	}
}
