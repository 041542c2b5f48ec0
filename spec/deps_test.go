package spec_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: every other package stands on spec, so it imports the
// standard library only (DESIGN.md, "Layout").
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/spec", deps.Rules{Others: []string{}})
}
