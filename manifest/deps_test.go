package manifest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package linkable by device firmware: the
// standard library and upkit's spec only.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s (the go command must be on PATH)", err, out)
	}
	allowed := map[string]bool{
		"github.com/upkit/upkit/manifest": true,
		"github.com/upkit/upkit/spec":     true,
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("manifest depends on %s; only the standard library and spec are allowed", p)
		}
	}
}
