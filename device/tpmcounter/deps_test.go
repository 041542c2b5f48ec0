package tpmcounter_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: device/tpmcounter builds its four TPM commands itself
// and uses only go-tpm's tpmutil (the device file's polling and retries,
// with golang.org/x/sys/unix).
// go-tpm's tpm2 package would add some 300 KB to upkit-agent, past its size
// budget (docs/PERFORMANCE-device.md).
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/device/tpmcounter", deps.Rules{Upkit: []string{"spec", "imagepkg", "manifest", "delta", "internal/atomicfile", "device"},
		Others: []string{"github.com/klauspost/compress", "github.com/google/go-tpm/tpmutil", "golang.org/x/sys/unix"}})
}
