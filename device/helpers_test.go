package device_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
)

// Fixture: root keys 1, 2, 3 (threshold 2), release keys 4, 5 (threshold
// 2) in root version 1. Key 7 signs packages (the device does not need to
// trust it: the release pins packages by digest). Key 6 is a release key
// added by rotation.
const (
	hw      = "acme-gw-100"
	product = "acme-gw"
)

var (
	t0        = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tExpires  = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	tRootExp  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	errNotYet = errors.New("test: not yet")
)

func key(n int) *testkeys.Signer { return testkeys.Ed25519(n) }

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// world is a release server (a directory source) and its keys.
type world struct {
	t      *testing.T
	ctx    context.Context
	srcDir string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return &world{t: t, ctx: context.Background(), srcDir: t.TempDir()}
}

func (w *world) source() device.Source { return device.NewDirSource(w.srcDir) }

// put stores a blob in the source directory (OCI layout) and returns its
// digest.
func (w *world) put(b []byte) string {
	w.t.Helper()
	d := digestOf(b)
	p := filepath.Join(w.srcDir, "blobs", "sha256", d[7:])
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return d
}

func keyIDs(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, key(n).KeyID())
	}
	return out
}

// root returns a root envelope signed by the given keys.
func (w *world) root(version uint64, rootKeys []int, rootThreshold int, releaseKeys []int, releaseThreshold int, signers ...int) []byte {
	w.t.Helper()
	r := &manifest.Root{
		Version: version,
		Expires: tRootExp,
		Keys:    map[string]manifest.Key{},
		Roles: manifest.Roles{
			Root:    manifest.Role{KeyIDs: keyIDs(rootKeys...), Threshold: rootThreshold},
			Release: manifest.Role{KeyIDs: keyIDs(releaseKeys...), Threshold: releaseThreshold},
		},
	}
	for _, n := range append(append([]int{}, rootKeys...), releaseKeys...) {
		id, k := manifest.KeyOf(key(n).Public())
		r.Keys[id] = k
	}
	env, err := manifest.NewRootEnvelope(r)
	if err != nil {
		w.t.Fatal(err)
	}
	return w.sign(env, signers...)
}

func (w *world) root1() []byte { return w.root(1, []int{1, 2, 3}, 2, []int{4, 5}, 2, 1, 2) }

