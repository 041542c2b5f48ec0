package delta

import (
	"bufio"
	"context"
	"fmt"
	"os"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/internal/regfile"
)

// CreateFile makes a patch from the file oldPath to the file newPath and
// writes it to patchPath atomically: through a temporary file in the same
// directory, synced and renamed over patchPath only on success; on failure
// nothing is left behind. Both images are read into memory (see Create).
func CreateFile(ctx context.Context, oldPath, newPath, patchPath string, opts *Options) (*Header, error) {
	old, err := regfile.ReadFile(oldPath)
	if err != nil {
		return nil, fmt.Errorf("delta: reading old image: %w", err)
	}
	new, err := regfile.ReadFile(newPath)
	if err != nil {
		return nil, fmt.Errorf("delta: reading new image: %w", err)
	}
	var h *Header
	err = atomicfile.Write(patchPath, 0o644, func(w *os.File) error {
		var err error
		h, err = Create(ctx, old, new, w, opts)
		return err
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
	old, err := regfile.Open(oldPath)
	if err != nil {
		return nil, fmt.Errorf("delta: opening old image: %w", err)
	}
	defer old.Close()
	st, err := old.Stat()
	if err != nil {
		return nil, fmt.Errorf("delta: opening old image: %w", err)
	}
	pf, err := regfile.Open(patchPath)
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
