package spec_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: spec is the floor every other package stands on, so
// it imports the standard library only.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/upkit/upkit/spec").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/upkit/upkit/spec" {
			t.Errorf("spec depends on %s; only the standard library is allowed", p)
		}
	}
}
