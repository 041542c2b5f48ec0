package tpmcounter_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: device/tpmcounter builds its four TPM commands and
// talks to the TPM (a character device or swtpm's socket) with the
// standard library only, as device/ does: firmware links it. go-tpm's tpm2
// package would also add some 300 KB to upkit-agent, past its size budget
// (docs/PERFORMANCE-device.md).
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/device/tpmcounter", deps.Rules{Upkit: []string{"spec", "imagepkg", "manifest", "delta", "internal/atomicfile", "device"},
		Others: []string{"github.com/klauspost/compress"}})
}
