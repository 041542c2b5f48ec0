package spec_test

import (
	"testing"

	"github.com/upkit/upkit/spec"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/f"
	if err := writeFile(p, 10); err != nil {
		t.Fatal(err)
	}
	if b, err := spec.ReadFile(p, 10); err != nil || len(b) != 10 {
		t.Fatalf("at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := spec.ReadFile(p, 9); err == nil || !isTooLarge(err) {
		t.Fatalf("over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := spec.ReadFile(dir+"/missing", 9); err == nil || isTooLarge(err) {
		t.Fatalf("missing file: %v", err)
	}
}
