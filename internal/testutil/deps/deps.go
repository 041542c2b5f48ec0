// Package deps checks the import graph of a package from its tests, so
// that what firmware links stays small (DESIGN.md, "Layout"). Each package
// that has a rule calls Check from a TestDependencies in its deps_test.go.
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

// Module is upkit's module path.
const Module = "github.com/upkit/upkit"

// Rules say what a package may depend on, beyond the standard library.
type Rules struct {
	// Upkit lists the upkit packages it may import, relative to the module
	// ("spec", "internal/atomicfile"); the package itself always passes.
	Upkit []string
	// Others lists the import path prefixes of other modules it may
	// import; nil allows any module not in Forbidden.
	Others []string
	// Forbidden lists import path prefixes it must never import (with
	// Others nil).
	Forbidden []string
}

// Check lists pkg's dependencies with `go list -deps` and fails t for each
// one the rules do not allow.
func Check(t testing.TB, pkg string, r Rules) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s (the go command must be on PATH)", pkg, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if why := r.refuse(pkg, dep); why != "" {
			t.Errorf("%s depends on %s: %s", pkg, dep, why)
		}
	}
}

func (r Rules) refuse(pkg, dep string) string {
	if dep == pkg {
		return ""
	}
	if rel, ok := strings.CutPrefix(dep, Module+"/"); ok {
		for _, u := range r.Upkit {
			if rel == u {
				return ""
			}
		}
		return "allowed upkit packages: " + strings.Join(r.Upkit, ", ")
	}
	for _, f := range r.Forbidden {
		if strings.HasPrefix(dep, f) {
			return "forbidden"
		}
	}
	if r.Others == nil {
		return ""
	}
	for _, o := range r.Others {
		if strings.HasPrefix(dep, o) {
			return ""
		}
	}
	return "allowed modules: the standard library and " + strings.Join(append([]string{}, r.Others...), ", ")
}
