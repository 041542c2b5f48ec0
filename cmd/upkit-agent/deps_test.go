package main

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: the agent links the device library, its backends, the
// OCI source and its own package (and mcuboot, which device links to
// install a secondary MCU's image); never the signing stack (sigstore,
// PKCS#11), urfave/cli or the CLI's helpers, nor go-tpm's heavy tpm2
// package (docs/PERFORMANCE-device.md: the size budget).
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/cmd/upkit-agent", deps.Rules{
		Upkit: []string{"spec", "manifest", "imagepkg", "mcuboot", "delta", "device", "device/boot", "device/grubenv", "device/ubootenv",
			"device/partslots", "device/hwcounter", "device/tpmcounter", "oci", "internal/atomicfile", "internal/devicedir", "internal/agent"},
		Forbidden: []string{"github.com/sigstore/", "github.com/urfave/", "github.com/ThalesIgnite/", "github.com/miekg/pkcs11",
			"github.com/google/go-tpm/tpm2", "github.com/google/go-tpm/legacy"},
	})
}
