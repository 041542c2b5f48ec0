package delta

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package linkable by device firmware: the
// standard library and klauspost/compress only, plus upkit's stdlib-only
// internal/atomicfile and internal/regfile (whose own imports this check
// covers too).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v (the go command is needed for this test)", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/upkit/upkit/delta" && p != "github.com/upkit/upkit/internal/atomicfile" &&
			p != "github.com/upkit/upkit/internal/regfile" &&
			!strings.HasPrefix(p, "github.com/klauspost/compress") {
			t.Errorf("delta depends on %s; allowed: the standard library and github.com/klauspost/compress", p)
		}
	}
}