func (w *world) sign(env *manifest.Envelope, signers ...int) []byte {
	w.t.Helper()
	for _, n := range signers {
		if err := manifest.Sign(w.ctx, env, key(n)); err != nil {
			w.t.Fatal(err)
		}
	}
	b, err := env.Marshal()
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// image describes one image to pack.
type image struct {
	component, typ, version string
	secver                  uint64
	hardware                []string
	payload                 []byte
}

// pack packs an image, stores the package and returns its release entry.
func (w *world) pack(im image) manifest.Image {
	w.t.Helper()
	if im.hardware == nil {
		im.hardware = []string{hw}
	}
	var buf bytes.Buffer
	meta, err := imagepkg.Pack(w.ctx, &buf, bytes.NewReader(im.payload), imagepkg.PackOptions{
		Component: im.component, Type: im.typ, Version: im.version, SecurityVersion: im.secver,
		Hardware: im.hardware, Compression: imagepkg.CompressionZstd, Created: t0, Concurrency: 1,
		TempDir: w.t.TempDir(),
	}, key(7))
	if err != nil {
		w.t.Fatal(err)
	}
	pkg := buf.Bytes()
	return manifest.Image{
		Component: im.component, Type: im.typ, Version: im.version, SecurityVersion: im.secver,
		Hardware: im.hardware,
		Package:  manifest.Blob{Digest: w.put(pkg), Size: int64(len(pkg))},
		Payload:  manifest.Blob{Digest: meta.Payload.SHA256, Size: meta.Payload.Size},
	}
}

// addDelta creates a delta old -> new, stores it and lists it in img.
func (w *world) addDelta(img *manifest.Image, old, new []byte) {
	w.t.Helper()
	var buf bytes.Buffer
	if _, err := delta.Create(w.ctx, old, new, &buf, nil); err != nil {
		w.t.Fatal(err)
	}
	img.Deltas = append(img.Deltas, manifest.Delta{FromPayloadDigest: digestOf(old), Digest: w.put(buf.Bytes()), Size: int64(buf.Len())})
}

// release returns a release envelope signed by the given keys.
func (w *world) release(version uint64, created time.Time, images []manifest.Image, signers ...int) []byte {
	w.t.Helper()
	env, err := manifest.NewReleaseEnvelope(&manifest.Release{
		Product: product, Version: version, Created: created, Expires: tExpires, Images: images,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return w.sign(env, signers...)
}

// payload returns n deterministic pseudo-random bytes.
func payload(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// edit returns a copy of b with a few bytes changed and some appended.
func edit(b []byte, seed int64) []byte {
	out := bytes.Clone(b)
	r := rand.New(rand.NewSource(seed))
	for i := 0; i < 20; i++ {
		out[r.Intn(len(out))] ^= 0x5a
	}
	return append(out, payload(seed, 1000)...)
}

// releases v1 and v2 of a two-component product: v2 changes both, with a
// delta from v1 for rootfs only.
type releases struct {
	rootfs1, rootfs2, app1, app2 []byte
	img1, img2                   []manifest.Image
	v1, v2                       []byte // envelopes, versions 1 and 2
}

func (w *world) twoReleases() *releases {
	w.t.Helper()
	r := &releases{rootfs1: payload(1, 200<<10), app1: payload(2, 50<<10)}
	r.rootfs2 = edit(r.rootfs1, 3)
	r.app2 = edit(r.app1, 4)
	r.img1 = []manifest.Image{
		w.pack(image{component: "rootfs", typ: "os", version: "1.0.0", secver: 1, payload: r.rootfs1}),
		w.pack(image{component: "app", typ: "app", version: "1.0.0", secver: 1, payload: r.app1}),
	}
	rootfs2 := w.pack(image{component: "rootfs", typ: "os", version: "2.0.0", secver: 2, payload: r.rootfs2})
	w.addDelta(&rootfs2, r.rootfs1, r.rootfs2)
	r.img2 = []manifest.Image{
		rootfs2,
		w.pack(image{component: "app", typ: "app", version: "2.0.0", secver: 1, payload: r.app2}),
	}
	r.v1 = w.release(1, t0, r.img1, 4, 5)
	r.v2 = w.release(2, t0.Add(24*time.Hour), r.img2, 4, 5)
	return r
}

// dev is one simulated device: its directories survive "restarts".
type dev struct {
	*device.Device
	dir   string
	slots *device.FileSlots
	store *device.FileStore
}

// newDev opens (or reopens) the device in dir over fsys (nil: OSFS).
func newDev(t *testing.T, dir string, fsys device.FS) *dev {
	t.Helper()
	store := device.NewFileStore(filepath.Join(dir, "state", "state"), fsys)
	slots := device.NewFileSlots(filepath.Join(dir, "slots"), fsys)
	d, err := device.New(device.Config{
		Store: store, Slots: slots, Hardware: hw,
		StagingDir: filepath.Join(dir, "staging"), FS: fsys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &dev{Device: d, dir: dir, slots: slots, store: store}
}

// provisioned returns a new device provisioned with root version 1.
func (w *world) provisioned() *dev {
	w.t.Helper()
	d := newDev(w.t, w.t.TempDir(), nil)
	if err := d.Provision(w.ctx, w.root1(), t0); err != nil {
		w.t.Fatal(err)
	}
	return d
}

// update runs CheckAndRecord and Install, as an update agent does.
func (w *world) update(d *dev, env []byte, chain [][]byte, now time.Time) (*device.Result, error) {
	return w.updateFrom(d, w.source(), env, chain, now)
}

func (w *world) updateFrom(d *dev, src device.Source, env []byte, chain [][]byte, now time.Time) (*device.Result, error) {
	plan, err := d.CheckAndRecord(w.ctx, env, chain, now)
	if err != nil {
		return nil, err
	}
	return d.Install(w.ctx, src, plan, now)
}

// mustCommitRelease installs and commits a release.
func (w *world) mustCommitRelease(d *dev, env []byte, chain [][]byte, now time.Time) *device.Result {
	w.t.Helper()
	res, err := w.update(d, env, chain, now)
	if err != nil {
		w.t.Fatalf("installing: %v", err)
	}
	if err := d.Commit(w.ctx); err != nil {
		w.t.Fatalf("committing: %v", err)
	}
	return res
}

// slotDigest hashes the first n bytes of a slot file.
func (d *dev) slotDigest(t *testing.T, component, slot string, n int64) string {
	t.Helper()
	f, err := os.Open(d.slots.Path(component, slot))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, n)); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// assertBootable checks that every committed component's active slot
// holds its committed image, and returns the state.
func (d *dev) assertBootable(t *testing.T) *device.State {
	t.Helper()
	ctx := context.Background()
	if err := d.Recover(ctx); err != nil {
		t.Fatalf("recover: %v", err)
	}
	st, err := d.store.Load(ctx)
	if err != nil {
		t.Fatalf("state does not load: %v", err)
	}
	for c, im := range st.Installed {
		active, err := d.slots.Active(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if active != im.Slot {
			t.Fatalf("%s: bootloader boots slot %q, state says %q", c, active, im.Slot)
		}
		if got := d.slotDigest(t, c, im.Slot, im.PayloadSize); got != im.PayloadDigest {
			t.Fatalf("%s: active slot %s holds %s, committed %s", c, im.Slot, got, im.PayloadDigest)
		}
	}
	return st
}

// wantErr fails unless errors.Is(err, target) for every target.
func wantErr(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("got %v, want an error matching %v", err, target)
		}
	}
}
