package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// devFixture writes a trust root and two releases (v1 full, v2 with a
// delta for rootfs) built with the library packages, so that the device
// commands are tested on their own.
type devFixture struct {
	dir              string
	root             string // root.json
	v1Dir, v2Dir     string // local release directories
	v2Layout         string // oci:DIR:2 holding release 2
	v3Layout         string // oci:DIR:3: release 3, its delta attached later
	rootfs1, rootfs2 []byte
}

func devSha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func newDevFixture(t *testing.T) *devFixture {
	t.Helper()
	ctx := context.Background()
	created := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f := &devFixture{dir: t.TempDir()}
	k := testkeys.Ed25519(1)
	id, pub := manifest.KeyOf(k.Public())
	rootEnv, err := manifest.NewRootEnvelope(&manifest.Root{
		Version: 1, Expires: created.AddDate(5, 0, 0), Keys: map[string]manifest.Key{id: pub},
		Roles: manifest.Roles{Root: manifest.Role{KeyIDs: []string{id}, Threshold: 1}, Release: manifest.Role{KeyIDs: []string{id}, Threshold: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Sign(ctx, rootEnv, k); err != nil {
		t.Fatal(err)
	}
	f.root = filepath.Join(f.dir, "root.json")
	writeEnv(t, f.root, rootEnv)

	f.rootfs1 = make([]byte, 300<<10)
	rand.New(rand.NewSource(1)).Read(f.rootfs1)
	f.rootfs2 = bytes.Clone(f.rootfs1)
	for i := 0; i < len(f.rootfs2); i += 10000 {
		f.rootfs2[i] ^= 0xff
	}
	release := func(version uint64, payload []byte, dir string, deltaFrom []byte) manifest.Image {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var pkg bytes.Buffer
		v := []string{"", "1.0.0", "2.0.0", "3.0.0"}[version]
		meta, err := imagepkg.Pack(ctx, &pkg, bytes.NewReader(payload), imagepkg.PackOptions{
			Component: "rootfs", Type: "os", Version: v, SecurityVersion: version, Hardware: []string{"gw-100"},
			Compression: imagepkg.CompressionZstd, Concurrency: 1, TempDir: dir,
		}, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "rootfs-"+v+".upk"), pkg.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		img := manifest.Image{Component: "rootfs", Type: "os", Version: v, SecurityVersion: version, Hardware: []string{"gw-100"},
			Package: manifest.Blob{Digest: devSha(pkg.Bytes()), Size: int64(pkg.Len())},
			Payload: manifest.Blob{Digest: meta.Payload.SHA256, Size: meta.Payload.Size}}
		if deltaFrom != nil {
			var patch bytes.Buffer
			if _, err := delta.Create(ctx, deltaFrom, payload, &patch, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "rootfs.delta"), patch.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			img.Deltas = []manifest.Delta{{FromPayloadDigest: devSha(deltaFrom), Digest: devSha(patch.Bytes()), Size: int64(patch.Len())}}
		}
		env, err := manifest.NewReleaseEnvelope(&manifest.Release{Product: "gw", Version: version,
			Created: created.Add(time.Duration(version) * time.Hour), Expires: created.AddDate(0, 3, 0), Images: []manifest.Image{img}})
		if err != nil {
			t.Fatal(err)
		}
		if err := manifest.Sign(ctx, env, k); err != nil {
			t.Fatal(err)
		}
		writeEnv(t, filepath.Join(dir, "release.json"), env)
		return img
	}
	f.v1Dir = filepath.Join(f.dir, "v1")
	f.v2Dir = filepath.Join(f.dir, "v2")
	release(1, f.rootfs1, f.v1Dir, nil)
	release(2, f.rootfs2, f.v2Dir, f.rootfs1)

	env2, err := os.ReadFile(filepath.Join(f.v2Dir, "release.json"))
	if err != nil {
		t.Fatal(err)
	}
	f.v2Layout = oci.LayoutPrefix + filepath.Join(f.dir, "layout") + ":2"
	if _, err := oci.Push(ctx, f.v2Layout, oci.Release{Envelope: env2, Product: "gw", Version: 2, Created: created, Files: []oci.File{
		{Path: filepath.Join(f.v2Dir, "rootfs-2.0.0.upk"), MediaType: oci.MediaTypePackage},
		{Path: filepath.Join(f.v2Dir, "rootfs.delta"), MediaType: oci.MediaTypeDelta},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	// Release 3 lists no delta; one is attached to it afterwards.
	rootfs3 := bytes.Clone(f.rootfs2)
	rootfs3[12345] ^= 0x77
	v3Dir := filepath.Join(f.dir, "v3")
	img3 := release(3, rootfs3, v3Dir, nil)
	env3, err := os.ReadFile(filepath.Join(v3Dir, "release.json"))
	if err != nil {
		t.Fatal(err)
	}
	f.v3Layout = oci.LayoutPrefix + filepath.Join(f.dir, "layout") + ":3"
	if _, err := oci.Push(ctx, f.v3Layout, oci.Release{Envelope: env3, Product: "gw", Version: 3, Created: created, Files: []oci.File{
		{Path: filepath.Join(v3Dir, "rootfs-3.0.0.upk"), MediaType: oci.MediaTypePackage},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	var patch bytes.Buffer
	if _, err := delta.Create(ctx, f.rootfs2, rootfs3, &patch, nil); err != nil {
		t.Fatal(err)
	}
	later := filepath.Join(f.dir, "later.delta")
	if err := os.WriteFile(later, patch.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := oci.Attach(ctx, f.v3Layout, []oci.File{{Path: later, MediaType: oci.MediaTypeDelta, Annotations: map[string]string{
		oci.AnnotationComponent: "rootfs", oci.AnnotationDeltaFrom: devSha(f.rootfs2), oci.AnnotationDeltaTo: img3.Payload.Digest}}}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeEnv(t *testing.T, path string, env *manifest.Envelope) {
	t.Helper()
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceCommands(t *testing.T) {
	f := newDevFixture(t)
	state := filepath.Join(f.dir, "dev")
	now := "2026-03-02T00:00:00Z"
	mustRun(t, nil, "device", "init", "--state", state, "--root", f.root, "--hardware", "gw-100", "--now", now)
	if r := runCLI(t, nil, "device", "init", "--state", state, "--root", f.root, "--hardware", "gw-100"); r.code != exitUsage {
		t.Fatalf("second init: exit %d, %s", r.code, r.stderr)
	}

	r := mustRun(t, nil, "device", "update", "--state", state, "--now", now, f.v1Dir)
	t.Logf("update v1:\n%s", r.stderr)
	for _, want := range []string{"release gw version 1", "rootfs (none) -> 1.0.0: full package", "written to slot b", "awaiting commit"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("update v1 output lacks %q:\n%s", want, r.stderr)
		}
	}
	r = mustRun(t, nil, "device", "update", "--state", state, "--now", now, f.v1Dir)
	if !strings.Contains(r.stderr, "already staged") {
		t.Errorf("second update: %s", r.stderr)
	}
	mustRun(t, nil, "device", "commit", "--state", state)
	if r := runCLI(t, nil, "device", "update", "--state", state, "--now", now, f.v1Dir); r.code != exitNothingToDo {
		t.Fatalf("update to the installed release: exit %d, %s", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "device", "commit", "--state", state); r.code != 1 || !strings.Contains(r.stderr, "no update awaiting commit") {
		t.Fatalf("commit without pending: exit %d, %s", r.code, r.stderr)
	}

	// Release 2 from an OCI image layout: a delta.
	r = mustRun(t, nil, "device", "update", "--state", state, "--now", now, "--json", f.v2Layout)
	t.Logf("update v2:\n%s", r.stderr)
	if !strings.Contains(r.stderr, "rootfs 1.0.0 -> 2.0.0: delta") || !strings.Contains(r.stderr, "written to slot a") {
		t.Errorf("update v2 output:\n%s", r.stderr)
	}
	var res struct{ Images []struct{ Method string } }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Images) != 1 || res.Images[0].Method != "delta" {
		t.Fatalf("update --json: %v %s", err, r.stdout)
	}
	mustRun(t, nil, "device", "commit", "--state", state)
	got, err := os.ReadFile(filepath.Join(state, "slots", "rootfs.a"))
	if err != nil || !bytes.Equal(got, f.rootfs2) {
		t.Fatalf("slot a does not hold rootfs 2.0.0 (%v)", err)
	}

	// The attacker serves release 1 again: refused.
	r = runCLI(t, nil, "device", "update", "--state", state, "--now", now, f.v1Dir)
	if r.code != 1 || !strings.Contains(r.stderr, "rollback") {
		t.Fatalf("rollback attempt: exit %d, %s", r.code, r.stderr)
	}
	// Expired at the device clock: refused.
	if r := runCLI(t, nil, "device", "update", "--state", state, "--now", "2027-01-01T00:00:00Z", f.v2Dir); r.code != 1 || !strings.Contains(r.stderr, "expired") {
		t.Fatalf("expired: exit %d, %s", r.code, r.stderr)
	}

	// Release 3: the delta attached after signing is found and used.
	r = mustRun(t, nil, "device", "update", "--state", state, "--now", now, f.v3Layout)
	if !strings.Contains(r.stderr, "rootfs 2.0.0 -> 3.0.0: attached delta") {
		t.Errorf("update v3 output:\n%s", r.stderr)
	}
	mustRun(t, nil, "device", "rollback", "--state", state)

	r = mustRun(t, nil, "device", "status", "--state", state, "--json")
	var st struct {
		ReleaseVersion uint64
		Components     []struct {
			Component string
			Slot      string
			Counter   uint64
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.ReleaseVersion != 2 || len(st.Components) != 1 || st.Components[0].Slot != "a" || st.Components[0].Counter != 2 {
		t.Fatalf("status: %s", r.stdout)
	}
	r = mustRun(t, nil, "device", "status", "--state", state)
	if !strings.Contains(r.stdout, "rootfs 2.0.0: slot a (boots a)") {
		t.Errorf("status: %s", r.stdout)
	}
	if r := runCLI(t, nil, "device", "rollback", "--state", state); r.code != 1 {
		t.Fatalf("rollback without pending: exit %d", r.code)
	}
	if r := runCLI(t, nil, "device", "status", "--state", filepath.Join(f.dir, "nowhere")); r.code != exitUsage {
		t.Fatalf("status of a missing device: exit %d", r.code)
	}
}
