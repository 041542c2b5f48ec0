package imagepkg_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
)

// extractTar packs payload as a signed "tar" package and extracts it into
// a new directory; it returns the parent directory and the error.
func extractTar(t *testing.T, payload []byte) (string, error) {
	t.Helper()
	s := testkeys.Ed25519(1)
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
	work := t.TempDir()
	return work, imagepkg.Extract(context.Background(), p, filepath.Join(work, "dest"))
}

func symh(name, target string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
}

// TestAttackSymlinkChainEscape: each link stays inside when read on its own
// (lexically), but followed through the archive's other links it leads out
// of the extracted directory. Extract must refuse the archive, whatever the
// order of the links, and leave nothing behind.
func TestAttackSymlinkChainEscape(t *testing.T) {
	chain := func(n int) []*tar.Header {
		hs := []*tar.Header{symh("l0", ".")}
		for i := 1; i <= n; i++ {
			hs = append(hs, symh(fmt.Sprintf("l%d", i), fmt.Sprintf("l%d", i-1)))
		}
		return hs
	}
	cases := map[string][]*tar.Header{
		// The reported reproducer: DEST/x resolves to / (4 levels up).
		"a -> . then x -> a/a/a/a/../../../..": {symh("a", "."), symh("x", "a/a/a/a/../../../..")},
		"x first, a -> . after":                {symh("x", "a/a/../../etc/passwd"), symh("a", ".")},
		"through a link to a parent": {
			{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, symh("d/up", ".."), symh("x", "d/up/d/up/.."),
		},
		"link to a link that escapes later": {symh("y", "x/.."), symh("x", "a/a/.."), symh("a", ".")},
		"loop":                              {symh("a", "b"), symh("b", "a")},
		"self loop":                         {symh("a", "a")},
		"too many nested links":             chain(imagepkg.MaxSymlinkHops + 1),
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			work, err := extractTar(t, evilTar(t, entries))
			if !errors.Is(err, imagepkg.ErrUnsafePath) {
				t.Fatalf("got %v, want ErrUnsafePath", err)
			}
			assertOnly(t, work)
		})
	}
}

// TestExtractSymlinksThroughLinks: the links a real root file system has
// (lib -> usr/lib, a library link that goes up through it, X11 -> ., a
// dangling link) still extract, and resolve as they did.
func TestExtractSymlinksThroughLinks(t *testing.T) {
	entries := []*tar.Header{
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/lib/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/lib/x/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "usr/lib/x/libfoo.so.1", Typeflag: tar.TypeReg, Size: 3},
		symh("lib", "usr/lib"),
		symh("usr/lib/x/libfoo.so", "../../../lib/x/libfoo.so.1"),
		symh("usr/bin/X11", "."),
		symh("usr/bin/tool", "X11/X11/../lib/x/libfoo.so"),
		symh("dangling", "nothing/here/../x"),
		symh("chain", fmt.Sprintf("lib%s/x/libfoo.so", strings.Repeat("/x/..", 50))),
	}
	work, err := extractTar(t, evilTar(t, entries))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"usr/lib/x/libfoo.so", "usr/bin/tool", "chain"} {
		data, err := os.ReadFile(filepath.Join(work, "dest", p))
		if err != nil || string(data) != "xxx" {
			t.Fatalf("%s: %q, %v", p, data, err)
		}
	}
}

// TestPackSymlinkChainRefused: packing refuses what extraction refuses, so a
// release engineer cannot sign a package every device would reject.
func TestPackSymlinkChainRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(src, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/a/a/../../../etc/passwd", filepath.Join(src, "x")); err != nil {
		t.Fatal(err)
	}
	_, err := imagepkg.PackPath(ctx, filepath.Join(dir, "out.upk"), src, testOptions("none"), testkeys.Ed25519(1))
	if !errors.Is(err, imagepkg.ErrUnsafePath) {
		t.Fatalf("got %v, want ErrUnsafePath", err)
	}
	assertOnly(t, dir, "src")
	var buf bytes.Buffer
	if err := imagepkg.WriteTar(ctx, &buf, src, time.Time{}); !errors.Is(err, imagepkg.ErrUnsafePath) {
		t.Fatalf("WriteTar: got %v, want ErrUnsafePath", err)
	}
}

// rawTar writes entries with archive/tar in USTAR or GNU format and then
// sets the type flag (and realsize, for 'S') of each header block by hand,
// for the entry types tar.Writer refuses to write.
type rawEntry struct {
	hdr      tar.Header
	data     []byte
	typeflag byte  // written over the header's
	realSize int64 // old GNU sparse real size, when typeflag is 'S'
}

