package imagepkg_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
)

// makeTree builds a directory with nested files, an empty directory, a
// read-only file, an executable, and a symlink that stays inside.
func makeTree(t *testing.T, root string) {
	t.Helper()
	files := map[string]struct {
		data string
		mode fs.FileMode
	}{
		"bin/app":             {"#!/bin/sh\necho hi\n", 0o755},
		"etc/app.conf":        {"key = value\n", 0o644},
		"etc/secret":          {"s3cr3t\n", 0o600},
		"share/data/big.bin":  {string(mixedPayload(200<<10, 8)), 0o644},
		"share/data/ro.txt":   {"read only\n", 0o444},
		"z-last":              {"", 0o644},
		"a.txt":               {"sorted before a/\n", 0o644},
		"a/inner":             {"inner\n", 0o640},
		"deep/x/y/z/file.txt": {"deep\n", 0o644},
	}
	for name, f := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/app.conf", filepath.Join(root, "bin", "conf-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("share/data", filepath.Join(root, "data-link")); err != nil {
		t.Fatal(err)
	}
}

// treeSummary describes a tree: type, permissions, content or link target.
func treeSummary(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			b.WriteString(rel + " -> " + target + "\n")
		case fi.IsDir():
			b.WriteString(rel + "/ " + fi.Mode().Perm().String() + "\n")
		default:
			data, _ := os.ReadFile(p)
			b.WriteString(rel + " " + fi.Mode().Perm().String() + " " + digestOf(data) + "\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRoundTripDirectory(t *testing.T) {
	ctx := context.Background()
	s := testkeys.Ed25519(1)
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			makeTree(t, src)
			opts := testOptions(comp)
			opts.Type = imagepkg.TypeApp
			opts.ModTime = time.Unix(1700000000, 0)
			out := filepath.Join(dir, "app.upk")
			meta, err := imagepkg.PackPath(ctx, out, src, opts, s)
			if err != nil {
				t.Fatalf("PackPath: %v", err)
			}
			if meta.Payload.Kind != imagepkg.KindTar {
				t.Fatalf("kind %q", meta.Payload.Kind)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p, err := imagepkg.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.VerifySignature(s.Public()); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(dir, "dest")
			if err := imagepkg.Extract(ctx, p, dest); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if got, want := treeSummary(t, dest), treeSummary(t, src); got != want {
				t.Fatalf("extracted tree differs:\n got:\n%s\nwant:\n%s", got, want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 3 {
				t.Fatalf("leftover temporary files: %v", entries)
			}
		})
	}
}

// TestDirectoryReproducible: the tar does not depend on file times, owners
// or the input's location.
func TestDirectoryReproducible(t *testing.T) {
	ctx := context.Background()
	s := testkeys.Ed25519(1)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "elsewhere", "b")
	makeTree(t, a)
	makeTree(t, b)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(b, "etc", "app.conf"), old, old); err != nil {
		t.Fatal(err)
	}
	opts := testOptions("zstd")
	opts.Type = imagepkg.TypeApp
	if _, err := imagepkg.PackPath(ctx, filepath.Join(dir, "a.upk"), a, opts, s); err != nil {
		t.Fatal(err)
	}
	if _, err := imagepkg.PackPath(ctx, filepath.Join(dir, "b.upk"), b, opts, s); err != nil {
		t.Fatal(err)
	}
	pa, _ := os.ReadFile(filepath.Join(dir, "a.upk"))
	pb, _ := os.ReadFile(filepath.Join(dir, "b.upk"))
	if !bytes.Equal(pa, pb) {
		t.Fatal("packing equal trees gave different packages")
	}
	// The tar itself: sorted, owners and times fixed.
	var buf bytes.Buffer
	mt := time.Unix(1234567890, 0)
	if err := imagepkg.WriteTar(ctx, &buf, a, mt); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(mt) {
			t.Errorf("%s: uid %d gid %d uname %q gname %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	want := "a/ a/inner a.txt bin/ bin/app bin/conf-link data-link deep/ deep/x/ deep/x/y/ deep/x/y/z/ deep/x/y/z/file.txt empty/ etc/ etc/app.conf etc/secret share/ share/data/ share/data/big.bin share/data/ro.txt z-last"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("tar entries:\n got %s\nwant %s", got, want)
	}
}

