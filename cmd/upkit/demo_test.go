package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs `upkit demo` as a newcomer would and checks that the story
// ends as told: v1 installed, v2 through deltas, three attacks refused.
func TestDemo(t *testing.T) {
	keep := filepath.Join(t.TempDir(), "demo")
	r := runCLI(t, nil, "demo", "--keep", keep)
	if r.code != 0 {
		t.Fatalf("demo: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"refused, as it must be: a package with one flipped byte",
		"refused, as it must be: rollback to release 1",
		"refused, as it must be: a tampered delta blob",
		"refused, as it must be: a release with 1 of 2 required signatures",
		"rootfs 1.0.0 -> 2.0.0: delta",
		"sensor 1.0.0 -> 2.0.0: delta",
		"packed MCUboot image 1.0.0",
		"committed release version 2",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// --keep kept the work: keys, releases, the device state.
	for _, p := range []string{"keys/release-a.key", "root.json", "v2/release.json", "device"} {
		if _, err := os.Stat(filepath.Join(keep, p)); err != nil {
			t.Errorf("--keep: %v", err)
		}
	}
	// A non-empty --keep folder is refused rather than mixed into.
	if r := runCLI(t, nil, "demo", "--keep", keep); r.code != exitUsage {
		t.Errorf("demo --keep on a non-empty folder: exit %d, want %d", r.code, exitUsage)
	}
}