func rawTar(t *testing.T, entries []rawEntry) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, e := range entries {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		h := e.hdr
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
		tw.Flush()
		b := buf.Bytes()
		b[156] = e.typeflag
		if e.realSize > 0 {
			copy(b[483:495], fmt.Sprintf("%011o\x00", e.realSize))
		}
		copy(b[148:156], "        ")
		sum := 0
		for _, c := range b[:512] {
			sum += int(c)
		}
		copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
		out.Write(b)
	}
	out.Write(make([]byte, 1024))
	return out.Bytes()
}

// paxRecord encodes one PAX extended header record.
func paxRecord(k, v string) string {
	r := " " + k + "=" + v + "\n"
	n := len(r) + 1
	for len(strconv.Itoa(n))+len(r) != n {
		n++
	}
	return strconv.Itoa(n) + r
}

// sparseTar returns a tar archive holding one GNU PAX 1.0 sparse entry:
// a few hundred bytes that expand to a file of logical size realSize.
func sparseTar(t *testing.T, realSize int64) []byte {
	t.Helper()
	records := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", "big") + paxRecord("GNU.sparse.realsize", strconv.FormatInt(realSize, 10))
	data := make([]byte, 512+1)
	copy(data, fmt.Sprintf("1\n%d\n1\n", realSize-1))
	data[512] = 'x'
	return rawTar(t, []rawEntry{
		{hdr: tar.Header{Name: "PaxHeaders/big", Mode: 0o644, Format: tar.FormatUSTAR}, data: []byte(records), typeflag: tar.TypeXHeader},
		{hdr: tar.Header{Name: "GNUSparseFile.0/big", Mode: 0o644, Format: tar.FormatUSTAR}, data: data, typeflag: tar.TypeReg},
	})
}

// oldGNUSparseTar returns a tar archive with one entry of the old GNU sparse
// type 'S' (an empty sparse map, a 1 GiB real size in the GNU header).
func oldGNUSparseTar(t *testing.T) []byte {
	t.Helper()
	return rawTar(t, []rawEntry{{hdr: tar.Header{Name: "big", Mode: 0o644, Format: tar.FormatGNU}, typeflag: tar.TypeGNUSparse, realSize: 1 << 30}})
}

// TestAttackSparseEntry: a sparse entry (GNU PAX or old GNU) of a few
// hundred signed bytes would make the extractor write a file of its
// logical size, unbounded by the payload. Refused before writing.
func TestAttackSparseEntry(t *testing.T) {
	for name, payload := range map[string][]byte{
		"pax 1.0":     sparseTar(t, 64<<20),
		"old gnu 'S'": oldGNUSparseTar(t),
	} {
		t.Run(name, func(t *testing.T) {
			if len(payload) > 4096 {
				t.Fatalf("payload of %d bytes", len(payload))
			}
			work, err := extractTar(t, payload)
			if !errors.Is(err, imagepkg.ErrUnsupported) || !strings.Contains(err.Error(), "sparse") {
				t.Fatalf("got %v, want ErrUnsupported naming the sparse entry", err)
			}
			assertOnly(t, work)
		})
	}
}

