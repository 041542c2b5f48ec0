package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/internal/testutil/testtools"
	"github.com/upkit/upkit/oci"
)

// The device package's fetch interface is what oci's sources implement
// (checked at compile time; device itself must not import oci).
var (
	_ device.Source = (*oci.RegistrySource)(nil)
	_ device.Source = (*oci.LayoutSource)(nil)
)

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// signedReleaseDir makes a signed release (rootfs with a delta, and an app) in a
// fresh directory and returns the directory and the root path.
func signedReleaseDir(t *testing.T) (dir, root string) {
	dir = t.TempDir()
	writeKeys(t, dir, "alice", "bob", "carol", "ci")
	root = writeRootV1(t, dir)
	p := func(n string) string { return filepath.Join(dir, n) }
	rootfs, app, patch := writePackages(t, dir, p("ci.key"))
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1780000000")
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "--version", "12", "--expires", "3650d",
		"--root", root, "--delta", patch, "-o", filepath.Join(out, "release.json"), rootfs, app)
	mustRun(t, keyEnv, "release", "sign", "--key", p("ci.key"), filepath.Join(out, "release.json"))
	for _, f := range []string{rootfs, app, patch} {
		if err := os.Rename(f, filepath.Join(out, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	return dir, root
}

// TestPublishCLI makes one signed release (the slow part: key files,
// packing) and publishes it every way, against both real registries.
func TestPublishCLI(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials from the developer's machine
	dir, root := signedReleaseDir(t)
	writeKeys(t, dir, "mallory")
	for _, flavor := range registrytest.Flavors() {
		t.Run("push-pull-ls/"+flavor, func(t *testing.T) { testPushPullLs(t, flavor, dir, root) })
	}
	t.Run("attach-and-layout", func(t *testing.T) { testAttachAndLayout(t, dir, root) })
	t.Run("sign-cosign", func(t *testing.T) { testSignCosign(t, dir) })
}

func testPushPullLs(t *testing.T, flavor, dir, root string) {
	addr := registrytest.Start(t, flavor)
	out := filepath.Join(dir, "out")
	work := t.TempDir()
	repo := addr + "/fleet/gw"

	r := mustRun(t, keyEnv, "push", "--root", root, "--tag", "latest", out, repo)
	digest := strings.TrimSpace(r.stdout)
	if oci.CheckDigest(digest) != nil {
		t.Fatalf("push stdout %q is not only a digest", r.stdout)
	}
	// Pushing again: same digest.
	if again := mustRun(t, keyEnv, "push", "-q", filepath.Join(out, "release.json"), repo+":12"); strings.TrimSpace(again.stdout) != digest {
		t.Fatalf("second push %q, first %q", again.stdout, digest)
	}

	r = mustRun(t, nil, "ls", repo)
	for _, want := range []string{"12", "latest", digest} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ls %s lacks %q:\n%s", repo, want, r.stdout)
		}
	}

	// Full pull, verified.
	dst := filepath.Join(work, "pulled")
	r = mustRun(t, nil, "pull", "--root", root, repo+":12", "-o", dst)
	if !strings.Contains(r.stderr, "verified") {
		t.Errorf("pull stderr: %s", r.stderr)
	}
	// Files are named from the signed release (component, version, delta
	// base), not from the published titles.
	oldPayload := fileDigest(t, filepath.Join(dir, "rootfs-1.0.0.img"))
	deltaName := "rootfs-1.1.0-from-" + oldPayload[7:19] + ".delta"
	for pulled, pushed := range map[string]string{"release.json": "release.json", "rootfs-1.1.0.upk": "rootfs.upk",
		"web-2.0.0.upk": "app.upk", deltaName: "rootfs-1.0.0-1.1.0.delta"} {
		if fileDigest(t, filepath.Join(dst, pulled)) != fileDigest(t, filepath.Join(out, pushed)) {
			t.Errorf("%s differs after pull", pulled)
		}
	}
	// Pulling the same release into the same directory again is fine.
	mustRun(t, nil, "pull", "--root", root, repo+":12", "-o", dst)

	// What a device at rootfs 1.0.0 needs: only the delta.
	dst2 := filepath.Join(work, "device")
	r = mustRun(t, nil, "pull", "--root", root, "--only", "rootfs", "--from-digest", oldPayload, repo+"@"+digest, "-o", dst2)
	entries, _ := os.ReadDir(dst2)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "release.json,"+deltaName {
		t.Fatalf("--from-digest fetched %v", names)
	}

	// A wrong trust root: exit 1, nothing but the check happens.
	bad := filepath.Join(work, "bad-root.json")
	mustRun(t, keyEnv, "root", "init", "--root-key", filepath.Join(dir, "mallory.pub"), "--release-key", filepath.Join(dir, "mallory.pub"), "-o", bad)
	mustRun(t, keyEnv, "root", "sign", "--key", filepath.Join(dir, "mallory.key"), bad)
	dst3 := filepath.Join(work, "refused")
	if r := runCLI(t, nil, "pull", "--root", bad, repo+":12", "-o", dst3); r.code != 1 {
		t.Fatalf("pull with the wrong root: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dst3); err == nil {
		t.Error("output directory created although verification failed")
	}

	// JSON listing of one release.
	r = mustRun(t, nil, "ls", "--json", repo+":12")
	var rel oci.ReleaseInfo
	if err := json.Unmarshal([]byte(r.stdout), &rel); err != nil || rel.Digest != digest || len(rel.Files) != 4 || rel.Version != "12" {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
}

func testAttachAndLayout(t *testing.T, dir, root string) {
	addr := registrytest.Start(t, registrytest.Distribution)
	out := filepath.Join(dir, "out")
	work := t.TempDir()
	repo := addr + "/fleet/gw"
	layout := "oci:" + filepath.Join(work, "usb")

	// Publish without the delta's base in the release: attach a second,
	// later delta (here: the same patch file renamed, as a stand-in).
	digest := strings.TrimSpace(mustRun(t, keyEnv, "push", out, repo+":12").stdout)
	late := filepath.Join(work, "rootfs-late.delta")
	b, _ := os.ReadFile(filepath.Join(out, "rootfs-1.0.0-1.1.0.delta"))
	if err := os.WriteFile(late, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, nil, "push", "--attach-to", repo+":12", late)
	refDigest := strings.TrimSpace(r.stdout)
	if oci.CheckDigest(refDigest) != nil || refDigest == digest {
		t.Fatalf("attach stdout %q", r.stdout)
	}
	r = mustRun(t, nil, "ls", repo+":12")
	if !strings.Contains(r.stdout, "rootfs-late.delta (attached)") {
		t.Fatalf("ls does not show the attached delta:\n%s", r.stdout)
	}
	// Release 13 lists no delta; a device at rootfs 1.0.0 gets the delta
	// attached to it later instead of the whole package.
	out13 := filepath.Join(work, "out13")
	if err := os.MkdirAll(out13, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"rootfs.upk", "app.upk"} {
		b, _ := os.ReadFile(filepath.Join(out, f))
		if err := os.WriteFile(filepath.Join(out13, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, keyEnv, "release", "create", "--product", "gw", "--version", "13", "--expires", "3650d",
		"-o", filepath.Join(out13, "release.json"), filepath.Join(out13, "rootfs.upk"), filepath.Join(out13, "app.upk"))
	mustRun(t, keyEnv, "release", "sign", "--key", filepath.Join(dir, "ci.key"), filepath.Join(out13, "release.json"))
	mustRun(t, keyEnv, "push", out13, repo)
	mustRun(t, nil, "push", "--attach-to", repo+":13", late)
	oldPayload := fileDigest(t, filepath.Join(dir, "rootfs-1.0.0.img"))
	dev := filepath.Join(work, "device13")
	r = mustRun(t, nil, "pull", "--root", root, "--only", "rootfs", "--from-digest", oldPayload, repo+":13", "-o", dev)
	if !strings.Contains(r.stderr, "attached delta") {
		t.Errorf("pull --from-digest did not use the attached delta:\n%s", r.stderr)
	}
	if fileDigest(t, filepath.Join(dev, "rootfs-1.1.0-from-"+oldPayload[7:19]+".delta")) != fileDigest(t, late) {
		t.Fatal("attached delta differs after pull")
	}
	if _, err := os.Stat(filepath.Join(dev, "rootfs-1.1.0.upk")); err == nil {
		t.Error("the package was fetched although a delta was attached")
	}

	// A delta that produces no payload of the release is refused.
	junk := filepath.Join(work, "junk.delta")
	if err := os.WriteFile(junk, []byte("not a delta at all, not even its header"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "push", "--attach-to", repo+":12", junk); r.code == 0 {
		t.Fatal("attached a file that is not a delta")
	}

	// Copy to a layout (USB stick) and pull from it, verified.
	if d := strings.TrimSpace(mustRun(t, nil, "push", "--from", repo+":12", layout+":12").stdout); d != digest {
		t.Fatalf("copy to layout: %s, want %s", d, digest)
	}
	dst := filepath.Join(work, "from-usb")
	mustRun(t, nil, "pull", "--root", root, layout+":12", "-o", dst)
	if fileDigest(t, filepath.Join(dst, "rootfs-1.1.0.upk")) != fileDigest(t, filepath.Join(out, "rootfs.upk")) {
		t.Fatal("rootfs.upk differs after pull from the layout")
	}

	// Usage errors exit 2.
	for _, args := range [][]string{
		{"push", out},
		{"push", out, repo + "@sha256:" + strings.Repeat("0", 64)},
		{"push", out, "UPPER/case"},
		{"pull", repo + ":12"},
		{"pull", "--from-digest", "nope", repo + ":12", "-o", dst},
	} {
		if r := runCLI(t, nil, args...); r.code != 2 {
			t.Errorf("upkit %v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	// Missing files are named.
	empty := t.TempDir()
	b, _ = os.ReadFile(filepath.Join(out, "release.json"))
	if err := os.WriteFile(filepath.Join(empty, "release.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "push", empty, repo+":13"); r.code != 1 || !strings.Contains(r.stderr, "package of rootfs") {
		t.Fatalf("push with missing files: exit %d\n%s", r.code, r.stderr)
	}
}

func testSignCosign(t *testing.T, dir string) {
	addr := registrytest.Start(t, registrytest.OLAReg)
	key := filepath.Join(t.TempDir(), "cosign")
	mustRun(t, keyEnv, "key", "generate", "--out", key, "--algorithm", "ecdsa-p256")
	r := mustRun(t, keyEnv, "push", "--sign", key+".key", filepath.Join(dir, "out"), addr+"/fleet/gw:12")
	digest := strings.TrimSpace(r.stdout)
	sigs, err := oci.CosignSignatures(context.Background(), addr+"/fleet/gw", digest, nil)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures: %d, %v", len(sigs), err)
	}
	if !strings.Contains(string(sigs[0].Payload), digest) {
		t.Fatalf("payload %s", sigs[0].Payload)
	}
	// The real cosign accepts the signature made with an upkit key file.
	cosign := testtools.Require(t, "cosign")
	cmd := exec.Command(cosign, "verify", "--key", key+".pub", "--insecure-ignore-tlog", "--allow-http-registry",
		addr+"/fleet/gw@"+digest)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "TUF_ROOT="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign verify: %v\n%s", err, out)
	}
}

// Layer titles are unsigned: a publisher (or a registry) that titles the
// app package root.json must not get `upkit pull -o .` to replace the
// user's trust root (issue 12, item 8).
func TestAttackPullLayerTitleIsNoFileName(t *testing.T) {
	dir, root := signedReleaseDir(t)
	out := filepath.Join(dir, "out")
	// Published from a directory where the app package is called root.json:
	// its layer is titled so.
	if err := os.Rename(filepath.Join(out, "app.upk"), filepath.Join(out, "root.json")); err != nil {
		t.Fatal(err)
	}
	layout := "oci:" + filepath.Join(t.TempDir(), "usb")
	mustRun(t, nil, "push", out, layout+":12")
	here := t.TempDir()
	userRoot := filepath.Join(here, "root.json")
	trust, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(userRoot, trust, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "pull", "--root", userRoot, layout+":12", "-o", here)
	if got, _ := os.ReadFile(userRoot); !bytes.Equal(got, trust) {
		t.Fatal("pull replaced the user's root.json with a package titled root.json")
	}
	if fileDigest(t, filepath.Join(here, "web-2.0.0.upk")) != fileDigest(t, filepath.Join(out, "root.json")) {
		t.Fatal("the app package is not under its signed name")
	}
}
