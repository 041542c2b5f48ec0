package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/internal/report"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// writePackages writes rootfs-1.0.0.img and rootfs-1.1.0.img (similar
// payloads), packs rootfs 1.1.0 and an app with the given key, and makes a
// delta from 1.0.0 to 1.1.0. It returns the package and delta paths.
func writePackages(t *testing.T, dir, key string) (rootfs, app, patch string) {
	t.Helper()
	p := func(n string) string { return filepath.Join(dir, n) }
	old := make([]byte, 64<<10)
	rand.Read(old)
	newer := bytes.Clone(old)
	copy(newer[1000:], []byte("version 1.1.0 of the root file system"))
	if err := os.WriteFile(p("rootfs-1.0.0.img"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("rootfs-1.1.0.img"), newer, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p("app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("app/run.sh"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs, app, patch = p("rootfs.upk"), p("app.upk"), p("rootfs-1.0.0-1.1.0.delta")
	mustRun(t, keyEnv, "pack", "--type", "os", "--component", "rootfs", "--version", "1.1.0", "--security-version", "2",
		"--hardware", "gw-100,gw-200", "--key", key, "-o", rootfs, p("rootfs-1.1.0.img"))
	mustRun(t, keyEnv, "pack", "--type", "app", "--component", "web", "--version", "2.0.0", "--security-version", "0",
		"--hardware", "gw-100", "--key", key, "-o", app, p("app"))
	if _, err := delta.CreateFile(context.Background(), p("rootfs-1.0.0.img"), p("rootfs-1.1.0.img"), patch, nil); err != nil {
		t.Fatal(err)
	}
	return rootfs, app, patch
}

func TestReleaseCreateSignVerify(t *testing.T) {
	dir := t.TempDir()
	ids := writeKeys(t, dir, "alice", "bob", "carol", "ci", "ci2")
	p := func(n string) string { return filepath.Join(dir, n) }
	root := writeRootV1(t, dir)
	rootfs, app, patch := writePackages(t, dir, p("ci.key"))
	rel := p("release.json")
	t.Setenv("SOURCE_DATE_EPOCH", "1780000000") // 2026-05-28
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "--version", "12", "--expires", "3650d",
		"--root", root, "--delta", patch, "-o", rel, rootfs, app)
	// Flags may follow the packages, and "--" ends them: the same release.
	again := p("again.json")
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "-o", again, rootfs, "--delta", patch, "--version", "12",
		"--root", root, "--expires", "3650d", "--", app)
	if a, b := readEnvelope(t, rel), readEnvelope(t, again); !bytes.Equal(a.Payload, b.Payload) {
		t.Fatalf("flags after the packages made another release:\n%s\n%s", a.Payload, b.Payload)
	}

	// Unsigned: refused.
	if r := runCLI(t, keyEnv, "release", "verify", "--root", root, rel); r.code != exitFailed {
		t.Fatalf("unsigned release verified: exit %d", r.code)
	}
	mustRun(t, keyEnv, "release", "sign", "--key", p("ci.key"), rel)
	r := mustRun(t, keyEnv, "release", "verify", "--root", root, "--hardware", "gw-100", "--json", rel)
	var out struct {
		Verified bool
		Release  manifest.Release
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || !out.Verified {
		t.Fatalf("--json: %q %v", r.stdout, err)
	}
	got := out.Release
	if got.Product != "gw" || got.Version != 12 || len(got.Images) != 2 || got.Created.Unix() != 1780000000 {
		t.Fatalf("release: %+v", got)
	}
	img, ok := got.Image("rootfs")
	if !ok || img.Version != "1.1.0" || img.SecurityVersion != 2 || len(img.Deltas) != 1 || !img.Supports("gw-200") {
		t.Fatalf("rootfs entry: %+v", img)
	}
	// The listed digests are those of the files.
	pd, ps, err := oci.HashFile(context.Background(), rootfs)
	if err != nil || img.Package.Digest != pd || img.Package.Size != ps {
		t.Fatalf("package digest %s/%d, file %s/%d", img.Package.Digest, img.Package.Size, pd, ps)
	}
	dd, ds, _ := oci.HashFile(context.Background(), patch)
	od, _, _ := oci.HashFile(context.Background(), p("rootfs-1.0.0.img"))
	nd, ns, _ := oci.HashFile(context.Background(), p("rootfs-1.1.0.img"))
	if d := img.Deltas[0]; d.Digest != dd || d.Size != ds || d.FromPayloadDigest != od || img.Payload.Digest != nd || img.Payload.Size != ns {
		t.Fatalf("delta entry %+v, want %s/%d from %s", d, dd, ds, od)
	}

	// Wrong hardware, expired, revoked key after rotation: exit 1.
	if r := runCLI(t, keyEnv, "release", "verify", "--root", root, "--hardware", "gw-200", rel); r.code != exitFailed || !strings.Contains(r.stderr, "hardware") {
		t.Fatalf("wrong hardware: exit %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, keyEnv, "release", "verify", "--root", root, "--now", "2036-06-01T00:00:00Z", rel); r.code != exitFailed || !strings.Contains(r.stderr, "expired") {
		t.Fatalf("expired: exit %d %s", r.code, r.stderr)
	}
	root2 := p("root-v2.json")
	mustRun(t, keyEnv, "root", "rotate", "--from", root, "--add-release-key", p("ci2.pub"), "--remove-key", ids["ci"], "-o", root2)
	mustRun(t, keyEnv, "root", "sign", "--key", p("alice.key"), root2)
	mustRun(t, keyEnv, "root", "sign", "--key", p("carol.key"), root2)
	if r := runCLI(t, keyEnv, "release", "verify", "--root", root2, rel); r.code != exitFailed || !strings.Contains(r.stderr, "does not trust") {
		t.Fatalf("revoked key: exit %d %s", r.code, r.stderr)
	}

	// inspect helpers: human and JSON, unverified.
	data, _ := os.ReadFile(rel)
	if !manifest.LooksLikeEnvelope(data) {
		t.Fatal("LooksLikeEnvelope(release) = false")
	}
	var human, js bytes.Buffer
	printDocument := func(w *bytes.Buffer, data []byte, asJSON bool) error {
		doc, err := report.NewDocument(data)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(w, doc)
		}
		return doc.WriteText(w)
	}
	if err := printDocument(&human, data, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"release gw version 12", "rootfs: os 1.1.0", "delta from payload " + od, ids["ci"], "NOT verified"} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, human.String())
		}
	}
	if err := printDocument(&js, data, true); err != nil || !json.Valid(js.Bytes()) || !strings.Contains(js.String(), `"verified": false`) {
		t.Fatalf("inspect --json: %v %s", err, js.String())
	}
	rootData, _ := os.ReadFile(root)
	human.Reset()
	if err := printDocument(&human, rootData, false); err != nil || !strings.Contains(human.String(), "role root: 2 of 3 keys") {
		t.Fatalf("inspect root: %v\n%s", err, human.String())
	}
	if manifest.LooksLikeEnvelope([]byte("UPKIMG\x00\x01")) {
		t.Fatal("LooksLikeEnvelope(package) = true")
	}
}

