//go:build cgo

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/testutil/softhsmtest"
	"github.com/upkit/upkit/signing"
	"github.com/upkit/upkit/spec"
)

const (
	hsmToken = "upkit-cli-test"
	hsmPIN   = "4321-cli"
)

// hsmEnv initializes a SoftHSM2 token for the test and returns the
// environment the CLI reads the module and PIN from.
func hsmEnv(t *testing.T) map[string]string {
	t.Helper()
	module := softhsmtest.NewToken(t, hsmToken, hsmPIN)
	return map[string]string{signing.PKCS11ModuleEnv: module, signing.PKCS11PINEnv: hsmPIN}
}

func TestHSMKeyGenerateIDExport(t *testing.T) {
	env := hsmEnv(t)
	dir := t.TempDir()
	ref := "pkcs11:token=" + hsmToken + ";object=release"
	pubPath := filepath.Join(dir, "release.pub")

	gen := mustRun(t, env, "key", "generate", "--out", ref, "--pub", pubPath)
	id := strings.TrimSpace(gen.stdout)
	data, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := spec.ParsePublicKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if pub.ID != id || pub.Algorithm != spec.AlgorithmECDSAP256 {
		t.Fatalf("generate printed %s; %s holds %s %s", id, pubPath, pub.Algorithm, pub.ID)
	}
	if got := strings.TrimSpace(mustRun(t, env, "key", "id", ref).stdout); got != id {
		t.Fatalf("key id of the token key: %s, want %s", got, id)
	}
	if got := strings.TrimSpace(mustRun(t, env, "key", "id", pubPath).stdout); got != id {
		t.Fatalf("key id of the exported .pub: %s, want %s", got, id)
	}
	if got := mustRun(t, env, "key", "export-pub", ref).stdout; got != string(data) {
		t.Fatalf("export-pub:\n%s\nwant the --pub file:\n%s", got, data)
	}

	// The same label again is refused, and the .pub is not overwritten.
	r := runCLI(t, env, "key", "generate", "--out", ref, "--pub", filepath.Join(dir, "again.pub"))
	if r.code != exitFailed || !strings.Contains(r.stderr, "release") {
		t.Fatalf("second generate with the same label: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "again.pub")); !os.IsNotExist(err) {
		t.Fatalf("a refused generate wrote a public key: %v", err)
	}
	r = runCLI(t, env, "key", "generate", "--out", "pkcs11:token="+hsmToken+";object=other", "--pub", pubPath)
	if r.code != exitFailed || !strings.Contains(r.stderr, pubPath) {
		t.Fatalf("generate onto an existing --pub: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "key", "id", "pkcs11:token="+hsmToken+";object=other"); r.code == 0 {
		t.Fatal("a generate refused because of --pub still created the key in the token")
	}
}

func TestHSMErrors(t *testing.T) {
	env := hsmEnv(t)
	ref := "pkcs11:token=" + hsmToken + ";object=release"
	mustRun(t, env, "key", "generate", "--out", ref)

	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		code    int
		mention []string
	}{
		{"wrong PIN", map[string]string{signing.PKCS11PINEnv: "0000"}, []string{"key", "id", ref},
			exitFailed, []string{"PIN", signing.PKCS11PINEnv, hsmToken}},
		{"no PIN", map[string]string{signing.PKCS11PINEnv: ""}, []string{"key", "id", ref},
			exitFailed, []string{signing.PKCS11PINEnv}},
		{"missing object", nil, []string{"key", "export-pub", "pkcs11:token=" + hsmToken + ";object=nope"},
			exitFailed, []string{`"nope"`, hsmToken}},
		{"no module", map[string]string{signing.PKCS11ModuleEnv: ""}, []string{"key", "id", ref},
			exitFailed, []string{signing.PKCS11ModuleEnv}},
		{"pin-value", nil, []string{"key", "id", ref + "?pin-value=" + hsmPIN},
			exitFailed, []string{"pin-value", "pin-source"}},
		{"ed25519 in a token", nil, []string{"key", "generate", "--out", "pkcs11:token=" + hsmToken + ";object=e", "--algorithm", "ed25519"},
			exitUsage, []string{"ecdsa-p256"}},
		{"bad URI", nil, []string{"key", "generate", "--out", "pkcs11:token=" + hsmToken},
			exitUsage, []string{"object="}},
		{"--pub with a file key", map[string]string{"UPKIT_PASSWORD": ""}, []string{"key", "generate", "--out", filepath.Join(t.TempDir(), "k"), "--pub", "x.pub"},
			exitUsage, []string{"--pub"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tc.env {
				e[k] = v
			}
			r := runCLI(t, e, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			for _, m := range tc.mention {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr %q does not mention %q", r.stderr, m)
				}
			}
			if tc.name == "pin-value" && strings.Contains(r.stderr, hsmPIN) {
				t.Errorf("stderr %q repeats the PIN", r.stderr)
			}
		})
	}
}

// The release flow with both keys in a token: pack, root sign and release
// sign with pkcs11: URIs, and every artifact verifies, as a device would,
// with nothing but the exported public keys.
func TestHSMPackRootRelease(t *testing.T) {
	env := hsmEnv(t)
	dir := t.TempDir()
	in := func(name string) string { return filepath.Join(dir, name) }
	rootKey := "pkcs11:token=" + hsmToken + ";object=root"
	releaseKey := "pkcs11:token=" + hsmToken + ";object=release"
	rootID := strings.TrimSpace(mustRun(t, env, "key", "generate", "--out", rootKey, "--pub", in("root.pub")).stdout)
	releaseID := strings.TrimSpace(mustRun(t, env, "key", "generate", "--out", releaseKey, "--pub", in("release.pub")).stdout)
	if err := os.WriteFile(in("rootfs.img"), bytes.Repeat([]byte("upkit hsm test image\n"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}

	pack := mustRun(t, env, "pack", "--type", "os", "--component", "rootfs", "--version", "1.4.0",
		"--security-version", "3", "--hardware", "gw-100", "--key", releaseKey,
		"-o", in("rootfs-1.4.0.upk"), in("rootfs.img"))
	if !strings.HasPrefix(pack.stdout, "sha256:") || !strings.Contains(pack.stderr, releaseID) {
		t.Fatalf("pack: stdout %q, stderr %q (want the digest, and the token key %s named)", pack.stdout, pack.stderr, releaseID)
	}
	mustRun(t, env, "verify", "--key", in("release.pub"), in("rootfs-1.4.0.upk"))
	if r := runCLI(t, env, "verify", "--key", in("root.pub"), in("rootfs-1.4.0.upk")); r.code != exitFailed {
		t.Fatalf("package verified with the wrong key: exit %d, stderr %q", r.code, r.stderr)
	}

	mustRun(t, env, "root", "init", "--root-key", in("root.pub"), "--release-key", in("release.pub"), "-o", in("root.json"))
	if r := runCLI(t, env, "root", "verify", in("root.json")); r.code == 0 {
		t.Fatal("an unsigned root verified")
	}
	sign := mustRun(t, env, "root", "sign", "--key", rootKey, in("root.json"))
	if !strings.Contains(sign.stderr, rootID) {
		t.Fatalf("root sign: stderr %q does not name the token key %s", sign.stderr, rootID)
	}
	mustRun(t, env, "root", "verify", in("root.json"))

	mustRun(t, env, "release", "create", "--product", "gw", "--version", "1", "--expires", "30d",
		"--key", in("release.pub"), "-o", in("release.json"), in("rootfs-1.4.0.upk"))
	if r := runCLI(t, env, "release", "verify", "--root", in("root.json"), in("release.json")); r.code == 0 {
		t.Fatal("an unsigned release verified")
	}
	mustRun(t, env, "release", "sign", "--key", releaseKey, in("release.json"))
	mustRun(t, env, "release", "verify", "--root", in("root.json"), "--hardware", "gw-100", in("release.json"))

	// Signing the release with the root key (in the same token) is not
	// enough: the root's release role names only the release key.
	mustRun(t, env, "release", "create", "--product", "gw", "--version", "2", "--expires", "30d",
		"--key", in("release.pub"), "-o", in("release-2.json"), in("rootfs-1.4.0.upk"))
	mustRun(t, env, "release", "sign", "--key", rootKey, in("release-2.json"))
	if r := runCLI(t, env, "release", "verify", "--root", in("root.json"), in("release-2.json")); r.code != exitFailed {
		t.Fatalf("release signed by the root key verified: exit %d, stderr %q", r.code, r.stderr)
	}

	// A wrong PIN stops signing with a clear error and leaves the file alone.
	before, err := os.ReadFile(in("release-2.json"))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{signing.PKCS11PINEnv: "0000"}
	for k, v := range env {
		if _, ok := bad[k]; !ok {
			bad[k] = v
		}
	}
	r := runCLI(t, bad, "release", "sign", "--key", releaseKey, in("release-2.json"))
	if r.code != exitFailed || !strings.Contains(r.stderr, "PIN") {
		t.Fatalf("release sign with a wrong PIN: exit %d, stderr %q", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(in("release-2.json")); !bytes.Equal(before, after) {
		t.Fatal("a failed release sign changed the manifest")
	}
}
