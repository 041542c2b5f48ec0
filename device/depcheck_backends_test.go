package device_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBackendImportGraph keeps device's backends (its subpackages) as small
// as device: the standard library, klauspost/compress and upkit's own
// packages (not its signing, registry or CLI packages, nor its test helpers),
// and for the TPM counters, go-tpm (and x/sys, which go-tpm uses).
func TestBackendImportGraph(t *testing.T) {
	forbidden := []string{"oci", "signing", "cmd", "internal/faultfs", "internal/looptest", "internal/swtpmtest",
		"internal/releasetest", "internal/testkeys", "internal/registrytest", "internal/softhsmtest", "internal/tampertest", "internal/sample"}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "github.com/upkit/upkit/device/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 6 {
		t.Fatalf("only %d packages under device/: %q", len(pkgs), pkgs)
	}
	for _, pkg := range pkgs {
		deps, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, deps)
		}
		allowed := []string{"github.com/klauspost/compress", "github.com/upkit/upkit/"}
		if strings.HasSuffix(pkg, "/device/tpmcounter") {
			allowed = append(allowed, "github.com/google/go-tpm/", "golang.org/x/sys/")
		}
		for _, dep := range strings.Fields(string(deps)) {
			ok := false
			for _, a := range allowed {
				ok = ok || strings.HasPrefix(dep, a)
			}
			for _, f := range forbidden {
				if strings.HasPrefix(dep, "github.com/upkit/upkit/"+f) {
					ok = false
				}
			}
			if !ok {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}
