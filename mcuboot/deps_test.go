package mcuboot_test

import (
	"testing"

	"github.com/upkit/upkit/internal/testutil/deps"
)

// TestDependencies: the device library links mcuboot (it checks MCUboot
// images before handing them to a secondary), so it stays standard
// library and spec only.
func TestDependencies(t *testing.T) {
	deps.Check(t, deps.Module+"/mcuboot", deps.Rules{Upkit: []string{"spec"}, Others: []string{}})
}
