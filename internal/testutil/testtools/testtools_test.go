package testtools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookupReadsToolsFile(t *testing.T) {
	tool, err := Lookup("olareg")
	if err != nil {
		t.Fatal(err)
	}
	if tool.Module != "github.com/olareg/olareg" || !strings.HasPrefix(tool.Version, "v") || tool.Package != "./cmd/olareg" {
		t.Fatalf("olareg: %+v", tool)
	}
	if _, err := Lookup("no-such-tool"); err == nil {
		t.Fatal("unknown tool found")
	}
}

func TestPathNamesTheBuildCommand(t *testing.T) {
	t.Setenv("UPKIT_TOOLS_DIR", t.TempDir())
	t.Setenv("UPKIT_COSIGN_BIN", "")
	_, err := Path("cosign")
	if err == nil || !strings.Contains(err.Error(), "scripts/test-deps.sh cosign") {
		t.Fatalf("missing cosign: %v", err)
	}
}

func TestPathFindsCacheAndOverride(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("UPKIT_TOOLS_DIR", dir)
	t.Setenv("UPKIT_OLAREG_BIN", "")
	tool, err := Lookup("olareg")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "olareg-"+tool.Version, "olareg")
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := Path("olareg"); err != nil || got != want {
		t.Fatalf("Path = %q, %v; want %q", got, err, want)
	}
	other := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UPKIT_OLAREG_BIN", other)
	if _, err := Path("olareg"); err == nil || !strings.Contains(err.Error(), "UPKIT_OLAREG_BIN") {
		t.Fatalf("non-executable override: %v", err)
	}
}

func TestDirDefault(t *testing.T) {
	t.Setenv("UPKIT_TOOLS_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/x")
	if got := Dir(); got != "/x/upkit/tools" {
		t.Fatalf("Dir = %q", got)
	}
}
