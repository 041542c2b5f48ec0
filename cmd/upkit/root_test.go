package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/signing"
)

// keyEnv is the environment of the manifest CLI tests: key files are
// encrypted with this password.
var keyEnv = map[string]string{"UPKIT_PASSWORD": "test-only"}

// writeKeys writes NAME.key/NAME.pub for each name into dir, from
// deterministic test keys, and returns their key IDs by name. The private
// keys are unencrypted PKCS#8 (the key derivation of encrypted key files
// is slow under -race); encryptKey rewrites one encrypted.
func writeKeys(t *testing.T, dir string, names ...string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for i, name := range names {
		s := testkeys.Ed25519(100 + i)
		der, err := x509.MarshalPKCS8PrivateKey(s.Private())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pub"), s.PEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		ids[name] = s.KeyID()
	}
	return ids
}

// encryptKey rewrites dir/NAME.key, the n-th key given to writeKeys, as an
// encrypted key file (password keyEnv's UPKIT_PASSWORD).
func encryptKey(t *testing.T, dir, name string, n int) {
	t.Helper()
	os.Remove(filepath.Join(dir, name+".key"))
	os.Remove(filepath.Join(dir, name+".pub"))
	if _, err := signing.WriteKeyPair(filepath.Join(dir, name), testkeys.Ed25519(100+n).Private(), []byte(keyEnv["UPKIT_PASSWORD"])); err != nil {
		t.Fatal(err)
	}
}

// writeRootV1 creates and signs a root with root keys alice, bob, carol (2 of
// 3) and release key ci (1 of 1) and returns its path.
func writeRootV1(t *testing.T, dir string) string {
	t.Helper()
	p := func(n string) string { return filepath.Join(dir, n) }
	root := p("root.json")
	mustRun(t, keyEnv, "root", "init", "--root-key", p("alice.pub"), "--root-key", p("bob.pub"), "--root-key", p("carol.pub"),
		"--root-threshold", "2", "--release-key", p("ci.pub"), "--expires", "365d", "-o", root)
	mustRun(t, keyEnv, "root", "sign", "--key", p("alice.key"), root)
	mustRun(t, keyEnv, "root", "sign", "--key", p("bob.key"), root)
	return root
}

