//go:build unix

package spec_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/upkit/upkit/spec"
)

// TestOpenRegularRefusesFIFOAtOnce: a FIFO with no writer would block
// os.Open forever; OpenRegular and ReadFile return ErrNotRegular at once.
// Directories and devices are refused too; regular files, symlinks to them
// and missing files behave as with os.Open.
func TestOpenRegularRefusesFIFOAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { _, err := spec.OpenRegular(fifo); done <- err }()
	go func() { _, err := spec.ReadFile(fifo, 10); done <- err }()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, spec.ErrNotRegular) {
				t.Fatalf("FIFO: got %v, want ErrNotRegular", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("blocked on a FIFO")
		}
	}
	if _, err := spec.ReadFile(dir, 10); !errors.Is(err, spec.ErrNotRegular) {
		t.Fatalf("directory: got %v", err)
	}
	if _, err := spec.OpenRegular("/dev/null"); !errors.Is(err, spec.ErrNotRegular) {
		t.Fatalf("/dev/null: got %v", err)
	}
	if _, err := spec.OpenRegular(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: got %v", err)
	}
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("reg", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{reg, filepath.Join(dir, "link")} {
		if b, err := spec.ReadFile(p, 5); err != nil || string(b) != "hello" {
			t.Fatalf("%s: %q, %v", p, b, err)
		}
	}
}
