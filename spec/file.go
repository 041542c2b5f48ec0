package spec

import (
	"fmt"
	"io"
	"os"
)

// ReadFile reads a whole file of at most limit bytes: the one bounded
// reader of small untrusted files (documents, OCI layout manifests, device
// descriptions). It never reads more than limit+1 bytes; a larger file is
// an error wrapping ErrTooLarge. Errors opening the file are returned as
// they are (errors.Is(err, fs.ErrNotExist) works).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
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
