package delta

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/spec"
)

// CreateFile makes a patch from the file oldPath to the file newPath and
// writes it to patchPath atomically: through a temporary file in the same
// directory, synced and renamed over patchPath only on success; on failure
// nothing is left behind. Both images are read into memory (see Create);
// an image over MaxImageSize is ErrTooLarge before it is read.
func CreateFile(ctx context.Context, oldPath, newPath, patchPath string, opts *Options) (*Header, error) {
	old, err := readImage(oldPath)
	if err != nil {
		return nil, fmt.Errorf("delta: reading old image: %w", err)
	}
	new, err := readImage(newPath)
	if err != nil {
		return nil, fmt.Errorf("delta: reading new image: %w", err)
	}
	var h *Header
	err = atomicfile.Write(patchPath, 0o644, func(w *os.File) error {
		bw := bufio.NewWriterSize(w, chunkSize)
		var err error
		if h, err = Create(ctx, old, new, bw, opts); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// ApplyFile applies the patch file patchPath to the file oldPath and writes
// the new image to outPath atomically (temporary file in the same
// directory, synced, renamed only when Apply succeeded, including the new
// digest check; nothing is left behind on failure). outPath may not be
// oldPath. Errors are those of Apply.
func ApplyFile(ctx context.Context, oldPath, patchPath, outPath string) (*Header, error) {
	if atomicfile.SameFile(oldPath, outPath) {
		return nil, fmt.Errorf("delta: output %s is the old image; write elsewhere", outPath)
	}
	old, err := spec.OpenRegular(oldPath)
	if err != nil {
		return nil, fmt.Errorf("delta: opening old image: %w", err)
	}
	defer old.Close()
	st, err := old.Stat()
	if err != nil {
		return nil, fmt.Errorf("delta: opening old image: %w", err)
	}
	pf, err := spec.OpenRegular(patchPath)
	if err != nil {
		return nil, fmt.Errorf("delta: opening patch: %w", err)
	}
	defer pf.Close()
	var h *Header
	err = atomicfile.Write(outPath, 0o644, func(w *os.File) error {
		bw := bufio.NewWriterSize(w, chunkSize)
		var err error
		h, err = Apply(ctx, old, st.Size(), bufio.NewReaderSize(pf, chunkSize), bw)
		if err != nil {
			return err
		}
		return bw.Flush()
	})
	return h, err
}

// readImage reads a whole image file, refusing one over MaxImageSize
// before reading it. The buffer is allocated once, at the file's size.
func readImage(path string) ([]byte, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxImageSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d a patch allows", ErrTooLarge, path, st.Size(), int64(MaxImageSize))
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return nil, fmt.Errorf("%s grew while it was read", path)
	}
	return b, nil
}

// FileInfo is what InspectFile tells of a patch file.
type FileInfo struct {
	*Header
	// Digest and Size are those of the whole file: what release manifests
	// list for a delta.
	Digest string
	Size   int64
}

// InspectFile reads the header of the patch file at path (ReadHeader) and
// hashes the whole file, which must be exactly Header.PatchSize bytes
// (ErrTruncated or ErrTrailingData otherwise). The body is not decoded:
// Apply checks it.
func InspectFile(path string) (*FileInfo, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum := sha256.New()
	h, err := ReadHeader(io.TeeReader(f, sum))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	n, err := io.Copy(sum, f)
	if err != nil {
		return nil, fmt.Errorf("delta: reading %s: %w", path, err)
	}
	switch size := HeaderSize + n; {
	case size < h.PatchSize():
		return nil, fmt.Errorf("%w: %s is %d bytes, its header declares %d", ErrTruncated, path, size, h.PatchSize())
	case size > h.PatchSize():
		return nil, fmt.Errorf("%w: %s is %d bytes, its header declares %d", ErrTrailingData, path, size, h.PatchSize())
	}
	return &FileInfo{Header: h, Digest: spec.HashDigest(sum).String(), Size: h.PatchSize()}, nil
}
