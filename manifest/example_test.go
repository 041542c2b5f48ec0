package manifest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
)

// A trust root with one root key and one release key, a release signed by
// the release key, and what a device checks.
func Example() {
	ctx := context.Background()
	rootKey, releaseKey := testkeys.Ed25519(1), testkeys.Ed25519(2) // TEST-ONLY keys
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	root := &manifest.Root{
		Version: 1,
		Expires: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC),
		Keys:    map[string]manifest.Key{},
		Roles: manifest.Roles{
			Root:    manifest.Role{KeyIDs: []string{rootKey.KeyID()}, Threshold: 1},
			Release: manifest.Role{KeyIDs: []string{releaseKey.KeyID()}, Threshold: 1},
		},
	}
	for _, k := range []*testkeys.Signer{rootKey, releaseKey} {
		id, entry := manifest.KeyOf(k.Public())
		root.Keys[id] = entry
	}
	rootEnv, err := manifest.NewRootEnvelope(root)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := manifest.Sign(ctx, rootEnv, rootKey); err != nil {
		fmt.Println(err)
		return
	}
	rootJSON, err := rootEnv.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}

	rel := &manifest.Release{
		Product: "acme-gateway",
		Version: 12,
		Created: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		Expires: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
		Images: []manifest.Image{{
			Component: "rootfs", Type: "os", Version: "3.1.0", SecurityVersion: 4,
			Hardware: []string{"acme-gw100"},
			Package:  manifest.Blob{Digest: "sha256:" + fmt.Sprintf("%064x", 1), Size: 4096},
			Payload:  manifest.Blob{Digest: "sha256:" + fmt.Sprintf("%064x", 2), Size: 8192},
		}},
	}
	relEnv, err := manifest.NewReleaseEnvelope(rel)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := manifest.Sign(ctx, relEnv, releaseKey); err != nil {
		fmt.Println(err)
		return
	}
	relJSON, err := relEnv.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}

	// On the device: the provisioned root, then the release.
	trusted, err := manifest.VerifySelfSignedRoot(rootJSON, now)
	if err != nil {
		fmt.Println(err)
		return
	}
	got, err := manifest.VerifyRelease(trusted, relJSON, now)
	if err != nil {
		fmt.Println(err)
		return
	}
	img, err := got.FindPackage("sha256:" + fmt.Sprintf("%064x", 1))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.Product, got.Version, img.Component, img.Version, img.Supports("acme-gw100"))

	_, err = got.FindPackage("sha256:" + fmt.Sprintf("%064x", 3))
	fmt.Println(err)
	_, err = manifest.VerifyRelease(trusted, relJSON, now.AddDate(0, 2, 0))
	fmt.Println(err)
	// Output:
	// acme-gateway 12 rootfs 3.1.0 true
	// manifest: not listed in the release: package sha256:0000000000000000000000000000000000000000000000000000000000000003 is not in release acme-gateway version 12
	// manifest: expired: release acme-gateway version 12 expired at 2026-04-01T00:00:00Z (reference time 2026-05-01T12:00:00Z)
}
