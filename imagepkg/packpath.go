package imagepkg

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/spec"
)

// PackPath packs the file or directory inputPath into a package written at
// outPath, and returns the metadata written.
//
// A regular file (symlinks to one are followed) becomes a "file" payload. A
// directory becomes a "tar" payload, a deterministic tar archive: entries
// in depth-first order with each directory's entries sorted by name,
// relative slash-separated names ("dir/" for directories), uid and gid 0,
// empty user and group names, permission bits (and setuid, setgid, sticky)
// kept, every mtime = opts.ModTime, no access or change times; only
// regular files, directories and symlinks are allowed (anything else is an
// error) and symlinks must stay inside the directory, followed through the
// directory's other symlinks as Extract follows them (else ErrUnsafePath);
// names and link targets obey MaxPathLength and MaxPathDepth (else
// ErrPathTooLong).
// Hard-linked files are stored as separate regular files. The output must
// not be inside the input directory.
//
// The package is written in place (see Pack) to a temporary file in
// outPath's directory, fsynced, and renamed to outPath only when complete;
// on any error outPath is untouched and no temporary file is left behind.
// When opts.Digest is set, the package is hashed from the temporary file
// while it is being synced.
func PackPath(ctx context.Context, outPath, inputPath string, opts PackOptions, s spec.Signer) (*Metadata, error) {
	fi, err := os.Stat(inputPath)
	if err != nil {
		return nil, fmt.Errorf("imagepkg: input: %w", err)
	}
	dir := filepath.Dir(outPath)
	opts.TempDir = dir
	switch {
	case fi.Mode().IsRegular():
		opts.Kind = KindFile
	case fi.IsDir():
		opts.Kind = KindTar
		if inside, err := isInside(outPath, inputPath); err != nil {
			return nil, err
		} else if inside {
			return nil, fmt.Errorf("%w: output %s is inside the input directory %s", ErrInvalidOptions, outPath, inputPath)
		}
	default:
		return nil, fmt.Errorf("%w: input %s is neither a regular file nor a directory (%s)", ErrInvalidOptions, inputPath, fi.Mode().Type())
	}
	if _, err := metadataFromOptions(opts); err != nil {
		return nil, err
	}
	digest := opts.Digest
	opts.Digest = nil
	var meta *Metadata
	err = atomicfile.Write(outPath, 0o644, func(out *os.File) error {
		var src io.Reader
		if opts.Kind == KindTar {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(WriteTar(ctx, pw, inputPath, opts.ModTime)) }()
			defer pr.Close()
			src = pr
		} else {
			f, err := spec.OpenRegular(inputPath)
			if err != nil {
				return fmt.Errorf("imagepkg: input: %w", err)
			}
			defer f.Close()
			src = f
		}
		var err error
		if meta, err = Pack(ctx, out, src, opts, s); err != nil {
			return err
		}
		if digest == nil {
			return nil
		}
		end, err := out.Seek(0, io.SeekCurrent)
		if err != nil {
			return fmt.Errorf("imagepkg: package file: %w", err)
		}
		// Sync while hashing: the write-back and the hash overlap, and
		// atomicfile's own sync then finds nothing left to write.
		synced := make(chan error, 1)
		go func() { synced <- out.Sync() }()
		herr := hashRange(ctx, digest, out, 0, end)
		if serr := <-synced; serr != nil {
			return fmt.Errorf("imagepkg: syncing the package: %w", serr)
		}
		return herr
	})
	if err != nil {
		return nil, err
	}
	return meta, nil
}

func isInside(p, dir string) (bool, error) {
	ap, err := filepath.Abs(p)
	if err != nil {
		return false, fmt.Errorf("imagepkg: %w", err)
	}
	ad, err := filepath.Abs(dir)
	if err != nil {
		return false, fmt.Errorf("imagepkg: %w", err)
	}
	rel, err := filepath.Rel(ad, ap)
	return err == nil && filepath.IsLocal(rel), nil
}

// WriteTar writes the directory root as the deterministic tar archive that
// PackPath packs (see there), with every mtime set to modTime (zero: the
// Unix epoch).
func WriteTar(ctx context.Context, w io.Writer, root string, modTime time.Time) error {
	if modTime.IsZero() {
		modTime = time.Unix(0, 0)
	}
	modTime = modTime.UTC().Truncate(time.Second)
	tw := tar.NewWriter(w)
	buf := make([]byte, ReadBufferSize)
	t := newTree()
	if err := writeTarDir(ctx, tw, t, root, "", modTime, buf); err != nil {
		return err
	}
	// The rule Extract applies: every link resolved through the others.
	if err := t.checkLinks(); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("imagepkg: finishing the tar archive: %w", err)
	}
	return nil
}

func writeTarDir(ctx context.Context, tw *tar.Writer, t *tree, root, rel string, modTime time.Time, buf []byte) error {
	entries, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return fmt.Errorf("imagepkg: reading directory: %w", err)
	}
	// os.ReadDir sorts by file name.
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Join(rel, e.Name())
		if err := checkPathLimits("name", name); err != nil {
			return err
		}
		full := filepath.Join(root, filepath.FromSlash(name))
		fi, err := os.Lstat(full)
		if err != nil {
			return fmt.Errorf("imagepkg: %w", err)
		}
		hdr := &tar.Header{
			Name:    name,
			Mode:    tarMode(fi.Mode()),
			ModTime: modTime,
			Format:  tar.FormatPAX,
		}
		switch {
		case fi.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = fi.Size()
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return fmt.Errorf("imagepkg: %w", err)
			}
			if err := checkPathLimits("symlink target", target); err != nil {
				return err
			}
			if !linkStaysInside(name, target) {
				return fmt.Errorf("%w: symlink %s -> %s leaves the directory", ErrUnsafePath, name, target)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
		default:
			return fmt.Errorf("%w: %s is a %s; only regular files, directories and symlinks can be packed", ErrInvalidOptions, full, fi.Mode().Type())
		}
		if _, err := t.add(name, hdr.Typeflag, hdr.Linkname); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("imagepkg: tar entry %s: %w", name, err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			if err := copyFileInto(tw, full, hdr.Size, buf); err != nil {
				return err
			}
		case tar.TypeDir:
			if err := writeTarDir(ctx, tw, t, root, name, modTime, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFileInto(w io.Writer, name string, size int64, buf []byte) error {
	f, err := spec.OpenRegular(name)
	if err != nil {
		return fmt.Errorf("imagepkg: %w", err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(struct{ io.Reader }{f}, size), buf)
	if err != nil {
		return fmt.Errorf("imagepkg: packing %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("imagepkg: %s shrank while being packed (%d of %d bytes)", name, n, size)
	}
	var one [1]byte
	if k, _ := f.Read(one[:]); k > 0 {
		return fmt.Errorf("imagepkg: %s grew while being packed", name)
	}
	return nil
}

// tarMode keeps permission, setuid, setgid and sticky bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// linkStaysInside reports whether a symlink at name (slash-separated,
// relative to the root) pointing to target resolves, lexically, inside
// the root.
func linkStaysInside(name, target string) bool {
	if target == "" || path.IsAbs(target) || filepath.IsAbs(target) {
		return false
	}
	return filepath.IsLocal(filepath.FromSlash(path.Join(path.Dir(name), target)))
}
