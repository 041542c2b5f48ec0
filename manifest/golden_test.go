package manifest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// goldenRoot and goldenRelease are the documents pinned by the golden files:
// deterministic (Ed25519 test keys, fixed times).
// The *.payload.golden.json files hold the same payloads, indented, so that
// a format change reads as a field-level diff in review.
func goldenFiles(t *testing.T) map[string][]byte {
	root := signedRoot(t, goodRoot(), signers(1, 2)...)
	rel := signedRelease(t, goodRelease(), signers(4, 5)...)
	indent := func(env []byte) []byte {
		var b bytes.Buffer
		if err := json.Indent(&b, payloadOf(t, env), "", "  "); err != nil {
			t.Fatal(err)
		}
		b.WriteByte('\n')
		return b.Bytes()
	}
	return map[string][]byte{
		"root.golden.json":            root,
		"release.golden.json":         rel,
		"root.payload.golden.json":    indent(root),
		"release.payload.golden.json": indent(rel),
	}
}

// TestGolden pins the wire format: any change to the encoding shows up as a
// diff of testdata/*.golden.json. Regenerate with go test ./manifest -update.
func TestGolden(t *testing.T) {
	for name, got := range goldenFiles(t) {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./manifest -update to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the encoding (if the format change is intended, run go test ./manifest -update):\n got: %s\nwant: %s", path, got, want)
		}
	}
}

// TestGoldenVerifies checks the committed files themselves, as a device would.
func TestGoldenVerifies(t *testing.T) {
	rootBytes, err := os.ReadFile("testdata/root.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	relBytes, err := os.ReadFile("testdata/release.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	root, err := VerifySelfSignedRoot(rootBytes, tNow)
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	rel, err := VerifyRelease(root, relBytes, tNow)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	want := goodRelease()
	if rel.Product != want.Product || rel.Version != want.Version || len(rel.Images) != len(want.Images) ||
		rel.Images[0].Deltas[0] != want.Images[0].Deltas[0] || !rel.Created.Equal(want.Created) {
		t.Fatalf("golden release decoded to %+v", rel)
	}
}
