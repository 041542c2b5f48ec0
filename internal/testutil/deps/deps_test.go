package deps

import "testing"

func TestRefuse(t *testing.T) {
	r := Rules{Upkit: []string{"spec"}, Others: []string{"github.com/klauspost/compress"}}
	for dep, refused := range map[string]bool{
		Module + "/delta":                        false, // the package itself
		Module + "/spec":                         false,
		Module + "/specx":                        true,
		Module + "/oci":                          true,
		"github.com/klauspost/compress/zstd":     false,
		"github.com/google/go-containerregistry": true,
	} {
		if got := r.refuse(Module+"/delta", dep) != ""; got != refused {
			t.Errorf("%s: refused %v, want %v", dep, got, refused)
		}
	}
	any := Rules{Forbidden: []string{"github.com/sigstore/"}}
	if any.refuse(Module+"/oci", "github.com/sigstore/sigstore") == "" || any.refuse(Module+"/oci", "golang.org/x/sync") != "" {
		t.Error("Forbidden with Others nil")
	}
}
