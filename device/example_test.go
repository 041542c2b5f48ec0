package device_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
)

// Example shows the whole device flow: provision a trust root, check a
// release, install it into the inactive slot, commit it after a healthy
// boot. The release server side (keys, package, release manifest) is built
// inline with test keys.
func Example() {
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	dir, err := os.MkdirTemp("", "upkit-device-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Release server: a root (key 1 signs roots and releases), one package
	// stored as blobs/sha256/<hex> (an OCI image layout works the same).
	k := testkeys.Ed25519(1)
	id, pub := manifest.KeyOf(k.Public())
	rootEnv, _ := manifest.NewRootEnvelope(&manifest.Root{
		Version: 1, Expires: now.AddDate(5, 0, 0), Keys: map[string]manifest.Key{id: pub},
		Roles: manifest.Roles{Root: manifest.Role{KeyIDs: []string{id}, Threshold: 1}, Release: manifest.Role{KeyIDs: []string{id}, Threshold: 1}},
	})
	manifest.Sign(ctx, rootEnv, k)
	rootJSON, _ := rootEnv.Marshal()
	var pkg bytes.Buffer
	meta, err := imagepkg.Pack(ctx, &pkg, bytes.NewReader(bytes.Repeat([]byte("firmware "), 1000)), imagepkg.PackOptions{
		Component: "rootfs", Type: imagepkg.TypeOS, Version: "1.0.0", SecurityVersion: 1,
		Hardware: []string{"acme-gw-100"}, Compression: imagepkg.CompressionZstd, Concurrency: 1, TempDir: dir,
	}, k)
	if err != nil {
		log.Fatal(err)
	}
	pkgDigest := digestOf(pkg.Bytes())
	blobs := filepath.Join(dir, "release", "blobs", "sha256")
	os.MkdirAll(blobs, 0o755)
	os.WriteFile(filepath.Join(blobs, pkgDigest[7:]), pkg.Bytes(), 0o644)
	relEnv, _ := manifest.NewReleaseEnvelope(&manifest.Release{
		Product: "acme-gw", Version: 1, Created: now.Add(-time.Hour), Expires: now.AddDate(0, 1, 0),
		Images: []manifest.Image{{
			Component: "rootfs", Type: "os", Version: "1.0.0", SecurityVersion: 1, Hardware: []string{"acme-gw-100"},
			Package: manifest.Blob{Digest: pkgDigest, Size: int64(pkg.Len())},
			Payload: manifest.Blob{Digest: meta.Payload.SHA256, Size: meta.Payload.Size},
		}},
	})
	manifest.Sign(ctx, relEnv, k)
	releaseJSON, _ := relEnv.Marshal()

	// Device side.
	d, err := device.New(device.Config{
		Store:      device.NewFileStore(filepath.Join(dir, "device", "state"), nil),
		Slots:      device.NewFileSlots(filepath.Join(dir, "device", "slots"), nil),
		StagingDir: filepath.Join(dir, "device", "staging"),
		Hardware:   "acme-gw-100",
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := d.Provision(ctx, rootJSON, now); err != nil {
		log.Fatal(err)
	}
	plan, err := d.CheckAndRecord(ctx, releaseJSON, nil, now)
	if err != nil {
		log.Fatal(err)
	}
	res, err := d.Install(ctx, device.NewDirSource(filepath.Join(dir, "release")), plan, now)
	if err != nil {
		log.Fatal(err)
	}
	for _, im := range res.Images {
		fmt.Printf("%s %s: %s package, slot %s\n", im.Component, im.Version, im.Method, im.Slot)
	}
	// ... reboot into the new slot, check health, then:
	if err := d.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	st, _ := d.Status(ctx)
	fmt.Printf("release %d committed, rootfs counter %d\n", st.ReleaseVersion, st.Components[0].Counter)
	_, err = d.Check(ctx, releaseJSON, nil, now)
	fmt.Println(err)
	// Output:
	// rootfs 1.0.0: full package, slot b
	// release 1 committed, rootfs counter 1
	// device: nothing to do (release already installed): release acme-gw version 1
}