func TestReleaseCreateRefusesUntrustedPackages(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, "alice", "bob", "carol", "ci", "other")
	p := func(n string) string { return filepath.Join(dir, n) }
	root := writeRootV1(t, dir)
	rootfs, app, _ := writePackages(t, dir, p("other.key")) // not a release key
	for _, args := range [][]string{
		{"release", "create", "--product", "gw", "--version", "1", "--root", root, "-o", p("r1.json"), rootfs, app},
		{"release", "create", "--product", "gw", "--version", "1", "--key", p("ci.pub"), "-o", p("r2.json"), rootfs},
	} {
		if r := runCLI(t, keyEnv, args...); r.code != exitFailed || !strings.Contains(r.stderr, "imagepkg") {
			t.Errorf("upkit %s: exit %d (%s)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	for _, f := range []string{"r1.json", "r2.json"} {
		if _, err := os.Stat(p(f)); err == nil {
			t.Errorf("%s written despite the failure", f)
		}
	}
	// Without --key/--root the signature is not checked (payload still is).
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "--version", "1", "-o", p("r3.json"), rootfs, app)
	// A tampered package is refused even then.
	b, _ := os.ReadFile(rootfs)
	b[len(b)-1] ^= 1
	bad := p("bad.upk")
	os.WriteFile(bad, b, 0o644)
	if r := runCLI(t, keyEnv, "release", "create", "--product", "gw", "--version", "1", "-o", p("r4.json"), bad); r.code != exitFailed {
		t.Fatalf("tampered package: exit %d %s", r.code, r.stderr)
	}
	// Two packages of the same component, a delta for no package: usage errors.
	if r := runCLI(t, keyEnv, "release", "create", "--product", "gw", "--version", "1", "-o", p("r5.json"), rootfs, rootfs); r.code != exitUsage {
		t.Fatalf("duplicate component: exit %d %s", r.code, r.stderr)
	}
	if _, err := delta.CreateFile(context.Background(), p("rootfs-1.1.0.img"), p("rootfs-1.0.0.img"), p("back.delta"), nil); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, keyEnv, "release", "create", "--product", "gw", "--version", "1", "--delta", p("back.delta"), "-o", p("r6.json"), rootfs); r.code != exitUsage {
		t.Fatalf("unmatched delta: exit %d %s", r.code, r.stderr)
	}
}

