package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/spec"
)

func TestKeyGenerateAndID(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"ecdsa-p256", "ed25519"} {
		prefix := filepath.Join(dir, alg)
		r := mustRun(t, map[string]string{"UPKIT_PASSWORD": "pw"}, "key", "generate", "--out", prefix, "--algorithm", alg)
		id := strings.TrimSpace(r.stdout)
		pem, err := os.ReadFile(prefix + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		k, err := spec.ParsePublicKeyPEM(pem)
		if err != nil {
			t.Fatal(err)
		}
		if k.ID != id || k.Algorithm != alg {
			t.Fatalf("generate printed %s (%s), public key is %s (%s)", id, alg, k.ID, k.Algorithm)
		}
		if got := strings.TrimSpace(mustRun(t, nil, "key", "id", prefix+".pub").stdout); got != id {
			t.Fatalf("key id of .pub = %s, want %s", got, id)
		}
		// The private key gives the same ID (decrypted with the password).
		if got := strings.TrimSpace(mustRun(t, map[string]string{"UPKIT_PASSWORD": "pw"}, "key", "id", prefix+".key").stdout); got != id {
			t.Fatalf("key id of .key = %s, want %s", got, id)
		}
		if got := mustRun(t, map[string]string{"UPKIT_PASSWORD": "pw"}, "key", "export-pub", prefix+".key").stdout; got != string(pem) {
			t.Fatalf("export-pub differs from the .pub file")
		}
		// A wrong password is an error naming the problem, exit 1.
		r = runCLI(t, map[string]string{"UPKIT_PASSWORD": "wrong"}, "key", "id", prefix+".key")
		if r.code != exitFailed || !strings.Contains(r.stderr, "password") {
			t.Fatalf("wrong password: exit %d, stderr %q", r.code, r.stderr)
		}
	}
}

func TestKeyGenerateWithoutPasswordSourceFails(t *testing.T) {
	// Tests do not run on a terminal: without UPKIT_PASSWORD there is no
	// way to get a password, and the error says how to give one.
	t.Setenv("UPKIT_PASSWORD", "") // restored after the test
	os.Unsetenv("UPKIT_PASSWORD")
	r := runCLI(t, nil, "key", "generate", "--out", filepath.Join(t.TempDir(), "k"))
	if r.code != exitFailed || !strings.Contains(r.stderr, "UPKIT_PASSWORD") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}
