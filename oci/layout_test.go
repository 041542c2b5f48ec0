package oci_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/oci"
)

func TestLayoutRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1<<20+3)
	dir := filepath.Join(t.TempDir(), "usb")
	ref := "oci:" + dir + ":42"
	digest, err := oci.Push(ctx, ref, f.release, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Idempotent, and a second tag does not duplicate blobs.
	if d, err := oci.Push(ctx, ref, f.release, nil); err != nil || d != digest {
		t.Fatalf("second push: %s, %v", d, err)
	}
	if err := oci.Tag(ctx, "oci:"+dir, digest, "stable", nil); err != nil {
		t.Fatal(err)
	}
	tags, err := oci.Tags(ctx, "oci:"+dir, nil)
	if err != nil || !slices.Equal(tags, []string{"42", "stable"}) {
		t.Fatalf("tags %v, %v", tags, err)
	}

	// go-containerregistry's own layout reader sees a well-formed layout.
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 2 || im.Manifests[0].ArtifactType != oci.ArtifactTypeRelease {
		t.Fatalf("index %+v, %v", im, err)
	}

	rel, err := oci.Pull(ctx, "oci:"+dir+":stable", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Digest != digest || string(rel.Envelope) != string(f.envelope) {
		t.Fatalf("pulled %s", rel.Digest)
	}
	src := oci.NewLayoutSource(dir)
	out := filepath.Join(t.TempDir(), "pkg")
	if err := oci.FetchFile(ctx, src, rel.Layers[1].Digest, rel.Layers[1].Size, out, nil); err != nil {
		t.Fatal(err)
	}
	sameFile(t, out, f.pkg)

	// Referrers in a layout: an untagged index.json entry with a subject.
	rd, err := oci.Attach(ctx, "oci:"+dir+":42", []oci.File{{Path: f.late, MediaType: oci.MediaTypeDelta}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two attached files may not share a title: a puller would write one over the other.
	twice := []oci.File{{Path: f.late, MediaType: oci.MediaTypeDelta}, {Path: f.late, MediaType: oci.MediaTypeDelta}}
	if _, err := oci.Attach(ctx, "oci:"+dir+":42", twice, nil); !errors.Is(err, oci.ErrBadFile) || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("attaching one title twice: %v, want ErrBadFile", err)
	}
	refs, err := oci.Referrers(ctx, "oci:"+dir+"@"+digest, nil)
	if err != nil || len(refs) != 1 || refs[0].Digest != rd || refs[0].Subject != digest {
		t.Fatalf("referrers %+v, %v", refs, err)
	}
	if tags, _ := oci.Tags(ctx, "oci:"+dir, nil); len(tags) != 2 {
		t.Fatalf("attaching added a tag: %v", tags)
	}

	// Corrupt a blob in the layout: Open from 0 and FetchFile both notice.
	blob := filepath.Join(dir, "blobs", "sha256", rel.Layers[1].Digest[7:])
	b := readFile(t, blob)
	b[12345] ^= 1
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := src.Open(ctx, rel.Layers[1].Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("corrupted layout blob: %v", err)
	}
	out2 := filepath.Join(t.TempDir(), "pkg")
	if err := oci.FetchFile(ctx, src, rel.Layers[1].Digest, rel.Layers[1].Size, out2, nil); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("FetchFile of a corrupted blob: %v", err)
	}
	if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("target written")
	}
}

