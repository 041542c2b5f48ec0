package oci_test

import (
	"fmt"

	"github.com/upkit/upkit/oci"
)

// Targets are registry references or OCI image layout directories.
func ExampleParseTarget() {
	for _, s := range []string{
		"registry.example:5000/fleet/gateway:42",
		"oci:/media/usb/updates:stable",
	} {
		t, err := oci.ParseTarget(s, false)
		if err != nil {
			fmt.Println(err)
			continue
		}
		if t.IsLayout() {
			fmt.Printf("layout %s, tag %s\n", t.Layout, t.Tag)
		} else {
			fmt.Printf("registry %s, repository %s, tag %s\n", t.Registry(), t.Repo.RepositoryStr(), t.Tag)
		}
	}
	fmt.Println(oci.CosignSignatureTag("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	// Output:
	// registry registry.example:5000, repository fleet/gateway, tag 42
	// layout /media/usb/updates, tag stable
	// sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig
}
