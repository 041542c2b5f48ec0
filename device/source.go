package device

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/upkit/upkit/spec"
)

// Source gives the blobs of a release (packages, deltas) by digest.
//
// Open returns the blob whose digest is digest ("sha256:<hex>"), starting at
// byte offset (0 for the whole blob; more to resume an interrupted
// download). A missing blob is an error wrapping ErrNotFound. The Device
// never trusts what a Source returns: it reads at most the signed size
// (one byte more is ErrTooLong), fewer is ErrTruncated, and the sha256 of
// the whole blob must be the signed digest (else ErrDigest). Implementations:
// NewDirSource here, and the oci package's registry source.
type Source interface {
	Open(ctx context.Context, digest string, offset int64) (io.ReadCloser, error)
}

// DirSource serves blobs from a local directory: an OCI image layout
// (blobs/sha256/<hex>), files named by their digest (<hex>, sha256:<hex> or
// sha256-<hex>), or files of any name, found by hashing every regular file
// of the directory (not its subdirectories) once, on the first digest not
// found by name. Only regular files (or symlinks to them) are read: a FIFO
// or device named like a blob is refused (ErrNotFound, naming it) without
// blocking in open(2).
type DirSource struct {
	dir   string
	mu    sync.Mutex
	index map[string]string // digest -> path, built on demand
}

// NewDirSource returns a Source over the directory dir.
func NewDirSource(dir string) *DirSource { return &DirSource{dir: dir} }

// Open implements Source.
func (s *DirSource) Open(ctx context.Context, digest string, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !spec.ValidDigest(digest) {
		return nil, fmt.Errorf("%w: %q is not a sha256 digest", ErrConfig, digest)
	}
	if offset < 0 {
		return nil, fmt.Errorf("%w: negative offset %d", ErrConfig, offset)
	}
	hexd := digest[7:]
	for _, p := range []string{
		filepath.Join(s.dir, "blobs", "sha256", hexd),
		filepath.Join(s.dir, hexd),
		filepath.Join(s.dir, digest),
		filepath.Join(s.dir, "sha256-"+hexd),
	} {
		f, err := openAt(p, offset)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	p, err := s.lookup(ctx, digest)
	if err != nil {
		return nil, err
	}
	return openAt(p, offset)
}

func openAt(path string, offset int64) (io.ReadCloser, error) {
	f, err := openRegular(OSFS{}, path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: device: %v", ErrNotFound, err)
	}
	if _, err := f.(*os.File).Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("device: seeking %s to %d: %w", path, offset, err)
	}
	return f.(*os.File), nil
}

// lookup finds digest among the directory's files, hashing them once.
func (s *DirSource) lookup(ctx context.Context, digest string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index == nil {
		idx := map[string]string{}
		entries, err := os.ReadDir(s.dir)
		if err != nil {
			return "", fmt.Errorf("device: reading source directory: %w", err)
		}
		buf := make([]byte, 64<<10)
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			if err := ctx.Err(); err != nil {
				return "", err
			}
			p := filepath.Join(s.dir, e.Name())
			d, err := hashFile(ctx, p, buf)
			if err != nil {
				return "", err
			}
			idx[d] = p
		}
		s.index = idx
	}
	p, ok := s.index[digest]
	if !ok {
		return "", fmt.Errorf("%w: %s in %s", ErrNotFound, digest, s.dir)
	}
	return p, nil
}

func hashFile(ctx context.Context, path string, buf []byte) (string, error) {
	f, err := openRegular(OSFS{}, path, os.O_RDONLY, 0)
	if err != nil {
		return "", fmt.Errorf("device: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := copyCtx(ctx, h, f, buf); err != nil {
		return "", fmt.Errorf("device: hashing %s: %w", path, err)
	}
	return spec.HashDigest(h).String(), nil
}
