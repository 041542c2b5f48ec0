package device

// WriteFileAtomic replaces path with data through fsys, as FileStore and
// FileSlots do: a temporary file in the same directory, written and
// fsynced, renamed over path, then the directory fsynced. A crash at any
// step leaves either the old or the new content (and possibly a stray
// temporary file, which readers ignore). It is exported for the backends in
// device's subpackages (bootloader environments), so that their power-loss
// tests can cut power between any two calls of an FS, as device's own do.
func WriteFileAtomic(fsys FS, path string, data []byte) error {
	return writeFileAtomic(fsys, path, data)
}

// ReadFileLimit reads the whole file path through fsys, failing if it is
// larger than limit bytes (so a hostile or damaged file cannot make the
// reader allocate without bound).
func ReadFileLimit(fsys FS, path string, limit int64) ([]byte, error) {
	return readFileLimit(fsys, path, limit)
}
