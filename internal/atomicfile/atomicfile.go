// Package atomicfile replaces files so that a reader, or a machine after a
// crash or power loss, finds either the old content or the new, never a
// part, and never a temporary file left in the way.
//
// It is the one place upkit's tools write an output: keys, packages,
// extracted images, deltas, documents, OCI layout indexes. (The device
// library has its own writer behind a file-system interface, so that its
// power-loss tests can cut power between any two calls.)
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Write creates a temporary file in path's directory and calls write with
// it. When write returns nil, the file gets mode perm, is synced, closed,
// renamed over path, and the directory is synced so the rename survives
// power loss. On any error the temporary file is removed and path is left
// as it was; an error from write is returned unchanged, others name path.
func Write(path string, perm os.FileMode, write func(f *os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			if f != nil {
				f.Close()
			}
			os.Remove(tmp)
		}
	}()
	// Mode first: CreateTemp makes the file 0600, and a key must never be
	// readable by others even for a moment, so only ever widen after.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("writing %s: %w", path, cerr)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	renamed = true // path is the new file now: nothing may remove it
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("wrote %s, but %w", path, err)
	}
	return nil
}

// WriteBytes is Write for content already in memory.
func WriteBytes(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(f *os.File) error {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		return nil
	})
}

// SyncDir syncs directory dir, making a rename or creation in it durable.
// File systems that cannot sync a directory (EINVAL) are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// SameFile reports whether a and b name the same existing file (also
// through links or different spellings of the path): the check a writer
// makes before replacing an output that might be its own input.
func SameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(sa, sb)
}
