package devicedir_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: what an agent on a device links with the device
// library and the OCI source: never the signing stack or the CLI.
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/internal/devicedir", deps.Rules{
		Upkit:     []string{"spec", "manifest", "imagepkg", "delta", "mcuboot", "device", "oci", "internal/atomicfile"},
		Forbidden: []string{"github.com/sigstore/", "github.com/urfave/", "github.com/ThalesIgnite/", "github.com/miekg/pkcs11"},
	})
}
