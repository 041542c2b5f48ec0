package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotRegular is returned (wrapped in an *os.PathError naming the file and
// its type) by OpenRegular and ReadFile for anything that is not a regular
// file or a symlink to one: a FIFO, a device, a socket or a directory.
var ErrNotRegular = errors.New("spec: not a regular file")

// OpenRegular opens path for reading only if it is a regular file (or a
// symlink to one), without ever blocking in open(2): the file is opened
// with O_NONBLOCK, so that a FIFO planted where a tool expects a file (in a
// release directory, an OCI layout, on a USB stick) returns at once instead
// of hanging the reader before any context could stop it, then checked with
// fstat; anything else is closed and refused with ErrNotRegular. A missing
// file is an error matching fs.ErrNotExist, as with os.Open. Every upkit
// reader of a named input file opens it here.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oNonBlock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, fi.Mode().Type())}
	}
	return f, nil
}

// ReadFile reads a whole file of at most limit bytes: the one bounded
// reader of small untrusted files (documents, OCI layout manifests, device
// descriptions, key files). The file is opened by OpenRegular (anything but
// a regular file is ErrNotRegular, without blocking). It never reads more
// than limit+1 bytes; a larger file is an error wrapping ErrTooLarge.
// Errors opening the file are returned as they are (errors.Is(err,
// fs.ErrNotExist) works).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrTooLarge, limit)
	}
	return data, nil
}
