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
