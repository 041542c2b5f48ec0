package device_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph keeps the device library small: firmware links it, so it
// must not pull in the signing, registry or CLI stacks.
func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/upkit/upkit/device").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{"sigstore", "containerregistry", "urfave/", "crypto11", "pkcs11", "upkit/upkit/oci", "upkit/upkit/signing"}
	allowed := []string{"github.com/klauspost/compress", "github.com/upkit/upkit/"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.Contains(dep, f) {
				t.Errorf("device imports %s", dep)
			}
		}
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(dep, a)
		}
		if !ok {
			t.Errorf("device imports %s, outside the standard library, klauspost/compress and upkit", dep)
		}
	}
}
