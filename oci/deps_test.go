package oci_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: oci builds on go-containerregistry, the standard
// library and upkit's format packages (spec, manifest, delta, the
// stdlib-only internal/atomicfile), so a device may link it without the
// signing stack or the CLI (DESIGN.md, "Layout").
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/oci", deps.Rules{
		Upkit:     []string{"spec", "manifest", "delta", "internal/atomicfile"},
		Forbidden: []string{"github.com/sigstore/", "github.com/urfave/", "github.com/ThalesIgnite/", "github.com/miekg/pkcs11"},
	})
}
