package device

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is the small set of file operations the file-backed Store, Slots and
// the staging area use. OSFS implements it over the operating system; tests
// substitute one that fails (simulated power loss) at any step.
type FS interface {
	// OpenFile opens a file as os.OpenFile does.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Rename atomically replaces newpath with oldpath (same directory).
	Rename(oldpath, newpath string) error
	// Remove removes a file; a missing file is not an error for callers
	// that use errors.Is(err, fs.ErrNotExist).
	Remove(name string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(path string, perm fs.FileMode) error
	// Stat describes a file.
	Stat(name string) (fs.FileInfo, error)
	// ReadDir lists a directory, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	// SyncDir makes the directory's entries (a rename, a new file) durable.
	SyncDir(name string) error
}

// File is an open file of an FS.
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
}

// OSFS is the FS of the operating system.
type OSFS struct{}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Rename implements FS. After renaming it fsyncs the file under its new
// name: FAT (vfat, the EFI system partition where a grubenv lives) keeps a
// file's directory entry with the file, so a rename reaches the disk when
// the renamed file is synced, not when its directory is (SyncDir). Without
// it, a power cut after a replaced grubenv was "synced" left the old
// directory entry pointing at clusters the new FAT had freed.
func (OSFS) Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	f, err := os.OpenFile(newpath, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }

// Stat implements FS.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// ReadDir implements FS.
func (OSFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// SyncDir implements FS: it opens the directory and fsyncs it.
func (OSFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openRegular opens name through fsys and returns it only if it is a
// regular file: a FIFO or a device at the name cannot block the open
// (O_NONBLOCK) nor be read or written. With create set (for every file the
// device creates or writes: staging, slots, state, locks), a symlink at
// the name is refused (O_NOFOLLOW) instead of followed, so that a planted
// link cannot redirect the write.
func openRegular(fsys FS, name string, flag int, perm fs.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0 {
		flag |= oNoFollow
	}
	f, err := fsys.OpenFile(name, flag|oNonBlock, perm)
	if err != nil {
		if flag&oNoFollow != 0 && isSymlinkError(err) {
			return nil, fmt.Errorf("%s is a symbolic link, refusing to follow it: %w", name, err)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	return f, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, written and fsynced, renamed over path, then the directory
// fsynced. A crash at any step leaves either the old or the new content
// (and possibly a stray temporary file, which readers ignore). Something
// other than a regular file at the temporary name is removed, never
// followed.
func writeFileAtomic(fsys FS, path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp")
	f, err := openRegular(fsys, tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The name is ours alone: whatever else is there (a symlink, a
		// FIFO) goes, and is never followed.
		if rerr := fsys.Remove(tmp); rerr == nil {
			f, err = openRegular(fsys, tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		}
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		fsys.Remove(tmp)
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(dir)
}

// readFileLimit reads a whole file of at most limit bytes.
func readFileLimit(fsys FS, path string, limit int64) ([]byte, error) {
	f, err := openRegular(fsys, path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
