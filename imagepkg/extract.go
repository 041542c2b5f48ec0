package imagepkg

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/upkit/upkit/internal/atomicfile"
)

// Extract writes the payload of p to dest, verifying it on the way. p's
// signature must have been checked with p.VerifySignature (else
// ErrSignature), and its payload not yet read.
//
// A "file" payload is written to the file dest through a temporary file in
// the same directory, renamed to dest only once the whole payload has
// passed its size and digest checks (an existing file dest is replaced; a
// directory dest is an error).
//
// A "tar" payload is extracted into a new temporary directory next to dest,
// renamed to dest once the archive and the payload checks have passed; dest
// must not exist or be an empty directory. Extraction goes through an
// os.Root and refuses, with ErrUnsafePath: absolute names and names with
// ".." (filepath.IsLocal), symlinks whose target is absolute or leads
// outside the root (followed through the archive's other symlinks, made
// before or after it, as the kernel would follow them in dest; symlink
// loops and more than MaxSymlinkHops nested links too), hard links to
// anything but an earlier regular file of the archive, entries below a
// symlink, duplicate entries, device files and FIFOs. Names and link
// targets longer than MaxPathLength bytes or deeper than MaxPathDepth
// components are ErrPathTooLong; sparse files (GNU or PAX) and other entry
// types are ErrUnsupported. The work is linear in the length of the names.
// Extracted files and directories get the archive's permission bits (0777
// mask: setuid, setgid and sticky are dropped), dest itself 0755; owners
// and times are not restored.
//
// On any error nothing is left at dest (beyond what was there) and the
// temporary file or directory is removed.
func Extract(ctx context.Context, p *Reader, dest string) error {
	if !p.sigVerified {
		return fmt.Errorf("%w: refusing to extract a package whose signature was not verified (call VerifySignature first)", ErrSignature)
	}
	if p.consumed {
		return ErrPayloadConsumed
	}
	payload := p.Payload()
	defer closeReader(payload)
	switch p.Metadata.Payload.Kind {
	case KindFile:
		if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
			return fmt.Errorf("imagepkg: extract: %s is a directory but the payload is a single file", dest)
		}
		return atomicfile.Write(dest, 0o644, func(f *os.File) error {
			return copyVerified(ctx, f, payload)
		})
	case KindTar:
		return extractTar(ctx, payload, dest)
	}
	return fmt.Errorf("%w: payload kind %q", ErrUnsupported, p.Metadata.Payload.Kind)
}

func closeReader(r io.Reader) {
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
}

// copyVerified copies src to dst until src's io.EOF.
func copyVerified(ctx context.Context, dst io.Writer, src io.Reader) error {
	if pr, ok := src.(*payloadReader); ok {
		_, err := pr.copyTo(ctx, dst)
		return err
	}
	buf := make([]byte, ReadBufferSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return fmt.Errorf("imagepkg: writing the payload: %w", werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func extractTar(ctx context.Context, payload io.Reader, dest string) (err error) {
	if err := checkExtractDest(dest); err != nil {
		return err
	}
	clean := filepath.Clean(dest)
	tmp, err := os.MkdirTemp(filepath.Dir(clean), "."+filepath.Base(clean)+".extract-*")
	if err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	defer root.Close()
	x := &extractor{ctx: ctx, root: root, tree: newTree(), modes: map[string]fs.FileMode{}, buf: make([]byte, ReadBufferSize)}
	tr := tar.NewReader(payload)
	for {
		hdr, terr := tr.Next()
		if terr == io.EOF {
			break
		}
		if terr == nil {
			terr = x.entry(tr, hdr)
		}
		if terr != nil {
			// A payload error (digest, size, truncation) explains a broken
			// archive better than the tar error it caused: report it first.
			if derr := drain(ctx, payload); derr != nil {
				return derr
			}
			if isPkgError(terr) {
				return terr
			}
			return fmt.Errorf("imagepkg: extract: tar payload: %w", terr)
		}
	}
	// The payload is trusted only once its reader reached io.EOF.
	if err := drain(ctx, payload); err != nil {
		return err
	}
	// Links are checked against the whole archive: a link may lead out
	// through links made before or after it (a -> ., x -> a/a/../..).
	if err := x.tree.checkLinks(); err != nil {
		return err
	}
	if err := x.applyModes(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	if err := root.Close(); err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	if fi, err := os.Lstat(dest); err == nil && fi.IsDir() {
		if err := os.Remove(dest); err != nil { // empty, checked above
			return fmt.Errorf("imagepkg: extract: %w", err)
		}
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(clean)); err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	return nil
}

// checkExtractDest returns nil if dest does not exist or is an empty
// directory.
func checkExtractDest(dest string) error {
	fi, err := os.Lstat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("imagepkg: extract: %s exists and is not a directory", dest)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("imagepkg: extract: directory %s is not empty", dest)
	}
	return nil
}

func isPkgError(err error) bool {
	for _, e := range []error{ErrUnsafePath, ErrPathTooLong, ErrUnsupported, ErrPayloadDigest, ErrPayloadSize, ErrTruncated, ErrTrailingData} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

type extractor struct {
	ctx   context.Context
	root  *os.Root
	tree  *tree                  // every entry made (or implied), to check names and links
	modes map[string]fs.FileMode // permission bits to apply at the end
	buf   []byte
}

// gnuSparsePrefix starts the PAX records of GNU sparse files (formats 0.0,
// 0.1 and 1.0), which archive/tar expands silently.
const gnuSparsePrefix = "GNU.sparse."

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	name, kind, err := checkEntry(hdr)
	if err != nil || name == "" {
		return err
	}
	linkTarget, err := x.place(hdr, name, kind)
	if err != nil {
		return err
	}
	perm := fs.FileMode(hdr.Mode) & fs.ModePerm
	switch kind {
	case tar.TypeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("imagepkg: extract: %w", err)
		}
		x.modes[name] = perm | fs.ModeDir
	case tar.TypeReg:
		return x.writeFile(tr, name, hdr.Size, perm)
	case tar.TypeSymlink:
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return fmt.Errorf("imagepkg: extract: %w", err)
		}
	case tar.TypeLink:
		if err := x.root.Link(filepath.FromSlash(linkTarget.fullName()), name); err != nil {
			return fmt.Errorf("imagepkg: extract: %w", err)
		}
	}
	return nil
}

// checkEntry checks what can be checked of an entry on its own: its name
// (limits, local), that it is not sparse, and its type. It returns the
// cleaned local name ("" for an entry to skip: the root directory itself)
// and the type (TypeRegA as TypeReg).
func checkEntry(hdr *tar.Header) (string, byte, error) {
	raw := hdr.Name
	if err := checkPathLimits("entry name", strings.TrimSuffix(raw, "/")); err != nil {
		return "", 0, err
	}
	name := filepath.Clean(filepath.FromSlash(strings.TrimSuffix(raw, "/")))
	if raw == "" || !filepath.IsLocal(name) || strings.ContainsRune(raw, 0) {
		return "", 0, fmt.Errorf("%w: entry %q is absolute or leaves the root", ErrUnsafePath, truncate(raw))
	}
	// A sparse entry's logical size is not bounded by the bytes the archive
	// holds: a few hundred signed bytes could ask for a terabyte file.
	if hdr.Typeflag == tar.TypeGNUSparse {
		return "", 0, fmt.Errorf("%w: entry %q is a GNU sparse file", ErrUnsupported, truncate(raw))
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, gnuSparsePrefix) {
			return "", 0, fmt.Errorf("%w: entry %q is a sparse file (PAX record %s)", ErrUnsupported, truncate(raw), truncate(k))
		}
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return "", 0, nil
		}
		return "", 0, fmt.Errorf("%w: entry %q names the root", ErrUnsafePath, truncate(raw))
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
		return name, hdr.Typeflag, nil
	case tar.TypeRegA:
		return name, tar.TypeReg, nil
	case tar.TypeChar, tar.TypeBlock:
		return "", 0, fmt.Errorf("%w: %q is a device file", ErrUnsafePath, truncate(raw))
	case tar.TypeFifo:
		return "", 0, fmt.Errorf("%w: %q is a FIFO", ErrUnsafePath, truncate(raw))
	}
	return "", 0, fmt.Errorf("%w: entry %q has tar type %q", ErrUnsupported, truncate(raw), hdr.Typeflag)
}