// TestReleaseOfflineSigning: the manifest is created on one machine, copies
// are signed on two others, and the signatures are merged; signing a file
// already signed by someone else keeps their signature.
func TestReleaseOfflineSigning(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	writeKeys(t, dir, "alice", "bob", "carol", "ci", "ci2")
	root := p("root.json")
	mustRun(t, keyEnv, "root", "init", "--root-key", p("alice.pub"), "--release-key", p("ci.pub"), "--release-key", p("ci2.pub"),
		"--release-threshold", "2", "-o", root)
	mustRun(t, keyEnv, "root", "sign", "--key", p("alice.key"), root)
	rootfs, _, _ := writePackages(t, dir, p("ci.key"))
	rel := p("release.json")
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "--version", "3", "--root", root, "-o", rel, rootfs)
	unsigned, _ := os.ReadFile(rel)
	copyA, copyB := p("release.a.json"), p("release.b.json")
	os.WriteFile(copyA, unsigned, 0o644)
	os.WriteFile(copyB, unsigned, 0o644)
	mustRun(t, keyEnv, "release", "sign", "--key", p("ci.key"), copyA)
	mustRun(t, keyEnv, "release", "sign", "--key", p("ci2.key"), copyB)
	if r := runCLI(t, keyEnv, "release", "verify", "--root", root, copyA); r.code != exitFailed {
		t.Fatal("1 of 2 signatures accepted")
	}
	mustRun(t, keyEnv, "release", "sign", "--merge", copyA, "--merge", copyB, rel)
	mustRun(t, keyEnv, "release", "verify", "--root", root, rel)
	// Sequential: ci2 signs the copy ci already signed.
	mustRun(t, keyEnv, "release", "sign", "--key", p("ci2.key"), copyA)
	mustRun(t, keyEnv, "release", "verify", "--root", root, copyA)
	if n := len(readEnvelope(t, copyA).Signatures); n != 2 {
		t.Fatalf("%d signatures, want 2", n)
	}
	// Merging a different manifest is refused.
	other := p("other.json")
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "--version", "4", "--root", root, "-o", other, rootfs)
	if r := runCLI(t, keyEnv, "release", "sign", "--merge", other, rel); r.code == 0 || !strings.Contains(r.stderr, "different payloads") {
		t.Fatalf("merge of another manifest: exit %d %s", r.code, r.stderr)
	}
}
