package device_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: firmware links device and its backends (device/...:
// bootloader environments, slots, counters), so none of them imports
// sigstore, go-containerregistry, urfave/cli, go-tpm or the signing stack:
// only the standard library, klauspost/compress and upkit's format
// packages (DESIGN.md, "Layout"). A new package under device/ must be
// added to the list below to pass, which is the moment to check it.
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/device/...", deps.Rules{
		Upkit: []string{"spec", "imagepkg", "manifest", "delta", "mcuboot", "internal/atomicfile",
			"device", "device/boot", "device/grubenv", "device/ubootenv", "device/partslots", "device/hwcounter", "device/tpmcounter"},
		Others: []string{"github.com/klauspost/compress"}})
}
