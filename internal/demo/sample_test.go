package demo

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
)

func TestRootFSDeterministicAndDifferent(t *testing.T) {
	a1, err := RootFS(1)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := RootFS(1)
	if !bytes.Equal(a1, a2) {
		t.Fatal("RootFS(1) is not deterministic")
	}
	b, err := RootFS(2)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(a1) == sha256.Sum256(b) {
		t.Fatal("v1 and v2 are identical")
	}
	if _, err := RootFS(4); err == nil {
		t.Fatal("RootFS(4) should fail")
	}
	// It is a valid tar holding the agent of its version.
	tr := tar.NewReader(bytes.NewReader(b))
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "usr/bin/agent" {
			got, _ := io.ReadAll(tr)
			want, _ := Agent(2)
			found = bytes.Equal(got, want)
		}
	}
	if !found {
		t.Fatal("usr/bin/agent of v2 missing from RootFS(2)")
	}
}

func TestAgentVersionsDiffer(t *testing.T) {
	a, err := Agent(1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Agent(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) < 1000 || bytes.Equal(a, b) || !bytes.HasPrefix(a, []byte("\x7fELF")) {
		t.Fatal("sample agents are not two different ELF executables")
	}
}