func TestCopyLayoutToRegistryAndBack(t *testing.T) {
	ctx := context.Background()
	addr := registrytest.Start(t, registrytest.OLAReg)
	f := newFixture(t, 200<<10)
	dir := t.TempDir()
	d, err := oci.Push(ctx, "oci:"+dir+":42", f.release, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(nil)
	if d2, err := oci.Copy(ctx, "oci:"+dir+":42", addr+"/fleet/gw:42", opts); err != nil || d2 != d {
		t.Fatalf("layout -> registry: %s, %v", d2, err)
	}
	back := t.TempDir()
	if d3, err := oci.Copy(ctx, addr+"/fleet/gw:42", "oci:"+back+":42", opts); err != nil || d3 != d {
		t.Fatalf("registry -> layout: %s, %v", d3, err)
	}
	rel, err := oci.Pull(ctx, "oci:"+back+":42", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "pkg")
	if err := oci.FetchFile(ctx, oci.NewLayoutSource(back), rel.Layers[1].Digest, rel.Layers[1].Size, out, nil); err != nil {
		t.Fatal(err)
	}
	sameFile(t, out, f.pkg)
}

func TestFetchFileResumesFromPartial(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 500<<10)
	dir := t.TempDir()
	if _, err := oci.Push(ctx, "oci:"+dir+":1", f.release, nil); err != nil {
		t.Fatal(err)
	}
	want := readFile(t, f.pkg)
	digest := digestOf(t, f.pkg)
	src := oci.NewLayoutSource(dir)
	out := filepath.Join(t.TempDir(), "pkg")

	// A good prefix left by an earlier run: resumed, the whole blob checked.
	if err := os.WriteFile(oci.PartialPath(out, digest), want[:123456], 0o644); err != nil {
		t.Fatal(err)
	}
	var first int64 = -1
	progress := func(n int64) {
		if first < 0 {
			first = n
		}
	}
	if err := oci.FetchFile(ctx, src, digest, int64(len(want)), out, progress); err != nil {
		t.Fatal(err)
	}
	sameFile(t, out, f.pkg)
	if first != 123456 {
		t.Errorf("progress started at %d, want the partial's 123456", first)
	}
	if _, err := os.Stat(oci.PartialPath(out, digest)); !errors.Is(err, os.ErrNotExist) {
		t.Error("partial file left behind")
	}

	// A bad prefix: the end-to-end hash catches it; nothing is written.
	out2 := filepath.Join(t.TempDir(), "pkg")
	bad := append([]byte(nil), want[:1000]...)
	bad[10] ^= 1
	if err := os.WriteFile(oci.PartialPath(out2, digest), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := oci.FetchFile(ctx, src, digest, int64(len(want)), out2, nil); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("bad prefix: %v", err)
	}
	if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("target written from a bad prefix")
	}

	// Wrong expected size in either direction.
	for _, size := range []int64{int64(len(want)) - 1, int64(len(want)) + 1} {
		out3 := filepath.Join(t.TempDir(), "pkg")
		if err := oci.FetchFile(ctx, src, digest, size, out3, nil); !errors.Is(err, oci.ErrSizeMismatch) {
			t.Fatalf("size %d: %v", size, err)
		}
	}
	// The target is never replaced, and the good download is kept.
	if err := os.WriteFile(out2, []byte("someone's file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := oci.FetchFile(ctx, src, digest, int64(len(want)), out2, nil); !errors.Is(err, oci.ErrExists) {
		t.Fatalf("existing target: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(out2); string(b) != "someone's file" {
		t.Fatal("FetchFile replaced an existing file")
	}
	// Missing blob.
	if err := oci.FetchFile(ctx, src, "sha256:"+string(make([]byte, 0))+"0000000000000000000000000000000000000000000000000000000000000000", 1, out+"x", nil); !errors.Is(err, oci.ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
}

func TestPushRejectsBadFiles(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1000)
	dir := "oci:" + t.TempDir()
	cases := map[string]func(r *oci.Release){
		"missing file":   func(r *oci.Release) { r.Files[0].Path = filepath.Join(f.dir, "nope") },
		"directory":      func(r *oci.Release) { r.Files[0].Path = f.dir },
		"wrong digest":   func(r *oci.Release) { r.Files[0].Digest = "sha256:" + "00" + digestOf(t, f.pkg)[9:] },
		"wrong size":     func(r *oci.Release) { r.Files[0].Size = 999 },
		"title path":     func(r *oci.Release) { r.Files[0].Title = "../x" },
		"duplicate name": func(r *oci.Release) { r.Files[1].Title = "rootfs-2.0.0.upk" },
		"envelope name":  func(r *oci.Release) { r.Files[0].Title = oci.DefaultEnvelopeTitle },
		"no envelope":    func(r *oci.Release) { r.Envelope = nil },
		"no media type":  func(r *oci.Release) { r.Files[0].MediaType = "" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := f.release
			r.Files = slices.Clone(f.release.Files)
			mutate(&r)
			_, err := oci.Push(ctx, dir+":x", r, nil)
			if err == nil {
				t.Fatal("pushed")
			}
			if !errors.Is(err, oci.ErrBadFile) && !errors.Is(err, oci.ErrSizeMismatch) && !errors.Is(err, oci.ErrDigestMismatch) {
				t.Fatalf("error %v wraps none of the sentinels", err)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in                   string
		layout, repo, tag, d string
	}{
		{in: "127.0.0.1:5000/fleet/gw:42", repo: "127.0.0.1:5000/fleet/gw", tag: "42"},
		{in: "127.0.0.1:5000/fleet/gw", repo: "127.0.0.1:5000/fleet/gw"},
		{in: "localhost:5000/gw@sha256:" + hex64, repo: "localhost:5000/gw", d: "sha256:" + hex64},
		{in: "ghcr.io/acme/gw:v1.2", repo: "ghcr.io/acme/gw", tag: "v1.2"},
		{in: "oci:out", layout: "out"},
		{in: "oci:out:42", layout: "out", tag: "42"},
		{in: "oci:/media/usb/rel:stable", layout: "/media/usb/rel", tag: "stable"},
		{in: "oci:./a:b/dir", layout: "./a:b/dir"},
		{in: "oci:out@sha256:" + hex64, layout: "out", d: "sha256:" + hex64},
	} {
		got, err := oci.ParseTarget(tc.in, false)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		repo := ""
		if !got.IsLayout() {
			repo = got.Repo.Name()
		}
		if got.Layout != tc.layout || repo != tc.repo || got.Tag != tc.tag || got.Digest != tc.d {
			t.Errorf("%s: got %+v (repo %q)", tc.in, got, repo)
		}
		if got.String() != tc.in {
			t.Errorf("%s: String() = %s", tc.in, got.String())
		}
	}
	for _, bad := range []string{"", "oci:", "oci::x", "r/x:", "r/x:-bad", "r/x@sha256:abc", "r/x:t@sha256:" + hex64,
		"UPPER/case", "r/x@md5:" + hex64} {
		if _, err := oci.ParseTarget(bad, false); !errors.Is(err, oci.ErrBadReference) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
