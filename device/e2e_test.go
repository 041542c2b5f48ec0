package device_test

import (
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// TestEndToEndRegistry publishes releases to a real registry (CNCF
// distribution, started by registrytest; the test fails with install
// instructions if it is missing): v1 is installed, v2 arrives as a delta
// listed in the release and is committed, v3 by a delta attached later as a
// referrer (found through the fallback tag scheme of distribution), then
// an attacker republishes v1, validly signed, and the device refuses it.
func TestEndToEndRegistry(t *testing.T) {
	t.Parallel()
	addr := registrytest.Start(t, registrytest.Distribution)
	w := newWorld(t)
	r := w.twoReleases()
	repo := addr + "/fleet/gateway"

	files := func(imgs []manifest.Image) []oci.File {
		var out []oci.File
		for _, im := range imgs {
			out = append(out, oci.File{Path: filepath.Join(w.srcDir, "blobs", "sha256", im.Package.Digest[7:]), MediaType: oci.MediaTypePackage,
				Title: im.Component + "-" + im.Version + ".upk", Digest: im.Package.Digest})
			for _, dl := range im.Deltas {
				out = append(out, oci.File{Path: filepath.Join(w.srcDir, "blobs", "sha256", dl.Digest[7:]), MediaType: oci.MediaTypeDelta,
					Title: im.Component + "-" + im.Version + ".delta", Digest: dl.Digest})
			}
		}
		return out
	}
	push := func(tag string, env []byte, version uint64, imgs []manifest.Image) {
		t.Helper()
		if _, err := oci.Push(w.ctx, repo+":"+tag, oci.Release{Envelope: env, Product: product, Version: version, Files: files(imgs)}, nil); err != nil {
			t.Fatalf("pushing %s: %v", tag, err)
		}
	}
	// update pulls the release at tag and installs it from the registry.
	update := func(d *dev, tag string) (*device.Result, error) {
		t.Helper()
		ref := repo + ":" + tag
		pulled, err := oci.Pull(w.ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		src, err := oci.NewSource(ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		return w.updateFrom(d, src, pulled.Envelope, nil, tNow)
	}

	push("1", r.v1, 1, r.img1)
	push("2", r.v2, 2, r.img2)
	d := w.provisioned()
	if _, err := update(d, "1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	res, err := update(d, "2")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := res.Images[0]
	if rootfs.Method != device.MethodDelta || rootfs.Fetched != rootfs.BlobSize || rootfs.Fetched >= rootfs.PackageSize {
		t.Fatalf("rootfs not updated by delta: %+v", rootfs)
	}
	t.Logf("rootfs by delta: fetched %d bytes, full package %d", rootfs.Fetched, rootfs.PackageSize)
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.assertBootable(t); st.ReleaseVersion != 2 || st.Installed["rootfs"].PayloadDigest != digestOf(r.rootfs2) {
		t.Fatalf("after v2: %+v", st)
	}

	// Release 3 lists no delta: one is attached to it later, as a
	// referrer, and the device uses it (unsigned, result verified).
	rootfs3 := edit(r.rootfs2, 5)
	img3 := []manifest.Image{w.pack(image{component: "rootfs", typ: "os", version: "3.0.0", secver: 2, payload: rootfs3}), r.img2[1]}
	push("3", w.release(3, tNow, img3, 4, 5), 3, img3)
	var later manifest.Image
	w.addDelta(&later, r.rootfs2, rootfs3)
	dl := later.Deltas[0]
	if _, err := oci.Attach(w.ctx, repo+":3", []oci.File{{Path: filepath.Join(w.srcDir, "blobs", "sha256", dl.Digest[7:]), MediaType: oci.MediaTypeDelta,
		Annotations: map[string]string{oci.AnnotationDeltaFrom: digestOf(r.rootfs2), oci.AnnotationDeltaTo: img3[0].Payload.Digest}}}, nil); err != nil {
		t.Fatal(err)
	}
	pulled, err := oci.Pull(w.ctx, repo+":3", nil)
	if err != nil {
		t.Fatal(err)
	}
	// What an agent does, without the CLI: resolve the tag, check, look up
	// the attached deltas when a full package would be fetched.
	plan, err := d.CheckAndRecord(w.ctx, pulled.Envelope, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.WantsDeltas() {
		t.Fatal("the plan fetches no full package for an installed component")
	}
	deltas, err := oci.ListAttachedDeltas(w.ctx, pulled.Target.String(), nil)
	if err != nil || len(deltas) != 1 {
		t.Fatalf("attached deltas: %v %+v", err, deltas)
	}
	if got := plan.UseDeltas(deltas); len(got) != 1 || got[0] != "rootfs" || plan.WantsDeltas() {
		t.Fatalf("UseDeltas switched %v", got)
	}
	res, err = d.Install(w.ctx, pulled.Source, plan, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Images[0]; got.Method != device.MethodDelta || !got.Unlisted || got.Fetched != dl.Size {
		t.Fatalf("rootfs 3 not updated by the attached delta: %+v", got)
	}
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}

	// The attacker, holding the release keys' old output, republishes v1
	// as "latest".
	push("latest", r.v1, 1, r.img1)
	_, err = update(d, "latest")
	wantErr(t, err, device.ErrRollback)
	if st := d.assertBootable(t); st.ReleaseVersion != 3 || st.Pending != nil {
		t.Fatalf("state changed by the refused release: %+v", st)
	}
}