func TestPackPathRefuses(t *testing.T) {
	ctx := context.Background()
	s := testkeys.Ed25519(1)
	opts := testOptions("none")
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		os.Mkdir(src, 0o755)
		if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := imagepkg.PackPath(ctx, filepath.Join(dir, "out.upk"), src, opts, s)
		if !errors.Is(err, imagepkg.ErrInvalidOptions) || !strings.Contains(err.Error(), "pipe") {
			t.Fatalf("got %v", err)
		}
		assertOnly(t, dir, "src")
	})
	t.Run("escaping symlink", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		os.Mkdir(src, 0o755)
		os.Symlink("../../etc/passwd", filepath.Join(src, "evil"))
		_, err := imagepkg.PackPath(ctx, filepath.Join(dir, "out.upk"), src, opts, s)
		if !errors.Is(err, imagepkg.ErrUnsafePath) {
			t.Fatalf("got %v", err)
		}
		assertOnly(t, dir, "src")
	})
	t.Run("output inside input", func(t *testing.T) {
		dir := t.TempDir()
		_, err := imagepkg.PackPath(ctx, filepath.Join(dir, "out.upk"), dir, opts, s)
		if !errors.Is(err, imagepkg.ErrInvalidOptions) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad metadata", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "in"), []byte("x"), 0o644)
		bad := opts
		bad.Version = "v1.0"
		_, err := imagepkg.PackPath(ctx, filepath.Join(dir, "out.upk"), filepath.Join(dir, "in"), bad, s)
		if !errors.Is(err, imagepkg.ErrMetadata) || !strings.Contains(err.Error(), "version") {
			t.Fatalf("got %v", err)
		}
		assertOnly(t, dir, "in")
	})
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

// evilTar builds a tar archive from entries.
func evilTar(t *testing.T, entries []*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 2
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractPathTraversal(t *testing.T) {
	s := testkeys.Ed25519(1)
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
	dirh := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	sym := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
	}
	hard := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}
	}
	cases := map[string][]*tar.Header{
		"absolute":                 {reg("/tmp/upkit-evil")},
		"dotdot":                   {reg("../evil")},
		"dotdot inside":            {dirh("a/"), reg("a/../../evil")},
		"symlink absolute":         {sym("l", "/etc")},
		"symlink dotdot":           {sym("l", "../outside")},
		"symlink nested dotdot":    {dirh("a/"), sym("a/l", "../../outside")},
		"write through symlink":    {dirh("sub/"), sym("l", "sub"), reg("l/file")},
		"symlink then dir":         {sym("l", "."), dirh("l/x/")},
		"hardlink absolute":        {hard("h", "/etc/passwd")},
		"hardlink dotdot":          {hard("h", "../outside")},
		"hardlink to missing":      {hard("h", "nothing")},
		"hardlink to symlink":      {sym("l", "x"), hard("h", "l")},
		"char device":              {{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
		"block device":             {{Name: "blk", Typeflag: tar.TypeBlock, Devmajor: 8}},
		"fifo":                     {{Name: "fifo", Typeflag: tar.TypeFifo}},
		"duplicate":                {reg("f"), reg("f")},
		"file then below file":     {reg("f"), reg("f/g")},
		"symlink replaces file":    {reg("f"), sym("f", "g")},
		"empty name symlink dirty": {sym("a", "")},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			payload := evilTar(t, entries)
			opts := testOptions("none")
			opts.Kind = imagepkg.KindTar
			pkg := pack(t, payload, opts, s)
			p, err := imagepkg.Open(bytes.NewReader(pkg))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.VerifySignature(s.Public()); err != nil {
				t.Fatal(err)
			}
			top := t.TempDir()
			work := filepath.Join(top, "work")
			os.Mkdir(work, 0o755)
			err = imagepkg.Extract(context.Background(), p, filepath.Join(work, "dest"))
			if !errors.Is(err, imagepkg.ErrUnsafePath) {
				t.Fatalf("got %v, want ErrUnsafePath", err)
			}
			assertOnly(t, top, "work")
			assertOnly(t, work)
		})
	}
}

func TestExtractDestination(t *testing.T) {
	s := testkeys.Ed25519(1)
	opts := testOptions("zstd")
	opts.Kind = imagepkg.KindTar
	pkg := pack(t, evilTar(t, []*tar.Header{{Name: "ok.txt", Typeflag: tar.TypeReg}}), opts, s)
	extract := func(dest string) error {
		p, err := imagepkg.Open(bytes.NewReader(pkg))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.VerifySignature(s.Public()); err != nil {
			t.Fatal(err)
		}
		return imagepkg.Extract(context.Background(), p, dest)
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if err := extract(empty); err != nil {
		t.Fatalf("into an empty directory: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(empty, "ok.txt")); string(data) != "xx" {
		t.Fatalf("ok.txt = %q", data)
	}
	if err := extract(empty); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("into a non-empty directory: %v", err)
	}
}

func TestPackPathCanceled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, input := range []string{src, filepath.Join(src, "share", "data", "big.bin")} {
		_, err := imagepkg.PackPath(ctx, filepath.Join(dir, "out.upk"), input, testOptions("zstd"), testkeys.Ed25519(1))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: got %v, want context.Canceled", input, err)
		}
		assertOnly(t, dir, "src")
	}
}
