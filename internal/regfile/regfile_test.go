package regfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/regfile"
)

// TestOpenRefusesFIFOAtOnce: a FIFO with no writer would block os.Open
// forever; Open returns ErrNotRegular at once. Regular files, symlinks to
// them, and missing files behave as with os.Open.
func TestOpenRefusesFIFOAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := regfile.Open(fifo); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, regfile.ErrNotRegular) {
			t.Fatalf("FIFO: got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open blocked on a FIFO")
	}
	if _, err := regfile.ReadLimited(dir, 10, nil); !errors.Is(err, regfile.ErrNotRegular) {
		t.Fatalf("directory: got %v", err)
	}
	if _, err := regfile.Open("/dev/null"); !errors.Is(err, regfile.ErrNotRegular) {
		t.Fatalf("/dev/null: got %v", err)
	}
	if _, err := regfile.Open(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
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
		if b, err := regfile.ReadLimited(p, 5, nil); err != nil || string(b) != "hello" {
			t.Fatalf("%s: %q, %v", p, b, err)
		}
	}
	tooLarge := errors.New("too large")
	if _, err := regfile.ReadLimited(reg, 4, tooLarge); !errors.Is(err, tooLarge) {
		t.Fatalf("over the limit: got %v", err)
	}
}