// TestAttackDeepPath: names and link targets beyond MaxPathDepth or
// MaxPathLength are ErrPathTooLong, refused at once: an entry 32768
// directories deep (65 KiB name) used to take seconds, growing with the
// square of the depth.
func TestAttackDeepPath(t *testing.T) {
	deep := func(depth int) string { return strings.Repeat("a/", depth-1) + "f" }
	longName := strings.Repeat("n", 200) + "/" + strings.Repeat("n", 200)
	for len(longName) <= imagepkg.MaxPathLength {
		longName += "/" + strings.Repeat("n", 200)
	}
	cases := map[string][]*tar.Header{
		"depth 32768":             {{Name: deep(32768), Typeflag: tar.TypeReg}},
		"depth MaxPathDepth+1":    {{Name: deep(imagepkg.MaxPathDepth + 1), Typeflag: tar.TypeReg}},
		"name over MaxPathLength": {{Name: longName, Typeflag: tar.TypeReg}},
		"symlink target too deep": {symh("l", strings.Repeat("./", imagepkg.MaxPathDepth)+"x")},
		"symlink target too long": {symh("l", strings.Repeat("x", imagepkg.MaxPathLength+1))},
		"hard link target too long": {{Name: "f", Typeflag: tar.TypeReg},
			{Name: "h", Typeflag: tar.TypeLink, Linkname: strings.Repeat("./", imagepkg.MaxPathLength/2) + "f"}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			work, err := extractTar(t, evilTar(t, entries))
			if !errors.Is(err, imagepkg.ErrPathTooLong) {
				t.Fatalf("got %v, want ErrPathTooLong", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v", d)
			}
			assertOnly(t, work)
		})
	}
	t.Run("depth MaxPathDepth extracts", func(t *testing.T) {
		work, err := extractTar(t, evilTar(t, []*tar.Header{{Name: deep(imagepkg.MaxPathDepth), Typeflag: tar.TypeReg}}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(work, "dest", filepath.FromSlash(deep(imagepkg.MaxPathDepth)))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pack refuses a deeper directory", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		p := filepath.Join(src, filepath.FromSlash(strings.Repeat("d/", imagepkg.MaxPathDepth+1)))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := imagepkg.PackPath(context.Background(), filepath.Join(dir, "out.upk"), src, testOptions("none"), testkeys.Ed25519(1))
		if !errors.Is(err, imagepkg.ErrPathTooLong) {
			t.Fatalf("got %v, want ErrPathTooLong", err)
		}
		assertOnly(t, dir, "src")
	})
}

// FuzzExtractTree fuzzes what a tar payload can ask of the extractor: each
// input line is one entry, "d NAME" (directory), "f NAME" (file), "l NAME
// TARGET" (symlink) or "h NAME TARGET" (hard link), packed as a tar payload,
// signed and extracted. Properties: no panic; on error nothing is left at
// the destination; on success no entry of the extracted tree, followed
// through its symlinks, leads outside it (os.Root refuses to follow such a
// path), and every file reached is inside.
func FuzzExtractTree(f *testing.F) {
	f.Add("l a .\nl x a/a/a/a/../../../..")
	f.Add("l x a/a/../../etc\nl a .")
	f.Add("d d\nl d/up ..\nl x d/up/d/up/..")
	f.Add("d usr\nd usr/lib\nf usr/lib/libc.so.6\nl lib usr/lib\nl usr/lib/libc.so ../../lib/libc.so.6\nl bin/X11 .")
	f.Add("l a b\nl b a")
	f.Add("f a\nh b a\nl c b")
	s := testkeys.Ed25519(1)
	f.Fuzz(func(t *testing.T, spec string) {
		if len(spec) > 4096 {
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, line := range strings.Split(spec, "\n") {
			fields := strings.SplitN(line, " ", 3)
			if len(fields) < 2 || fields[1] == "" {
				continue
			}
			h := &tar.Header{Name: fields[1], Mode: 0o755, Format: tar.FormatPAX}
			switch fields[0] {
			case "d":
				h.Typeflag = tar.TypeDir
			case "f":
				h.Typeflag, h.Size = tar.TypeReg, 1
			case "l", "h":
				if len(fields) < 3 {
					continue
				}
				h.Typeflag, h.Linkname = tar.TypeSymlink, fields[2]
				if fields[0] == "h" {
					h.Typeflag = tar.TypeLink
				}
			default:
				continue
			}
			if tw.WriteHeader(h) != nil {
				return
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("x"))
			}
		}
		if tw.Close() != nil {
			return
		}
		opts := testOptions("none")
		opts.Kind = imagepkg.KindTar
		pkg := pack(t, buf.Bytes(), opts, s)
		p, err := imagepkg.Open(bytes.NewReader(pkg))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.VerifySignature(s.Public()); err != nil {
			t.Fatal(err)
		}
		work := t.TempDir()
		dest := filepath.Join(work, "dest")
		if err := imagepkg.Extract(context.Background(), p, dest); err != nil {
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Fatalf("error %v, but %s holds %v", err, work, entries)
			}
			return
		}
		root, err := os.OpenRoot(dest)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		err = filepath.WalkDir(dest, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dest, path)
			if _, err := root.Stat(rel); err != nil && strings.Contains(err.Error(), "escapes") {
				t.Fatalf("extracted %q leads outside the destination: %v (archive %q)", rel, err, spec)
			}
			if real, err := filepath.EvalSymlinks(path); err == nil {
				if r, _ := filepath.Rel(dest, real); !filepath.IsLocal(r) && r != "." {
					t.Fatalf("extracted %q resolves to %s, outside the destination (archive %q)", rel, real, spec)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