func TestRootInitSignVerify(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, "alice", "bob", "carol", "ci", "ci2")
	encryptKey(t, dir, "alice", 0) // one encrypted key file, as users have
	p := func(n string) string { return filepath.Join(dir, n) }
	root := p("root.json")
	mustRun(t, keyEnv, "root", "init", "--root-key", p("alice.pub"), "--root-key", p("bob.pub"), "--root-key", p("carol.pub"),
		"--root-threshold", "2", "--release-key", p("ci.pub"), "-o", root)
	// Unsigned, then one signature: below threshold, exit 1.
	if r := runCLI(t, keyEnv, "root", "verify", root); r.code != exitFailed || !strings.Contains(r.stderr, "threshold") {
		t.Fatalf("unsigned root verify: exit %d, %s", r.code, r.stderr)
	}
	mustRun(t, keyEnv, "root", "sign", "--key", p("alice.key"), root)
	if r := runCLI(t, keyEnv, "root", "verify", root); r.code != exitFailed {
		t.Fatalf("1-of-2 root verify: exit %d", r.code)
	}
	mustRun(t, keyEnv, "root", "sign", "--key", p("bob.key"), root)
	r := mustRun(t, keyEnv, "root", "verify", "--json", root)
	var out struct {
		Verified bool
		Root     manifest.Root
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || !out.Verified || out.Root.Version != 1 {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	// Signing twice with the same key keeps one signature.
	mustRun(t, keyEnv, "root", "sign", "--key", p("bob.key"), root)
	env := readEnvelope(t, root)
	if len(env.Signatures) != 2 {
		t.Fatalf("%d signatures after re-signing, want 2", len(env.Signatures))
	}
	// Expired at --now.
	if r := runCLI(t, keyEnv, "root", "verify", "--now", "2100-01-01T00:00:00Z", root); r.code != exitFailed || !strings.Contains(r.stderr, "expired") {
		t.Fatalf("expired verify: exit %d, %s", r.code, r.stderr)
	}
	// init refuses to overwrite.
	if r := runCLI(t, keyEnv, "root", "init", "--root-key", p("alice.pub"), "--release-key", p("ci.pub"), "-o", root); r.code != exitUsage {
		t.Fatalf("overwrite: exit %d", r.code)
	}
}

func TestRootRotateCLI(t *testing.T) {
	dir := t.TempDir()
	ids := writeKeys(t, dir, "alice", "bob", "carol", "ci", "ci2", "dave")
	p := func(n string) string { return filepath.Join(dir, n) }
	root := writeRootV1(t, dir)
	next := p("root-v2.json")
	mustRun(t, keyEnv, "root", "rotate", "--from", root, "--add-release-key", p("ci2.pub"), "--remove-key", ids["ci"],
		"--add-root-key", p("dave.pub"), "--remove-key", p("carol.pub"), "-o", next)
	// Signed only by the new root key and one old: not enough of either.
	mustRun(t, keyEnv, "root", "sign", "--key", p("dave.key"), next)
	mustRun(t, keyEnv, "root", "sign", "--key", p("alice.key"), next)
	if r := runCLI(t, keyEnv, "root", "verify", root, next); r.code != exitFailed {
		t.Fatalf("under-signed rotation accepted: %s", r.stderr)
	}
	mustRun(t, keyEnv, "root", "sign", "--key", p("bob.key"), next)
	r := mustRun(t, keyEnv, "root", "verify", "--json", "--trusted", root, next)
	var out struct{ Root manifest.Root }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Root.Version != 2 || out.Root.Roles.Release.KeyIDs[0] != ids["ci2"] {
		t.Fatalf("rotated root: %+v", out.Root)
	}
	if _, ok := out.Root.Keys[ids["ci"]]; ok {
		t.Fatal("removed key still listed")
	}
	if _, ok := out.Root.Keys[ids["carol"]]; ok {
		t.Fatal("removed root key still listed")
	}
	// Skipping a version: v3 from v2 presented to v1.
	v3 := p("root-v3.json")
	mustRun(t, keyEnv, "root", "rotate", "--from", next, "-o", v3)
	mustRun(t, keyEnv, "root", "sign", "--key", p("alice.key"), v3)
	mustRun(t, keyEnv, "root", "sign", "--key", p("bob.key"), v3)
	if r := runCLI(t, keyEnv, "root", "verify", root, v3); r.code != exitFailed || !strings.Contains(r.stderr, "root version") {
		t.Fatalf("skipped version: exit %d %s", r.code, r.stderr)
	}
	mustRun(t, keyEnv, "root", "verify", root, next, v3)
	// Usage errors.
	for _, args := range [][]string{
		{"root", "rotate", "--from", root, "--root-threshold", "9", "-o", p("x.json")},
		{"root", "rotate", "--from", root, "--remove-key", ids["ci"], "-o", p("x.json")}, // release role would be empty
		{"root", "rotate", "--from", root, "--remove-key", "nonsense", "-o", p("x.json")},
		{"root", "rotate", "--from", root, "--expires", "-3d", "-o", p("x.json")},
		{"root", "verify", "--now", "yesterday", root},
	} {
		if r := runCLI(t, keyEnv, args...); r.code != exitUsage {
			t.Errorf("upkit %s: exit %d, want %d (%s)", strings.Join(args, " "), r.code, exitUsage, r.stderr)
		}
	}
	if _, err := os.Stat(p("x.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed rotate left an output file")
	}
}

func TestParseDuration(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"365d":                 from.AddDate(0, 0, 365),
		"30d":                  from.AddDate(0, 0, 30),
		"12h":                  from.Add(12 * time.Hour),
		"1h30m":                from.Add(90 * time.Minute),
		"2027-06-01T10:00:00Z": time.Date(2027, 6, 1, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseExpiry(in, from)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "0d", "1.5d", "36501d", "10y", "0s", "-5h", "1e3d"} {
		if _, err := parseExpiry(bad, from); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func readEnvelope(t *testing.T, path string) *manifest.Envelope {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
