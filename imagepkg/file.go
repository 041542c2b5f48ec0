package imagepkg

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/upkit/upkit/spec"
)

// IsPackage reports whether head, the first bytes of a file, starts with
// Magic.
func IsPackage(head []byte) bool {
	return bytes.HasPrefix(head, []byte(Magic))
}

// PackageFile is an image package read whole from a file.
type PackageFile struct {
	*Reader
	Path   string
	Digest string // sha256 of the whole file: what release manifests list
	Size   int64  // bytes of the whole file
}

// ReadPackageFile reads the package file at path once, in memory that does
// not grow with it: it opens the header (Open), verifies the signature
// against keys when any are given (Reader.VerifySignature), streams the
// payload to check its size and digest (Reader.VerifyPayload) and hashes
// the whole file, trailing bytes included. It returns nil and the error
// when the header does not parse. After a signature or payload error it
// returns the PackageFile too, for diagnostics only (never trust it):
// after a payload error its Digest and Size are set.
func ReadPackageFile(ctx context.Context, path string, keys ...*spec.PublicKey) (*PackageFile, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hr := &hashReader{r: bufio.NewReaderSize(f, ReadBufferSize), h: sha256.New()}
	p, err := Open(hr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pf := &PackageFile{Reader: p, Path: path}
	if len(keys) > 0 {
		if err := p.VerifySignature(keys...); err != nil {
			return pf, fmt.Errorf("%s: %w", path, err)
		}
	}
	perr := p.VerifyPayload(ctx)
	// Hash whatever the payload check did not read.
	if _, err := io.CopyBuffer(hr.sink(), hr.r, make([]byte, ReadBufferSize)); err != nil {
		return nil, fmt.Errorf("imagepkg: reading %s: %w", path, err)
	}
	pf.Digest, pf.Size = spec.HashDigest(hr.h).String(), hr.n
	if perr != nil {
		return pf, fmt.Errorf("%s: %w", path, perr)
	}
	return pf, nil
}

// hashReader hashes and counts the bytes read through it.
type hashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *hashReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	c.n += int64(n)
	return n, err
}

// sink returns a writer that hashes and counts the bytes copied to it.
func (c *hashReader) sink() io.Writer { return hashSink{c} }

type hashSink struct{ c *hashReader }

func (s hashSink) Write(b []byte) (int, error) {
	s.c.h.Write(b)
	s.c.n += int64(len(b))
	return len(b), nil
}

// ImageFile is the image a file stands for: the file itself when it is a
// raw image, or the payload of an image package, extracted and verified.
type ImageFile struct {
	// Path holds the image: the file given, or the extracted payload.
	Path string
	// Package is the package the payload came from (its signature NOT
	// checked: a patch binds to the payload digest), nil for a raw image.
	Package *Reader
	temp    string // the extracted payload, removed by Close
}

// OpenImage returns the image of the file at path: path itself when the
// file is not an image package (it does not start with Magic), else the
// package's payload, extracted to a temporary file in dir and kept only if
// it passed its size and digest checks (errors then wrap the package's
// sentinels, ErrRejected). Close removes the temporary file.
func OpenImage(ctx context.Context, path, dir string) (*ImageFile, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, ReadBufferSize)
	if head, _ := br.Peek(len(Magic)); !IsPackage(head) {
		return &ImageFile{Path: path}, nil
	}
	p, err := Open(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".upkit-image-*")
	if err != nil {
		return nil, fmt.Errorf("imagepkg: %w", err)
	}
	img := &ImageFile{Path: tmp.Name(), Package: p, temp: tmp.Name()}
	payload := p.Payload()
	defer closeReader(payload)
	err = copyVerified(ctx, tmp, payload)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		img.Close()
		return nil, fmt.Errorf("%s: payload: %w", path, err)
	}
	return img, nil
}

// Close removes the extracted payload, if any.
func (f *ImageFile) Close() error {
	if f.temp == "" {
		return nil
	}
	err := os.Remove(f.temp)
	f.temp = ""
	return err
}

// VerifyFile verifies the package file at path in one streaming pass, in
// memory that does not grow with it: the header (Open), the signature
// against keys (Reader.VerifySignature), then the payload's size and
// digest, writing it to dest when dest is not "" (Extract; only a verified
// payload is kept there) or else discarding it (Reader.VerifyPayload).
// progress, if not nil, is called with the bytes of the file read so far
// and the file's size. It returns the Reader (nil when the header does not
// parse: diagnostics only on error) and the error.
func VerifyFile(ctx context.Context, path string, keys []*spec.PublicKey, dest string, progress func(done, total int64)) (*Reader, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var src io.Reader = f
	if fi, err := f.Stat(); err == nil && progress != nil {
		src = &progressReader{r: f, total: fi.Size(), update: progress}
	}
	p, err := Open(src)
	if err != nil {
		return nil, err
	}
	if err := p.VerifySignature(keys...); err != nil {
		return p, err
	}
	if dest != "" {
		return p, Extract(ctx, p, dest)
	}
	return p, p.VerifyPayload(ctx)
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r      io.Reader
	n      int64
	total  int64
	update func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.update(p.n, p.total)
	return n, err
}
