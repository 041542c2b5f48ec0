// Package regfile opens files for reading only when they are regular files,
// without ever blocking in open(2): a FIFO (or a device) at a name where a
// tool expects a file, planted in a release directory, an OCI layout or on
// a USB stick, would otherwise hang the reader before any context could
// stop it.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotRegular is returned (wrapped, with the name and the file's type)
// for anything that is not a regular file or a symlink to one.
var ErrNotRegular = errors.New("not a regular file")

// Open opens name for reading: with O_NONBLOCK, so that opening a FIFO
// returns at once, then fstat; anything but a regular file is closed and
// refused with ErrNotRegular. Symlinks to regular files are followed. A
// missing file is an error matching fs.ErrNotExist, as with os.Open.
func Open(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|oNonBlock, 0)
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
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w (%s)", ErrNotRegular, fi.Mode().Type())}
	}
	return f, nil
}

// ReadLimited reads the whole regular file name, of at most limit bytes; a
// longer file is an error wrapping tooLarge (when not nil), naming the
// limit.
func ReadLimited(name string, limit int64, tooLarge error) ([]byte, error) {
	f, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		if tooLarge == nil {
			tooLarge = errors.New("file too large")
		}
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", name, tooLarge, limit)
	}
	return data, nil
}

// ReadFile is os.ReadFile for regular files only (see Open): the whole
// file, whatever its size.
func ReadFile(name string) ([]byte, error) {
	f, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data := make([]byte, 0, fi.Size()+1)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
