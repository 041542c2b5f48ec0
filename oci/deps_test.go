package oci_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: oci builds on go-containerregistry and the standard
// library only (DESIGN.md), so a device may link it without the signing
// stack, the CLI or the other upkit packages. The one exception is the
// stdlib-only internal/atomicfile, upkit's single way to replace a file.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/upkit/upkit/oci").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/sigstore/", "github.com/urfave/", "github.com/upkit/upkit/"} {
			if strings.HasPrefix(dep, banned) && dep != "github.com/upkit/upkit/oci" &&
				dep != "github.com/upkit/upkit/internal/atomicfile" && dep != "github.com/upkit/upkit/internal/regfile" {
				t.Errorf("oci depends on %s", dep)
			}
		}
	}
}
