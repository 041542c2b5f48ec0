package device_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: firmware links device, so it never imports sigstore,
// go-containerregistry, urfave/cli or the signing stack: only the standard
// library, klauspost/compress and upkit's format packages (DESIGN.md,
// "Layout").
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/device", deps.Rules{Upkit: []string{"spec", "imagepkg", "manifest", "delta", "mcuboot", "internal/atomicfile"}, Others: []string{"github.com/klauspost/compress"}})
}
