package oci_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// releaseFixture is a release on disk whose manifest.Release lists a
// package with a delta, and a second package.
type releaseFixture struct {
	dir, envPath string
	envelope     []byte
	rel          *manifest.Release
	files        map[string]string // name -> path
}

func newReleaseFixture(t *testing.T) *releaseFixture {
	t.Helper()
	dir := t.TempDir()
	f := &releaseFixture{dir: dir, files: map[string]string{}}
	for i, n := range []string{"rootfs.upk", "rootfs.delta", "app.upk"} {
		f.files[n] = randomFile(t, filepath.Join(dir, n), 10_000+1000*i, uint64(10+i))
	}
	blob := func(n string) manifest.Blob {
		fi, err := os.Stat(f.files[n])
		if err != nil {
			t.Fatal(err)
		}
		return manifest.Blob{Digest: digestOf(t, f.files[n]), Size: fi.Size()}
	}
	pd := func(s string) string { return "sha256:" + strings.Repeat(s, 64) }
	d := blob("rootfs.delta")
	f.rel = &manifest.Release{Product: "gw", Version: 3, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Images: []manifest.Image{
		{Component: "rootfs", Version: "2.0.0", Package: blob("rootfs.upk"), Payload: manifest.Blob{Digest: pd("2"), Size: 5},
			Deltas: []manifest.Delta{{FromPayloadDigest: pd("1"), FromPackageDigest: pd("9"), Digest: d.Digest, Size: d.Size}}},
		{Component: "app", Version: "1.0.0", Package: blob("app.upk"), Payload: manifest.Blob{Digest: pd("a"), Size: 5}},
	}}
	f.envelope = []byte(`{"payloadType":"application/vnd.upkit.release.v1+json","payload":"e30=","signatures":[]}`)
	f.envPath = filepath.Join(dir, "release.json")
	if err := os.WriteFile(f.envPath, f.envelope, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReleaseFilesAndCollect(t *testing.T) {
	f := newReleaseFixture(t)
	files := oci.ReleaseFiles(f.rel)
	if len(files) != 3 || files[0].MediaType != oci.MediaTypePackage || files[1].MediaType != oci.MediaTypeDelta ||
		files[1].Annotations[oci.AnnotationDeltaTo] != f.rel.Images[0].Payload.Digest || files[2].Annotations[oci.AnnotationComponent] != "app" {
		t.Fatalf("ReleaseFiles: %+v", files)
	}
	rel, err := oci.CollectRelease(context.Background(), f.envPath, f.envelope, f.rel)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Product != "gw" || rel.Version != 3 || len(rel.Files) != 3 || rel.Files[1].Path != f.files["rootfs.delta"] {
		t.Fatalf("CollectRelease: %+v", rel)
	}
	// A missing file is named; the envelope itself is never taken for a
	// blob, even when it is the only file of a listed blob's size.
	os.Remove(f.files["app.upk"])
	env := make([]byte, f.rel.Images[1].Package.Size)
	copy(env, f.envelope)
	if err := os.WriteFile(f.envPath, env, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = oci.CollectRelease(context.Background(), f.envPath, env, f.rel)
	if !errors.Is(err, oci.ErrBadFile) || !strings.Contains(err.Error(), "package of app") {
		t.Fatalf("missing package: %v", err)
	}
}

func TestPlanAndFetchFiles(t *testing.T) {
	ctx := context.Background()
	f := newReleaseFixture(t)
	rel, err := oci.CollectRelease(ctx, f.envPath, f.envelope, f.rel)
	if err != nil {
		t.Fatal(err)
	}
	layout := "oci:" + filepath.Join(t.TempDir(), "layout")
	if _, err := oci.Push(ctx, layout+":3", rel, nil); err != nil {
		t.Fatal(err)
	}
	pulled, err := oci.Pull(ctx, layout+":3", nil)
	if err != nil {
		t.Fatal(err)
	}
	names := func(p *oci.PullPlan) (out []string) {
		for _, f := range p.Files {
			out = append(out, f.What+" "+f.Name)
		}
		return out
	}
	all, err := pulled.PlanFiles(ctx, f.rel, oci.Want{}, nil)
	if err != nil || !slices.Equal(names(all), []string{"package rootfs-2.0.0.upk", "delta rootfs-2.0.0-from-111111111111.delta", "package app-1.0.0.upk"}) {
		t.Fatalf("everything: %v %v", names(all), err)
	}
	if _, err := pulled.PlanFiles(ctx, f.rel, oci.Want{Only: []string{"kernel"}}, nil); !errors.Is(err, manifest.ErrNotListed) {
		t.Fatalf("--only kernel: %v", err)
	}
	fromPkg, err := pulled.PlanFiles(ctx, f.rel, oci.Want{Only: []string{"rootfs"}, From: "sha256:" + strings.Repeat("9", 64)}, nil)
	if err != nil || !slices.Equal(names(fromPkg), []string{"delta rootfs-2.0.0-from-111111111111.delta"}) {
		t.Fatalf("from the old package: %v %v", names(fromPkg), err)
	}
	upToDate, err := pulled.PlanFiles(ctx, f.rel, oci.Want{From: f.rel.Images[1].Payload.Digest}, nil)
	if err != nil || !slices.Equal(upToDate.UpToDate, []string{"app"}) || !slices.Equal(names(upToDate), []string{"package rootfs-2.0.0.upk"}) {
		t.Fatalf("app up to date: %+v %v", upToDate, err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	written, err := pulled.FetchFiles(ctx, dst, all.Files, nil)
	if err != nil || len(written) != 4 || written[0] != filepath.Join(dst, "release.json") {
		t.Fatalf("FetchFiles: %v %v", written, err)
	}
	sameFile(t, filepath.Join(dst, "rootfs-2.0.0-from-111111111111.delta"), f.files["rootfs.delta"])
	// The envelope gets the mode of the files beside it: 0644 less the
	// umask (it was 0600 whatever the umask).
	env, err := os.Stat(written[0])
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.Stat(written[1])
	if err != nil {
		t.Fatal(err)
	}
	if env.Mode() != pkg.Mode() {
		t.Fatalf("release.json has mode %v, %s %v", env.Mode(), filepath.Base(written[1]), pkg.Mode())
	}
}

// TestPlanFilesMCUbootName: an MCUboot image (a file that is its own
// payload) is pulled as COMPONENT-VERSION.bin, not as a .upk package.
func TestPlanFilesMCUbootName(t *testing.T) {
	ctx := context.Background()
	f := newReleaseFixture(t)
	f.rel.Images[1].Version = "1.4.0+17"
	f.rel.Images[1].Payload = f.rel.Images[1].Package
	rel, err := oci.CollectRelease(ctx, f.envPath, f.envelope, f.rel)
	if err != nil {
		t.Fatal(err)
	}
	layout := "oci:" + filepath.Join(t.TempDir(), "layout")
	if _, err := oci.Push(ctx, layout+":3", rel, nil); err != nil {
		t.Fatal(err)
	}
	pulled, err := oci.Pull(ctx, layout+":3", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pulled.PlanFiles(ctx, f.rel, oci.Want{Only: []string{"rootfs", "app"}}, nil)
	if err != nil || len(plan.Files) != 3 || plan.Files[0].Name != "rootfs-2.0.0.upk" || plan.Files[2].Name != "app-1.4.0+17.bin" {
		t.Fatalf("names: %+v %v", plan, err)
	}
}

func TestAttachedDeltasFind(t *testing.T) {
	ds := oci.AttachedDeltas{
		{From: "a", To: "b", Digest: "big", Size: 100},
		{From: "a", To: "b", Digest: "empty", Size: 0},
		{From: "a", To: "b", Digest: "small", Size: 10},
	}
	if d, ok := ds.Find("a", "b", 50); !ok || d.Digest != "small" {
		t.Fatalf("Find: %+v %v", d, ok)
	}
	if digest, size, ok := ds.FindDelta("a", "b", 100); !ok || digest != "big" || size != 100 {
		t.Fatalf("FindDelta: %s %d %v", digest, size, ok)
	}
	if _, ok := ds.Find("a", "c", 100); ok {
		t.Fatal("found a delta to another payload")
	}
}

// A puller names files from the signed release, never from the unsigned
// layer titles, never replaces a file it did not create, and keeps its
// partial downloads where no published name can reach them (issue 12,
// item 8). The artifact here titles the app package "root.json" (so that
// `pull -o .` would replace the user's trust root) and the rootfs package
// "x.delta.partial" (so that it would be taken for the partial download of
// the delta titled "x.delta").
func TestAttackPullFileNames(t *testing.T) {
	ctx := context.Background()
	f := newReleaseFixture(t)
	rel, err := oci.CollectRelease(ctx, f.envPath, f.envelope, f.rel)
	if err != nil {
		t.Fatal(err)
	}
	rel.Files[0].Title, rel.Files[1].Title, rel.Files[2].Title = "x.delta.partial", "x.delta", "root.json"
	layout := "oci:" + filepath.Join(t.TempDir(), "layout")
	if _, err := oci.Push(ctx, layout+":3", rel, nil); err != nil {
		t.Fatal(err)
	}
	pulled, err := oci.Pull(ctx, layout+":3", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pulled.PlanFiles(ctx, f.rel, oci.Want{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	userRoot := filepath.Join(dst, "root.json")
	if err := os.WriteFile(userRoot, []byte("the user's trust root"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pulled.FetchFiles(ctx, dst, plan.Files, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(userRoot); string(b) != "the user's trust root" {
		t.Fatalf("root.json replaced by a package titled so: %q", b)
	}
	for name, from := range map[string]string{
		"rootfs-2.0.0.upk": "rootfs.upk", "rootfs-2.0.0-from-111111111111.delta": "rootfs.delta", "app-1.0.0.upk": "app.upk",
	} {
		sameFile(t, filepath.Join(dst, name), f.files[from])
	}
	if es, _ := os.ReadDir(dst); len(es) != 5 { // the 3 files, release.json, root.json
		t.Fatalf("pull left %d entries, want 5: %v", len(es), es)
	}
	// Pulling again into the same directory: the files are there, nothing
	// is replaced. A file of the same name and other content is refused.
	if _, err := pulled.FetchFiles(ctx, dst, plan.Files, nil); err != nil {
		t.Fatalf("pulling again: %v", err)
	}
	mine := filepath.Join(dst, "app-1.0.0.upk")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pulled.FetchFiles(ctx, dst, plan.Files, nil); !errors.Is(err, oci.ErrExists) {
		t.Fatalf("a file of another content at a name the release uses: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(mine); string(b) != "mine" {
		t.Fatal("a file the pull did not create was replaced")
	}
}