// place checks the entry hdr, of cleaned local name and kind (checkEntry),
// against the archive so far: a symlink's target lexically (links through
// the archive's other links are checked once the whole archive is known,
// tree.checkLinks), a hard link's target (an earlier regular file, whose
// node it returns), the parents (directories of the archive or implied)
// and that the name is new. It records the entry and makes its parent
// directories.
func (x *extractor) place(hdr *tar.Header, name string, kind byte) (*node, error) {
	raw, slashName := hdr.Name, filepath.ToSlash(name)
	var linkTarget *node
	switch kind {
	case tar.TypeSymlink:
		if err := checkPathLimits("symlink target", hdr.Linkname); err != nil {
			return nil, err
		}
		// (lexically first: the common mistake, reported early)
		if !linkStaysInside(slashName, hdr.Linkname) {
			return nil, fmt.Errorf("%w: symlink %q -> %q leaves the root", ErrUnsafePath, truncate(raw), truncate(hdr.Linkname))
		}
	case tar.TypeLink:
		if err := checkPathLimits("hard link target", hdr.Linkname); err != nil {
			return nil, err
		}
		target := filepath.Clean(filepath.FromSlash(hdr.Linkname))
		if filepath.IsLocal(target) {
			linkTarget = x.tree.lookup(filepath.ToSlash(target))
		}
		if linkTarget == nil || linkTarget.kind != tar.TypeReg {
			return nil, fmt.Errorf("%w: hard link %q -> %q does not name an earlier regular file of the archive", ErrUnsafePath, truncate(raw), truncate(hdr.Linkname))
		}
	}
	if _, err := x.tree.add(slashName, kind, hdr.Linkname); err != nil {
		return nil, err
	}
	if parent := filepath.Dir(name); parent != "." {
		if err := x.root.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("%w: creating %s: %v", ErrUnsafePath, parent, err)
		}
	}
	return linkTarget, nil
}

// writeFile writes a regular file entry of size bytes.
func (x *extractor) writeFile(tr *tar.Reader, name string, size int64, perm fs.FileMode) error {
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("imagepkg: extract: %w", err)
	}
	x.modes[name] = perm
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, tr, x.buf)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("imagepkg: extract: %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("imagepkg: extract: %s: wrote %d of %d bytes", name, n, size)
	}
	return nil
}

// applyModes sets permissions, deepest paths first so that read-only
// directories are closed last.
func (x *extractor) applyModes() error {
	names := make([]string, 0, len(x.modes))
	for n := range x.modes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] > names[j] })
	for _, n := range names {
		if err := x.root.Chmod(n, x.modes[n].Perm()); err != nil {
			return fmt.Errorf("imagepkg: extract: %w", err)
		}
	}
	return nil
}
