package manifest_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: device firmware links manifest, so it imports only the
// standard library, spec and the stdlib-only internal/atomicfile (DESIGN.md,
// "Layout").
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/manifest", deps.Rules{Upkit: []string{"spec", "internal/atomicfile"}, Others: []string{}})
}
