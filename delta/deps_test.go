package delta_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: device firmware links delta, so it imports only the
// standard library, klauspost/compress, spec and the stdlib-only
// internal/atomicfile (DESIGN.md, "Layout").
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/delta", deps.Rules{Upkit: []string{"spec", "internal/atomicfile"}, Others: []string{"github.com/klauspost/compress"}})
}
